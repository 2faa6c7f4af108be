// Package model holds Signet's plain domain types: selectors, registration
// entries, nodes, join tokens, CA authorities and audit records. It depends
// on nothing but go-spiffe and errkind, so every component can use it: the
// agent and the Workload API server in particular, which must never link the
// SQL store (see internal/deptest).
package model

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/logsafe"
)

// Selector is one attested property of a node or a workload, such as
// unix:uid:1000. Type names the attestor ("unix", "join_token"); Value is
// attestor-defined and may itself contain colons ("uid:1000").
type Selector struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// String returns the selector in type:value form.
func (s Selector) String() string { return s.Type + ":" + s.Value }

// ParseSelector parses "type:value". Both parts must be non-empty; the type
// is lower-case letters, digits, '_' or '-'; the value is printable with no
// whitespace at either end.
func ParseSelector(s string) (Selector, error) {
	typ, val, ok := strings.Cut(s, ":")
	if !ok || typ == "" || val == "" {
		return Selector{}, errkind.New(errkind.InvalidArgument,
			"invalid selector %q: want type:value, for example unix:uid:1000", logsafe.Truncate(s))
	}
	sel := Selector{Type: typ, Value: val}
	if err := sel.Validate(); err != nil {
		return Selector{}, err
	}
	return sel, nil
}

// Validate reports whether s is well formed (see ParseSelector) and, for
// the types of built-in attestors (LookupSelectorType), whether its value is
// one the attestor can produce: unix:uid:abc is refused. Other types, which
// plugins may produce, are checked only generically. Values quoted in its
// errors are truncated (internal/logsafe).
func (s Selector) Validate() error {
	if s.Type == "" || s.Value == "" {
		return errkind.New(errkind.InvalidArgument,
			"invalid selector %q: type and value must both be set, for example unix:uid:1000", logsafe.Truncate(s.String()))
	}
	if len(s.Type) > MaxSelectorTypeLen || strings.IndexFunc(s.Type, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) >= 0 {
		return errkind.New(errkind.InvalidArgument,
			"invalid selector type %q: use 1 to %d lower-case letters, digits, '_' or '-'", logsafe.Truncate(s.Type), MaxSelectorTypeLen)
	}
	if len(s.Value) > MaxSelectorValueLen {
		return errkind.New(errkind.InvalidArgument,
			"invalid selector value %q: %d bytes, at most %d", logsafe.Truncate(s.Value), len(s.Value), MaxSelectorValueLen)
	}
	if strings.TrimSpace(s.Value) != s.Value {
		return errkind.New(errkind.InvalidArgument,
			"invalid selector value %q: no leading or trailing spaces", logsafe.Truncate(s.Value))
	}
	for _, r := range s.Value {
		if r < 0x20 || r == 0x7f {
			return errkind.New(errkind.InvalidArgument,
				"invalid selector value %q: control characters are not allowed", logsafe.Truncate(s.Value))
		}
	}
	return validateBuiltinSelector(s)
}

// SortSelectors sorts sels in place by type then value and removes
// duplicates, returning the shortened slice. Stored selector sets are always
// in this canonical form.
func SortSelectors(sels []Selector) []Selector {
	slices.SortFunc(sels, func(a, b Selector) int {
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	return slices.Compact(sels)
}

// SubsetOf reports whether every selector of sub is in set. Both must be in
// canonical (sorted, deduplicated) form.
func SubsetOf(sub, set []Selector) bool {
	i := 0
	for _, s := range sub {
		for i < len(set) && (set[i].Type < s.Type || set[i].Type == s.Type && set[i].Value < s.Value) {
			i++
		}
		if i == len(set) || set[i] != s {
			return false
		}
		i++
	}
	return true
}

// Entry is a registration entry: the SPIFFE ID that workloads matching
// Selectors, running under ParentID, receive.
type Entry struct {
	// ID is assigned by the store on creation (a UUIDv7, increasing in
	// creation order) unless set.
	ID       string
	SPIFFEID spiffeid.ID
	// ParentID is the node (agent) ID, or a node alias, the entry belongs to.
	ParentID  spiffeid.ID
	Selectors []Selector // canonical form; at least one
	// X509TTL and JWTTTL are the SVID lifetimes; zero means the server default.
	X509TTL       time.Duration
	JWTTTL        time.Duration
	DNSNames      []string
	Admin         bool // SVIDs of this entry may call the admin API
	Downstream    bool // SVIDs of this entry may mint for a nested CA
	FederatesWith []spiffeid.TrustDomain
	// ExpiresAt, when non-zero, is when the entry stops being served.
	ExpiresAt time.Time
	Hint      string
	// Labels carry inventory metadata such as owner and environment.
	Labels map[string]string
	// Revision is the state revision of the entry's last change (read-only).
	Revision  int64
	CreatedAt time.Time
	UpdatedAt time.Time
	// FirstIssuedAt and LastIssuedAt record SVID issuance (read-only; set by
	// TouchEntries). Zero when never issued.
	FirstIssuedAt time.Time
	LastIssuedAt  time.Time
	// FirstServedAt and LastServedAt record when an SVID of the entry was
	// served to a workload, as agents report it (read-only; set by the
	// store): minted is not served when no workload matches.
	FirstServedAt time.Time
	LastServedAt  time.Time
}

// Validate checks what every stored entry must satisfy: a well-formed ID
// when set, both SPIFFE IDs, 1 to MaxSelectors valid selectors,
// non-negative TTLs and every field within its limit (limits.go). Errors
// are kinded InvalidArgument and name the field as the API spells it
// (spiffe_id, selectors[2], dns_names[0], hint). The server adds its own
// rules on top (trust domain, reserved IDs).
func (e *Entry) Validate() error {
	if e.ID != "" {
		if err := ValidateEntryID("id", e.ID); err != nil {
			return err
		}
	}
	switch {
	case e.SPIFFEID.IsZero():
		return errkind.New(errkind.InvalidArgument, "spiffe_id is required, for example spiffe://example.org/web")
	case e.ParentID.IsZero():
		return errkind.New(errkind.InvalidArgument, "parent_id is required, for example spiffe://example.org/node/web-1")
	case len(e.Selectors) == 0:
		return errkind.New(errkind.InvalidArgument, "selectors: at least one is required, for example unix:uid:1000")
	case len(e.Selectors) > MaxSelectors:
		return errkind.New(errkind.InvalidArgument, "selectors: %d selectors, at most %d", len(e.Selectors), MaxSelectors)
	case e.X509TTL < 0:
		return errkind.New(errkind.InvalidArgument, "x509_ttl %s is negative: use a positive duration such as 1h", e.X509TTL)
	case e.JWTTTL < 0:
		return errkind.New(errkind.InvalidArgument, "jwt_ttl %s is negative: use a positive duration such as 5m", e.JWTTTL)
	}
	if err := ValidateIDLen("spiffe_id", e.SPIFFEID); err != nil {
		return err
	}
	if err := ValidateIDLen("parent_id", e.ParentID); err != nil {
		return err
	}
	for i, s := range e.Selectors {
		if err := s.Validate(); err != nil {
			return FieldError(fmt.Sprintf("selectors[%d]", i), err)
		}
	}
	return e.validateCollections()
}

// Node is an attested agent.
type Node struct {
	SPIFFEID        spiffeid.ID
	AttestationType string     // the node attestor that admitted it, e.g. join_token
	Selectors       []Selector // canonical form
	// SerialNumber is the serial of the node's current agent SVID in
	// lower-case hex. NewSerialNumber is that of a renewed SVID the node has
	// not presented yet: both are accepted until the new one is first seen,
	// which then replaces the old (a lost renewal reply strands no node). An
	// SVID with any other serial is refused.
	SerialNumber    string
	NewSerialNumber string
	// PrevSerialNumber is the serial a renewal replaced, still accepted
	// until PrevSerialUntil (a short grace for calls in flight on the old
	// connection). Re-attestation and bans clear it.
	PrevSerialNumber string
	PrevSerialUntil  time.Time
	CertNotAfter     time.Time
	Banned           bool
	Labels           map[string]string
	Revision         int64
	CreatedAt        time.Time
	LastSeenAt       time.Time
}

// JoinToken is a single-use node attestation token. Only the SHA-256 of the
// token is stored.
type JoinToken struct {
	Hash []byte
	// SPIFFEID is the agent ID a node attesting with the token receives; zero
	// means an ID derived from the token.
	SPIFFEID  spiffeid.ID
	ExpiresAt time.Time
	CreatedAt time.Time
}

// AuthorityKind tells X.509 CAs from JWT signing keys.
type AuthorityKind string

// Authority kinds.
const (
	AuthorityX509 AuthorityKind = "x509"
	AuthorityJWT  AuthorityKind = "jwt"
)

// AuthorityState is a step in an authority's life:
// prepared → active → old, or tainted/revoked by an operator.
type AuthorityState string

// Authority states.
const (
	StatePrepared AuthorityState = "prepared" // published in the bundle, not yet signing
	StateActive   AuthorityState = "active"   // signing
	StateOld      AuthorityState = "old"      // retired, still published until it expires
	StateTainted  AuthorityState = "tainted"  // suspected compromised; published, not used
	StateRevoked  AuthorityState = "revoked"  // removed from the bundle
)

// Authority is the public half of a CA or JWT signing key. The private key
// stays with the server that owns it (ServerID), in its key manager.
type Authority struct {
	ID          string // X.509: hex subject key id; JWT: the key id (kid)
	Kind        AuthorityKind
	State       AuthorityState
	ServerID    string
	Certificate []byte // X.509 only: the CA certificate, DER
	PublicKey   []byte // PKIX DER
	NotBefore   time.Time
	NotAfter    time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time

	// KeyID names the private key in the owning server's key manager. Empty
	// on authorities created before key managers, whose key is "<kind>-<ID>".
	KeyID string
	// UpstreamChain and UpstreamRoots are set on X.509 authorities signed by
	// an upstream authority: the intermediates above Certificate (nearest
	// first, roots excluded) and the upstream roots, each concatenated DER.
	// The trust bundle then holds the roots instead of Certificate.
	UpstreamChain []byte
	UpstreamRoots []byte
}

// AuditRecord is one entry of the hash-chained audit log. Seq, PrevHash and
// Hash are assigned by the store when the record is appended.
type AuditRecord struct {
	Seq      int64
	Time     time.Time
	Actor    string            // who: "admin:uid:0", "agent:spiffe://…", "system"
	Action   string            // what: "entry.create", "svid.x509.sign", "node.ban"
	Object   string            // on what: an entry id, a SPIFFE ID
	Detail   map[string]string // decision detail; never secrets
	PrevHash []byte
	Hash     []byte
}

func (r AuditRecord) String() string {
	return fmt.Sprintf("#%d %s %s %s", r.Seq, r.Actor, r.Action, r.Object)
}
