package model

import (
	"encoding/json"
	"time"
)

// The inventory's domain types: static credentials found by `signet scan`
// and stored coverage reports. The store persists them; internal/inventory
// computes flags and coverage over them.

// FindingStatus is where a static-credential finding stands.
type FindingStatus string

// Finding statuses.
const (
	// FindingOpen: the secret was last seen somewhere and nobody resolved it.
	FindingOpen FindingStatus = "open"
	// FindingGone: rescans of every place the secret was seen no longer
	// found it. Seeing it again reopens it.
	FindingGone FindingStatus = "gone"
	// FindingResolved: an operator resolved it (rotated, revoked, false
	// positive). It stays resolved when seen again: a revoked secret is
	// harmless wherever it lingers, git history included.
	FindingResolved FindingStatus = "resolved"
	// FindingReplaced: linked to a brokered credential (`signet inventory
	// replace`), and proven replaced twice: a complete rescan no longer saw
	// the secret, and the credential has had a lease for a workload in the
	// finding's environment since the link. Seeing the secret again
	// reopens it.
	FindingReplaced FindingStatus = "replaced"
)

// RiskFactor is one contribution to a finding's risk score (see
// internal/inventory/risk, which computes them).
type RiskFactor struct {
	Name   string `json:"name"`
	Points int    `json:"points"`
	Reason string `json:"reason"`
}

// FindingReplacement links a finding to the brokered credential that
// replaces it.
type FindingReplacement struct {
	Credential string
	Note       string
	LinkedBy   string // the audit actor who linked it
	LinkedAt   time.Time
	// ReplacedAt is when the replacement was first proven; zero until then.
	ReplacedAt time.Time
}

// Finding is a static credential discovered by `signet scan`. Its identity
// is Fingerprint, a keyed hash of the secret: the same secret found in two
// places is one finding with two locations, a rotated secret a new finding.
// The secret itself is never stored; Preview is the scanner's redacted form.
type Finding struct {
	Fingerprint string // lower-case hex
	RuleID      string
	Detector    string
	Kind        string
	Severity    string // "", low, medium, high or critical
	Description string
	Preview     string
	Details     map[string]string // non-secret facts
	Labels      map[string]string // owner, environment, …
	Locations   []FindingLocation
	// Status, Resolution and the times are set by the store.
	Status      FindingStatus
	Resolution  string
	FirstSeenAt time.Time
	LastSeenAt  time.Time
	ClosedAt    time.Time // when it became gone, resolved or replaced; zero while open
	// Risk and RiskFactors are the risk score and its explanation as of
	// the last report of the finding (set by the store).
	Risk        int
	RiskFactors []RiskFactor
	// Environment and Owner are the finding's normalized environment and
	// owner labels, "unknown" when unlabelled (set by the store).
	Environment, Owner string
	// Replacement is the credential the finding is linked to; nil when
	// none.
	Replacement *FindingReplacement
}

// Open reports whether the finding is a static credential still out there.
func (f *Finding) Open() bool { return f.Status == FindingOpen }

// Since returns when the credential is first known to have existed: the
// earliest of its first sighting and the commit dates of its locations.
func (f *Finding) Since() time.Time {
	t := f.FirstSeenAt
	for _, l := range f.Locations {
		if !l.CommittedAt.IsZero() && (t.IsZero() || l.CommittedAt.Before(t)) {
			t = l.CommittedAt
		}
	}
	return t
}

// FindingLocation is one place a secret was seen: a file line, a line in a
// commit of a repository's history, or an environment variable ("env:NAME").
// Host, Path, Line and Commit identify it.
type FindingLocation struct {
	Host        string
	Path        string
	Line        int
	Column      int
	EndLine     int
	Commit      string
	Author      string
	Email       string
	CommittedAt time.Time
	// Set by the store.
	FirstSeenAt time.Time
	LastSeenAt  time.Time
	GoneAt      time.Time // zero while the secret is still there
}

// FindingReport is the outcome of one scan, reported by one host.
type FindingReport struct {
	Host string
	// Labels are merged into every reported finding's labels.
	Labels map[string]string
	// Scope lists the paths the scan covered completely ("env:" for the
	// environment). Open locations of Host under them that Findings does not
	// contain are marked gone, and findings left with no open location
	// become FindingGone. An empty Scope only adds.
	Scope    []string
	Findings []Finding
}

// ReportResult counts what a report changed.
type ReportResult struct {
	New      int // findings first seen
	Seen     int // known findings seen again
	Reopened int // of those, findings that were gone and are back
	Gone     int // findings no longer found anywhere
}

// CoverageReport is one stored coverage report. The store keeps Report as
// opaque JSON; internal/inventory defines its shape.
type CoverageReport struct {
	ID        int64 // assigned by the store, increasing
	CreatedAt time.Time
	// Dimension is the grouping the report was computed by, such as
	// "environment"; reports are compared with earlier ones of the same
	// dimension.
	Dimension string
	Report    json.RawMessage
}
