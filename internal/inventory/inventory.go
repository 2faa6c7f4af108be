// Package inventory describes every non-human identity a Signet server
// knows: attested nodes, workloads (registration entries), brokered
// credentials and static credentials found by `signet scan`. It classifies
// them by their owner and environment labels, flags what needs attention
// (stale identities, over-long SVID lifetimes, old static credentials) and
// computes coverage: how many workloads run on short-lived SPIFFE
// identities and how many static credentials remain.
//
// The package is pure computation over plain values read from the store
// (see Load); it keeps no state and does no I/O of its own.
package inventory

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/inventory/risk"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// Kind is the kind of a non-human identity.
type Kind string

// Inventory kinds.
const (
	KindNode     Kind = "node"     // an attested agent
	KindWorkload Kind = "workload" // a registration entry
	// KindCredential is a credential brokered by Signet: an open lease
	// (pending or active; every lease with closed).
	KindCredential Kind = "credential"
	KindFinding    Kind = "finding" // a static credential found by `signet scan`
)

// Kinds lists every kind, in display order.
var Kinds = []Kind{KindNode, KindWorkload, KindCredential, KindFinding}

// ParseKind parses a kind name; the empty string is the zero Kind (all).
func ParseKind(s string) (Kind, error) {
	if s == "" || slices.Contains(Kinds, Kind(s)) {
		return Kind(s), nil
	}
	return "", errkind.New(errkind.InvalidArgument, "kind %q is not supported: use node, workload, credential or finding", s)
}

// Label keys the inventory reads.
const (
	LabelEnvironment = "environment"
	LabelOwner       = "owner"
	// Unknown stands for a missing environment or owner label.
	Unknown = "unknown"
)

// Environments are the well-known values of the environment label.
var Environments = []string{"kubernetes", "vm", "bare-metal", "ci", "legacy", "saas"}

// NormalizeEnvironment returns the canonical form of an environment label
// value: lower case, common aliases resolved ("k8s" → "kubernetes", "prod"
// → "production"), and Unknown for an empty value. Other values pass
// through in lower case. See risk.NormalizeEnvironment, which holds the one
// definition (the store groups findings by it).
func NormalizeEnvironment(v string) string { return risk.NormalizeEnvironment(v) }

func ownerOf(labels map[string]string) string {
	if o := strings.TrimSpace(labels[LabelOwner]); o != "" {
		return o
	}
	return Unknown
}

// Thresholds configure the flags. Zero fields take the defaults.
type Thresholds struct {
	Stale            time.Duration // workloads not issued, nodes not seen for this long; default 30d
	MaxX509TTL       time.Duration // default 24h
	MaxJWTTTL        time.Duration // default 1h
	MaxCredentialAge time.Duration // static credentials known for longer; default 90d
}

// Default thresholds.
const (
	DefaultStale            = 30 * Day
	DefaultMaxX509TTL       = 24 * time.Hour
	DefaultMaxJWTTTL        = time.Hour
	DefaultMaxCredentialAge = 90 * Day
)

// WithDefaults returns t with zero fields set to the defaults.
func (t Thresholds) WithDefaults() Thresholds {
	if t.Stale == 0 {
		t.Stale = DefaultStale
	}
	if t.MaxX509TTL == 0 {
		t.MaxX509TTL = DefaultMaxX509TTL
	}
	if t.MaxJWTTTL == 0 {
		t.MaxJWTTTL = DefaultMaxJWTTTL
	}
	if t.MaxCredentialAge == 0 {
		t.MaxCredentialAge = DefaultMaxCredentialAge
	}
	return t
}

// Validate reports a negative or absurd threshold, naming its field.
func (t Thresholds) Validate() error {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"stale", t.Stale}, {"max_x509_ttl", t.MaxX509TTL}, {"max_jwt_ttl", t.MaxJWTTTL},
		{"max_credential_age", t.MaxCredentialAge},
	} {
		if f.d < 0 || f.d > maxAge {
			return errkind.New(errkind.InvalidArgument, "thresholds.%s %s: use a positive duration of at most 100 years (0: the default)", f.name, f.d)
		}
	}
	return nil
}

// FlagCode names what a flag is about.
type FlagCode string

// Flag codes.
const (
	FlagStale               FlagCode = "stale"
	FlagOverLongTTL         FlagCode = "over_long_ttl"
	FlagOldStaticCredential FlagCode = "old_static_credential"
)

// Flag is something about an item that needs attention, with the reason.
type Flag struct {
	Code    FlagCode
	Message string
}

// Item is one non-human identity. Exactly one of Node, Entry and Finding
// is set, matching Kind.
type Item struct {
	ID          string // kind-qualified, see ItemID
	Kind        Kind
	Name        string
	Labels      map[string]string // effective labels
	Environment string            // normalized; Unknown when unlabelled
	Owner       string            // Unknown when unlabelled
	CreatedAt   time.Time         // created, attested or first seen
	LastSeenAt  time.Time         // last seen, last issued; zero: never
	Flags       []Flag

	Node  *model.Node
	Entry *model.Entry
	// X509TTL and JWTTTL are a workload's effective SVID lifetimes.
	X509TTL, JWTTTL time.Duration
	Finding         *store.Finding
	// Lease is a brokered credential's lease.
	Lease *store.Lease
}

// Flagged reports whether the item has a flag with code c.
func (it *Item) Flagged(c FlagCode) bool {
	return slices.ContainsFunc(it.Flags, func(f Flag) bool { return f.Code == c })
}

// ItemID returns the inventory ID of an item of kind k whose own key is
// key (a SPIFFE ID, an entry ID, a fingerprint): "kind:key".
func ItemID(k Kind, key string) string { return string(k) + ":" + key }

// ParseItemID splits an inventory ID into kind and key. A bare key (no
// known kind prefix) returns the zero Kind: the caller looks it up as each
// kind in turn.
func ParseItemID(id string) (Kind, string, error) {
	if id == "" {
		return "", "", errkind.New(errkind.InvalidArgument,
			"id is required: node:SPIFFE_ID, workload:ENTRY_ID, finding:FINGERPRINT or a bare SPIFFE ID, entry ID or fingerprint")
	}
	for _, k := range Kinds {
		if key, ok := strings.CutPrefix(id, string(k)+":"); ok {
			if key == "" {
				return "", "", errkind.New(errkind.InvalidArgument, "id %q: nothing after %q", id, string(k)+":")
			}
			return k, key, nil
		}
	}
	return "", id, nil
}

// Classifier turns store records into items with flags as of Now. The
// default TTLs stand in for entries that set none (the server's defaults).
type Classifier struct {
	Now            time.Time
	Thresholds     Thresholds
	DefaultX509TTL time.Duration
	DefaultJWTTTL  time.Duration
}

func (c *Classifier) th() Thresholds { return c.Thresholds.WithDefaults() }

// ago renders "2026-09-01 (63d ago)".
func (c *Classifier) ago(t time.Time) string {
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.DateOnly), FormatAge(c.Now.Sub(t).Truncate(time.Hour)))
}

// Node classifies an attested node: stale when not seen for Stale.
func (c *Classifier) Node(n model.Node) Item {
	it := Item{
		ID: ItemID(KindNode, n.SPIFFEID.String()), Kind: KindNode, Name: n.SPIFFEID.String(),
		Labels: n.Labels, Environment: NormalizeEnvironment(n.Labels[LabelEnvironment]), Owner: ownerOf(n.Labels),
		CreatedAt: n.CreatedAt, LastSeenAt: n.LastSeenAt, Node: &n,
	}
	if cutoff := c.Now.Add(-c.th().Stale); n.LastSeenAt.Before(cutoff) {
		msg := "never seen"
		if !n.LastSeenAt.IsZero() {
			msg = "not seen since " + c.ago(n.LastSeenAt)
		}
		it.Flags = append(it.Flags, Flag{FlagStale, msg})
	}
	return it
}

// AgentlessParentPath prefixes the parent IDs of entries whose SVIDs the
// token endpoint hands to CI jobs (spiffe://<td>/signet/ci/<issuer>).
const AgentlessParentPath = store.AgentlessPath

func agentless(e model.Entry) bool { return strings.HasPrefix(e.ParentID.Path(), AgentlessParentPath) }

// workloadEnvironment is the raw environment label a workload has: its
// entry's own; else "ci" for an agentless (CI) workload; else its node's.
// The store's coverage aggregation (store.WorkloadPlace) follows it.
func workloadEnvironment(entryEnv, nodeEnv string, agentless bool) string {
	switch {
	case entryEnv != "":
		return entryEnv
	case agentless:
		return "ci"
	}
	return nodeEnv
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Workload classifies a registration entry running under node (nil when
// its parent is not an attested node). A workload without an environment
// label takes its node's. It is stale when never issued an SVID though
// created more than Stale ago, or not issued one for Stale; its TTLs are
// over-long past MaxX509TTL or MaxJWTTTL.
func (c *Classifier) Workload(e model.Entry, node *model.Node) Item {
	labels := e.Labels
	isAgentless := agentless(e)
	if isAgentless {
		// A CI job's SVID is handed to it at the token endpoint: issued
		// is served, and its environment is ci unless labelled otherwise.
		e.LastServedAt = later(e.LastServedAt, e.LastIssuedAt)
		if e.FirstServedAt.IsZero() {
			e.FirstServedAt = e.FirstIssuedAt
		}
	}
	var nodeEnv string
	if node != nil {
		nodeEnv = node.Labels[LabelEnvironment]
	}
	if env := workloadEnvironment(labels[LabelEnvironment], nodeEnv, isAgentless); env != labels[LabelEnvironment] {
		labels = maps.Clone(labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[LabelEnvironment] = env
	}
	it := Item{
		ID: ItemID(KindWorkload, e.ID), Kind: KindWorkload, Name: e.SPIFFEID.String(),
		Labels: labels, Environment: NormalizeEnvironment(labels[LabelEnvironment]), Owner: ownerOf(labels),
		CreatedAt: e.CreatedAt, LastSeenAt: e.LastServedAt, Entry: &e,
		X509TTL: cmp.Or(e.X509TTL, c.DefaultX509TTL), JWTTTL: cmp.Or(e.JWTTTL, c.DefaultJWTTTL),
	}
	th := c.th()
	cutoff := c.Now.Add(-th.Stale)
	// Served, not minted, is what shows a workload uses its identity: an
	// agent mints SVIDs for every entry of its node, matching or not.
	switch {
	case e.LastServedAt.IsZero() && e.LastIssuedAt.IsZero() && e.CreatedAt.Before(cutoff):
		it.Flags = append(it.Flags, Flag{FlagStale, "never issued an SVID; created " + c.ago(e.CreatedAt)})
	case e.LastServedAt.IsZero() && e.CreatedAt.Before(cutoff):
		it.Flags = append(it.Flags, Flag{FlagStale, "SVIDs minted but never served to a workload (do its selectors match a process?); created " + c.ago(e.CreatedAt)})
	case !e.LastServedAt.IsZero() && e.LastServedAt.Before(cutoff):
		it.Flags = append(it.Flags, Flag{FlagStale, "no SVID served since " + c.ago(e.LastServedAt)})
	}
	var long []string
	if it.X509TTL > th.MaxX509TTL {
		long = append(long, fmt.Sprintf("x509 TTL %s exceeds %s", FormatAge(it.X509TTL), FormatAge(th.MaxX509TTL)))
	}
	if it.JWTTTL > th.MaxJWTTTL {
		long = append(long, fmt.Sprintf("JWT TTL %s exceeds %s", FormatAge(it.JWTTTL), FormatAge(th.MaxJWTTTL)))
	}
	if len(long) > 0 {
		it.Flags = append(it.Flags, Flag{FlagOverLongTTL, strings.Join(long, "; ")})
	}
	return it
}

// PrimaryPath returns the path a finding is filed under: the smallest path
// among its open locations, or among all when none is open.
func PrimaryPath(f *store.Finding) string {
	best, open := "", false
	for _, l := range f.Locations {
		isOpen := l.GoneAt.IsZero()
		if best == "" || isOpen && !open || isOpen == open && l.Path < best {
			best, open = l.Path, isOpen
		}
	}
	return best
}

// Finding classifies a static-credential finding: an old static credential
// when still open and known (first seen, or committed) for longer than
// MaxCredentialAge.
func (c *Classifier) Finding(f store.Finding) Item {
	name := f.RuleID
	if f.Preview != "" {
		name += " " + f.Preview
	}
	if p := PrimaryPath(&f); p != "" {
		name += " in " + p
		if n := len(f.Locations) - 1; n > 0 {
			name += fmt.Sprintf(" (+%d)", n)
		}
	}
	it := Item{
		ID: ItemID(KindFinding, f.Fingerprint), Kind: KindFinding, Name: name,
		Labels: f.Labels, Environment: NormalizeEnvironment(f.Labels[LabelEnvironment]), Owner: ownerOf(f.Labels),
		CreatedAt: f.FirstSeenAt, LastSeenAt: f.LastSeenAt, Finding: &f,
	}
	th := c.th()
	if since := f.Since(); f.Open() && !since.IsZero() && since.Before(c.Now.Add(-th.MaxCredentialAge)) {
		it.Flags = append(it.Flags, Flag{FlagOldStaticCredential, fmt.Sprintf(
			"static credential known since %s, longer than %s: rotate it and move its user to a SPIFFE identity",
			c.ago(since), FormatAge(th.MaxCredentialAge))})
	}
	return it
}

// Credential classifies a brokered credential's lease: named by its
// credential and holder, created at issue, short-lived by construction.
func (c *Classifier) Credential(l store.Lease) Item {
	return Item{
		ID: ItemID(KindCredential, l.ID), Kind: KindCredential,
		Name:        fmt.Sprintf("%s for %s (%s, until %s)", l.Credential, l.Subject, l.State, l.ExpiresAt.UTC().Format(time.RFC3339)),
		Labels:      map[string]string{"credential": l.Credential, "provider": l.Provider},
		Environment: Unknown, Owner: Unknown, CreatedAt: l.IssuedAt, Lease: &l,
	}
}
