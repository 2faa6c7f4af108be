// Package risk scores static-credential findings: how urgently a secret
// found by `signet scan` should be replaced. A score is the sum of named
// factors, each computed from what the inventory knows of the finding —
// the severity of its kind, its environment, its age, how many hosts and
// places hold it, and whether (and for how long) it sits in git history —
// so that `signet inventory show` can say why a finding ranks where it
// does. The store computes the score when a scan is reported and keeps it
// beside the finding, so that lists sort by it in SQL.
//
// The package is pure computation with no dependency on the store.
package risk

import (
	"fmt"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/model"
)

// Max is the highest score; Score caps the sum of the factors at it.
const Max = 100

// Factor is one contribution to a score: Name identifies it (kind,
// severity, environment, age, hosts, places, git_history) and Reason says,
// for people, what about the finding earned the Points.
type Factor = model.RiskFactor

// Input is what a finding's score is computed from.
type Input struct {
	Kind     string // the scanner's kind: private-key, cloud-credential, …
	Severity string // low, medium, high, critical; "" when unrated
	// Environment is the normalized environment label (see
	// NormalizeEnvironment); "unknown" or "" when unlabelled.
	Environment string
	// Since is when the secret is first known to have existed: the earlier
	// of its first sighting and its oldest commit date. Zero: unknown.
	Since time.Time
	// Hosts and Places count the distinct hosts and (host, path) places
	// where the secret is still present.
	Hosts, Places int
	// HistorySince is the oldest commit date of the secret's locations in
	// git history; History is whether any location is in git history.
	History      bool
	HistorySince time.Time
	Now          time.Time
}

// Kind points: how much damage a leaked secret of the kind allows. Keys are
// the scanner's kind strings (internal/scan/credential).
var kindPoints = map[string]int{
	"cloud-credential":      35, // a cloud account, often its whole control plane
	"private-key":           30, // impersonation of a host, a service or a signer
	"password":              25,
	"token":                 25,
	"api-key":               20,
	"jwt":                   15, // expires, eventually
	"generic-secret":        15,
	"encrypted-private-key": 10, // needs its passphrase too, which lives somewhere
}

// unknownKindPoints scores a kind the table does not know: as a middling
// secret, neither ignored nor ranked above the known dangerous kinds.
const unknownKindPoints = 20

var severityPoints = map[string]int{"critical": 10, "high": 5, "medium": 0, "low": -5}

// KindPoints returns the points of a finding kind.
func KindPoints(kind string) int {
	if p, ok := kindPoints[kind]; ok {
		return p
	}
	return unknownKindPoints
}

// environment points; production counts most, an unlabelled finding as
// possibly production.
func environmentPoints(env string) (int, string) {
	switch env {
	case "production":
		return 25, "in production"
	case "", "unknown":
		return 10, "environment unknown: label it (scan --report --label environment=...)"
	case "staging", "ci":
		return 10, "in " + env
	case "development", "test":
		return 0, "in " + env
	}
	return 5, "in " + env
}

// envAliases maps common spellings to the canonical environments.
var envAliases = map[string]string{
	"k8s": "kubernetes", "kube": "kubernetes", "baremetal": "bare-metal", "bare_metal": "bare-metal",
	"metal": "bare-metal", "virtual-machine": "vm", "cicd": "ci", "ci/cd": "ci",
	"prod": "production", "prd": "production", "stage": "staging", "stg": "staging",
	"dev": "development", "testing": "test",
}

// NormalizeEnvironment returns the canonical form of an environment label
// value: lower case, common aliases resolved ("k8s" → "kubernetes", "prod"
// → "production"), and "unknown" for an empty value. Other values pass
// through in lower case.
func NormalizeEnvironment(v string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "" {
		return "unknown"
	}
	if a, ok := envAliases[v]; ok {
		return a
	}
	return v
}

const day = 24 * time.Hour

func days(d time.Duration) int { return int(d / day) }

// Score returns the score of in, in [0, Max], and the factors that make
// it up, in a fixed order, leaving out factors worth no points.
func Score(in Input) (int, []Factor) {
	var fs []Factor
	add := func(name string, p int, reason string) {
		if p != 0 {
			fs = append(fs, Factor{Name: name, Points: p, Reason: reason})
		}
	}
	kind := in.Kind
	if kind == "" {
		kind = "unknown"
	}
	if _, known := kindPoints[in.Kind]; known {
		add("kind", KindPoints(in.Kind), "a "+kind)
	} else {
		add("kind", unknownKindPoints, "kind "+kind+" is not rated: scored as a middling secret")
	}
	if p := severityPoints[in.Severity]; p != 0 {
		add("severity", p, "rated "+in.Severity+" by the scanner")
	}
	p, why := environmentPoints(in.Environment)
	add("environment", p, why)
	if !in.Since.IsZero() && !in.Now.IsZero() {
		age := in.Now.Sub(in.Since)
		switch {
		case age > 365*day:
			add("age", 15, fmt.Sprintf("known for %d days (over a year)", days(age)))
		case age > 90*day:
			add("age", 10, fmt.Sprintf("known for %d days (over 90)", days(age)))
		case age > 30*day:
			add("age", 5, fmt.Sprintf("known for %d days (over 30)", days(age)))
		}
	}
	if in.Hosts > 1 {
		add("hosts", min(5*(in.Hosts-1), 10), fmt.Sprintf("on %d hosts", in.Hosts))
	}
	if in.Places > 1 {
		add("places", min(2*(in.Places-1), 10), fmt.Sprintf("the same secret in %d places", in.Places))
	}
	if in.History {
		pts, why := 10, "in git history: removing the file does not remove it"
		if !in.HistorySince.IsZero() && !in.Now.IsZero() {
			if age := in.Now.Sub(in.HistorySince); age > 90*day {
				pts, why = 15, fmt.Sprintf("in git history for %d days: every clone since holds it", days(age))
			} else {
				why = fmt.Sprintf("in git history for %d days: removing the file does not remove it", days(age))
			}
		}
		add("git_history", pts, why)
	}
	total := 0
	for _, f := range fs {
		total += f.Points
	}
	return max(0, min(total, Max)), fs
}
