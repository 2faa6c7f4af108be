package agent

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workload"
)

// maxRevocations bounds the revocations the agent holds; the server's
// revocations are pruned when the SVIDs they name expire, so a trust domain
// stays far below it.
const maxRevocations = 1 << 20

// revocations are the SVID revocations in force, as the server pushed them:
// X509-SVIDs by serial, JWT-SVIDs by SPIFFE ID and time of revocation. The
// agent stops serving what they name, and its validators (ValidateJWTSVID,
// AgentInfo.WatchRevocations for the gateway) refuse it, until the SVIDs
// expire.
type revocations struct {
	mu      sync.RWMutex
	serials map[string]time.Time // serial → when the SVID expires
	ids     map[spiffeid.ID]idRevocation
	changed chan struct{} // closed and replaced at every change
}

type idRevocation struct {
	revokedAt time.Time // JWT-SVIDs issued at or before it are refused
	expiresAt time.Time
	// x509Until, when set: X509-SVIDs of the ID with NotBefore at or
	// before it are revoked; remintAfter is when fresh ones are past it.
	x509Until, remintAfter time.Time
}

func newRevocations() *revocations {
	return &revocations{serials: map[string]time.Time{}, ids: map[spiffeid.ID]idRevocation{}, changed: make(chan struct{})}
}

// parsedRevocation is one checked revocation from the server.
type parsedRevocation struct {
	serial string
	id     spiffeid.ID
	idRevocation
}

// parseRevocation checks one revocation message the server sent
// (untrusted input) and appends what it revokes to out.
func parseRevocation(out []parsedRevocation, r *agentv1.SVIDRevocation) ([]parsedRevocation, error) {
	if r.GetExpiresAt() <= 0 || r.GetRevokedAt() <= 0 {
		return out, fmt.Errorf("revoked_at and expires_at are required")
	}
	times := idRevocation{revokedAt: time.Unix(r.GetRevokedAt(), 0), expiresAt: time.Unix(r.GetExpiresAt(), 0)}
	if r.GetSerial() == "" {
		if u := r.GetX509NotBeforeUntil(); u > 0 {
			times.x509Until, times.remintAfter = time.Unix(u, 0), time.Unix(max(r.GetRemintAfter(), u), 0)
		}
		id, err := spiffeid.FromString(r.GetSpiffeId())
		if err != nil {
			return out, fmt.Errorf("spiffe_id: %w", err)
		}
		if len(r.GetSerials()) > 0 {
			return out, fmt.Errorf("serials without serial")
		}
		return append(out, parsedRevocation{id: id, idRevocation: times}), nil
	}
	for i, s := range append([]string{r.GetSerial()}, r.GetSerials()...) {
		if !canonicalSerial(s) {
			return out, fmt.Errorf("serials[%d]: want lowercase hex without leading zeros, at most %d digits", i, model.MaxSerialHexLen)
		}
		out = append(out, parsedRevocation{serial: s, idRevocation: times})
	}
	return out, nil
}

// canonicalSerial reports whether s is a serial as Signet writes it
// (model.ParseSerial's output), cheaply: a fleet-wide revocation is
// checked on every agent.
func canonicalSerial(s string) bool {
	if s == "" || len(s) > model.MaxSerialHexLen || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// apply replaces the set with in (reset) or adds in to it, dropping what
// expired at now. It returns the serials and IDs newly revoked.
func (v *revocations) apply(in []parsedRevocation, reset bool, now time.Time) (serials map[string]bool, ids map[spiffeid.ID]idRevocation) {
	v.mu.Lock()
	defer v.mu.Unlock()
	old := v.serials
	oldIDs := v.ids
	if reset {
		v.serials = make(map[string]time.Time, len(in))
		v.ids = map[spiffeid.ID]idRevocation{}
	}
	serials, ids = map[string]bool{}, map[spiffeid.ID]idRevocation{}
	for _, r := range in {
		if !now.Before(r.expiresAt) || len(v.serials)+len(v.ids) >= maxRevocations {
			continue
		}
		if r.serial != "" {
			if _, known := old[r.serial]; !known {
				serials[r.serial] = true
			}
			v.serials[r.serial] = r.expiresAt
			continue
		}
		if prev, known := oldIDs[r.id]; !known || prev.revokedAt.Before(r.revokedAt) {
			ids[r.id] = r.idRevocation
		}
		if cur, ok := v.ids[r.id]; !ok || cur.revokedAt.Before(r.revokedAt) {
			v.ids[r.id] = r.idRevocation
		}
	}
	close(v.changed)
	v.changed = make(chan struct{})
	return serials, ids
}

// sweep forgets the revocations of SVIDs that expired.
func (v *revocations) sweep(now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for s, exp := range v.serials {
		if !now.Before(exp) {
			delete(v.serials, s)
		}
	}
	for id, r := range v.ids {
		if !now.Before(r.expiresAt) {
			delete(v.ids, id)
		}
	}
}

// x509Revoked reports whether an X509-SVID of id with the serial and
// NotBefore is revoked, by its serial or by its ID's rule.
func (v *revocations) x509Revoked(id spiffeid.ID, serial string, notBefore time.Time) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if _, ok := v.serials[serial]; ok {
		return true
	}
	r, ok := v.ids[id]
	return ok && !r.x509Until.IsZero() && !notBefore.After(r.x509Until)
}

// jwtRevoked reports whether a JWT-SVID for id issued at iat (unix
// seconds; 0 when the token has none) is revoked.
func (v *revocations) jwtRevoked(id spiffeid.ID, iat int64) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	r, ok := v.ids[id]
	return ok && (iat == 0 || iat <= r.revokedAt.Unix())
}

// list returns the revocations in force, sorted, and a channel closed at the
// next change.
func (v *revocations) list() ([]*agentv1.SVIDRevocation, <-chan struct{}) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]*agentv1.SVIDRevocation, 0, len(v.serials)+len(v.ids))
	for s, exp := range v.serials {
		out = append(out, &agentv1.SVIDRevocation{Serial: s, ExpiresAt: exp.Unix()})
	}
	for id, r := range v.ids {
		pb := &agentv1.SVIDRevocation{SpiffeId: id.String(), RevokedAt: r.revokedAt.Unix(), ExpiresAt: r.expiresAt.Unix()}
		if !r.x509Until.IsZero() {
			pb.X509NotBeforeUntil, pb.RemintAfter = r.x509Until.Unix(), r.remintAfter.Unix()
		}
		out = append(out, pb)
	}
	slices.SortFunc(out, func(a, b *agentv1.SVIDRevocation) int {
		if c := strings.Compare(a.Serial, b.Serial); c != 0 {
			return c
		}
		return strings.Compare(a.SpiffeId, b.SpiffeId)
	})
	return out, v.changed
}

// applyRevocations takes revocations pushed by the server into the cache:
// X509-SVIDs revoked by serial or by their ID's rule are dropped at once
// (their entries are due for a fresh one) and cached JWT-SVIDs of a
// revoked ID issued before its revocation are forgotten. It reports
// whether anything served changed, and when fresh SVIDs may be signed
// (zero: at once).
func (c *cache) applyRevocations(in []*agentv1.SVIDRevocation, reset bool) (changed bool, remintAfter time.Time) {
	parsed := make([]parsedRevocation, 0, len(in))
	bad := 0
	for _, r := range in {
		var err error
		if parsed, err = parseRevocation(parsed, r); err != nil {
			if bad++; bad == 1 {
				c.log.Warn("ignoring a revocation from the server", logKeyError, err)
			}
		}
	}
	now := c.now()
	serials, ids := c.revoked.apply(parsed, reset, now)
	rules := false
	for _, r := range ids {
		rules = rules || !r.x509Until.IsZero()
	}
	if len(serials) > 0 || rules {
		c.mu.Lock()
		for _, r := range c.entries {
			if r.svid == nil {
				continue
			}
			rule, byID := ids[r.entry.SPIFFEID]
			byID = byID && !rule.x509Until.IsZero() && r.svid.notBefore <= nanos(rule.x509Until)
			var buf [48]byte
			if sn := r.svid.appendSerial(buf[:0]); !serials[string(sn)] && !byID {
				continue
			}
			serial := r.svid.serial()
			c.setSVID(r, nil)
			r.signFails, r.nextTry = 0, 0
			if byID {
				r.nextTry = nanos(rule.remintAfter)
				remintAfter = maxTime(remintAfter, rule.remintAfter)
			}
			changed = true
			c.log.Info("dropped a revoked x509-svid", logKeyEntryID, r.entry.ID, "serial", serial, "spiffe_id", r.entry.SPIFFEID.String())
		}
		c.met.setCachedSVIDs(c.nSVIDs)
		c.mu.Unlock()
	}
	if len(ids) > 0 {
		c.jwtMu.Lock()
		for k, r := range c.jwts {
			if rev, hit := ids[r.id]; hit && r.iat <= rev.revokedAt.Unix() {
				delete(c.jwts, k)
			}
		}
		c.jwtMu.Unlock()
	}
	return changed, remintAfter
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// dropAll stops serving every workload SVID at once: the node was evicted
// or banned, or its agent SVID revoked.
func (c *cache) dropAll() {
	c.mu.Lock()
	for _, r := range c.entries {
		c.setSVID(r, nil)
	}
	c.met.setCachedSVIDs(c.nSVIDs)
	c.mu.Unlock()
	c.jwtMu.Lock()
	clear(c.jwts)
	c.jwtMu.Unlock()
}

// JWTRevoked implements workload.Revocations for ValidateJWTSVID.
var _ workload.Revocations = (*cache)(nil)

// JWTRevoked reports whether a JWT-SVID of id issued at issuedAt is revoked.
func (c *cache) JWTRevoked(id spiffeid.ID, issuedAt int64) bool {
	return c.revoked.jwtRevoked(id, issuedAt)
}

// servesSerial reports whether an entry holds an X509-SVID with serial.
func (c *cache) servesSerial(serial string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var buf [48]byte
	for _, r := range c.entries {
		if r.svid != nil && string(r.svid.appendSerial(buf[:0])) == serial {
			return true
		}
	}
	return false
}

// serials returns the serial of every held X509-SVID by entry ID.
func (c *cache) serials() map[string]string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]string, c.nSVIDs)
	for id, r := range c.entries {
		if r.svid != nil {
			out[id] = r.svid.serial()
		}
	}
	return out
}
