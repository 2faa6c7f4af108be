package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workload"
)

// cache holds what the agent serves: the node's entries as last synced, the
// workload X509-SVIDs minted for them, cached JWT-SVIDs and the trust
// bundle. It implements workload.Source for the Workload API and
// x509bundle.Source for the agent's own TLS connections.
//
// Each entry is indexed under one of its selectors (the rarest, see
// reindex), so a lookup visits only the entries filed under a selector the
// caller has: a superset of the matches, usually a small one, and never an
// entry twice.
type cache struct {
	td  spiffeid.TrustDomain
	now func() time.Time
	log *slog.Logger
	met *metrics
	// signJWT asks the server for a JWT-SVID; nil fails every JWT fetch.
	signJWT jwtSignFunc
	// health says what the agent waits for; nil reports none.
	health func(context.Context) error

	mu        sync.RWMutex
	entries   map[string]*entryRec
	bySel     map[model.Selector][]*entryRec // valid entries, each under one selector
	revision  int64                          // of the last applied SyncResponse
	syncGen   uint64                         // counts paged syncs (pageState.gen)
	forceFull bool                           // the next Sync asks for everything
	digest    []byte                         // entry-set digest; nil when stale
	bundle    *spiffebundle.Bundle
	// federated holds the federated trust domains' bundles as the last Sync
	// sent them; each caller sees only those its entries' FederatesWith name.
	federated map[spiffeid.TrustDomain]*spiffebundle.Bundle
	nSVIDs    int // entries holding an X509-SVID

	changedMu sync.Mutex
	changed   chan struct{}

	ready atomic.Bool

	jwtMu sync.Mutex
	jwts  map[jwtKey]*jwtRec

	// served is what the Workload API handed out since the last sync.
	served served

	// revoked holds the revocations the server pushed (revocations.go).
	revoked *revocations
}

// entryRec is one entry the node holds. A rec is replaced (losing its SVID)
// when the entry's identity changes, and updated in place otherwise, so a
// pointer to it identifies "this entry as it was when signing started".
type entryRec struct {
	entry heldEntry
	// invalid says why the entry, as the server sent it, is refused. An
	// invalid entry is held only so that the entry-set digest matches the
	// server's; it is never matched or signed.
	invalid error
	svid    *svidRec
	// signFails counts consecutive failures to sign; nextTry (Unix
	// nanoseconds, 0: none) delays the next attempt after one.
	signFails int
	nextTry   int64
	// signing says a signing pipeline holds a job for the rec (claim), so
	// no second one is queued; seen marks the recs a paged sync confirmed.
	signing bool
	seen    uint64
}

// heldEntry is what the agent keeps of an entry the server sent: the
// fields matching, serving, signing and renewal read, about a quarter of a
// model.Entry (no labels, TTLs or timestamps; the rarely set fields behind
// one pointer). The agent holds one per entry of its node.
type heldEntry struct {
	ID        string
	SPIFFEID  spiffeid.ID
	Selectors []model.Selector
	expiresAt int64      // Unix seconds (as on the wire); 0: never
	x         *heldExtra // nil when none of its fields is set
}

// heldExtra holds the entry fields most entries leave unset.
type heldExtra struct {
	dnsNames      []string
	federatesWith []spiffeid.TrustDomain
	hint          string
	downstream    bool
}

// hold returns the part of e the agent keeps.
func hold(e model.Entry) heldEntry {
	h := heldEntry{ID: e.ID, SPIFFEID: e.SPIFFEID, Selectors: e.Selectors}
	if !e.ExpiresAt.IsZero() {
		h.expiresAt = e.ExpiresAt.Unix()
	}
	if len(e.DNSNames) > 0 || len(e.FederatesWith) > 0 || e.Hint != "" || e.Downstream {
		h.x = &heldExtra{dnsNames: e.DNSNames, federatesWith: e.FederatesWith, hint: e.Hint, downstream: e.Downstream}
	}
	return h
}

// FederatesWith is the entry's federates_with.
func (e *heldEntry) FederatesWith() []spiffeid.TrustDomain {
	if e.x == nil {
		return nil
	}
	return e.x.federatesWith
}

// Hint is the entry's hint.
func (e *heldEntry) Hint() string {
	if e.x == nil {
		return ""
	}
	return e.x.hint
}

// svidRec is a cached X509-SVID, kept encoded as the Workload API serves it
// (chain DER, PKCS#8 key) in one allocation with the leaf's serial: parsed
// certificates and live key objects cost several kilobytes each, which
// matters on a node with 10,000 entries. Times are Unix nanoseconds
// (nanos).
type svidRec struct {
	buf       []byte // chain DER, PKCS#8 key, the serial's big-endian bytes
	chainLen  uint32
	keyLen    uint32
	renewAt   int64 // half-way through the certificate's lifetime (see renewTime)
	notAfter  int64
	notBefore int64 // the leaf's (revocation by SPIFFE ID)
}

// newSVIDRec packs an SVID's encoded chain, key and serial into one record.
func newSVIDRec(chainDER, keyDER []byte, serial *big.Int, renewAt, notBefore, notAfter time.Time) *svidRec {
	sn := serial.Bytes()
	buf := make([]byte, 0, len(chainDER)+len(keyDER)+len(sn))
	buf = append(append(append(buf, chainDER...), keyDER...), sn...)
	return &svidRec{buf: buf, chainLen: uint32(len(chainDER)), keyLen: uint32(len(keyDER)),
		renewAt: nanos(renewAt), notAfter: nanos(notAfter), notBefore: nanos(notBefore)}
}

func (s *svidRec) chainDER() []byte { return s.buf[:s.chainLen:s.chainLen] }

func (s *svidRec) keyDER() []byte {
	end := s.chainLen + s.keyLen
	return s.buf[s.chainLen:end:end]
}

// appendSerial appends the leaf's serial as lowercase hex without leading
// zeros, as big.Int's Text(16) and the audit log write it.
func (s *svidRec) appendSerial(dst []byte) []byte {
	sn := s.buf[s.chainLen+s.keyLen:]
	if len(sn) == 0 {
		return append(dst, '0')
	}
	const digits = "0123456789abcdef"
	if sn[0] < 0x10 {
		dst = append(dst, digits[sn[0]])
		sn = sn[1:]
	}
	for _, b := range sn {
		dst = append(dst, digits[b>>4], digits[b&0xf])
	}
	return dst
}

// serial is the leaf's serial, as appendSerial writes it.
func (s *svidRec) serial() string { return string(s.appendSerial(make([]byte, 0, 40))) }

// nanos is t in Unix nanoseconds, saturated at the ends of int64's range
// (the years 1678 and 2262): a certificate valid until 9999 is, to the
// agent, valid for ever.
func nanos(t time.Time) int64 {
	switch {
	case t.Before(minNanos):
		return math.MinInt64
	case t.After(maxNanos):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var (
	minNanos = time.Unix(0, math.MinInt64)
	maxNanos = time.Unix(0, math.MaxInt64)
)

var (
	_ workload.Source         = (*cache)(nil)
	_ workload.HealthReporter = (*cache)(nil)
	_ workload.Explainer      = (*cache)(nil)
	_ workload.CallerBundler  = (*cache)(nil)
	_ x509bundle.Source       = (*cache)(nil)
)

func newCache(td spiffeid.TrustDomain, bundle *spiffebundle.Bundle, now func() time.Time, log *slog.Logger, met *metrics) *cache {
	return &cache{
		td:      td,
		now:     now,
		log:     log,
		met:     met,
		entries: map[string]*entryRec{},
		bySel:   map[model.Selector][]*entryRec{},
		bundle:  bundle,
		changed: make(chan struct{}),
		jwts:    map[jwtKey]*jwtRec{},
		revoked: newRevocations(),
	}
}

// Ready reports whether the agent has completed a sync since it started.
// It stays true while the server is unreachable afterwards: the cache keeps
// serving what it holds until the SVIDs expire.
func (c *cache) Ready() bool { return c.ready.Load() }

// Health implements workload.HealthReporter with the agent's Synced.
func (c *cache) Health(ctx context.Context) error {
	if c.health == nil {
		return nil
	}
	return c.health(ctx)
}

// Changed returns a channel closed at the next change of what the cache
// serves (entries, SVIDs, bundle) after the call.
func (c *cache) Changed() <-chan struct{} {
	c.changedMu.Lock()
	defer c.changedMu.Unlock()
	return c.changed
}

// broadcast wakes every Changed waiter.
func (c *cache) broadcast() {
	c.changedMu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.changedMu.Unlock()
}

// Bundles returns the trust domain's bundle first, then the bundles of all
// the federated trust domains the node's entries name (as the last Sync
// sent them), sorted by trust domain. The Workload API serves each caller
// only its share (BundlesFor); this full set is for the agent's own views.
func (c *cache) Bundles() []*spiffebundle.Bundle {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.bundle == nil {
		return nil
	}
	out := make([]*spiffebundle.Bundle, 0, 1+len(c.federated))
	out = append(out, c.bundle)
	for _, b := range c.federated {
		out = append(out, b)
	}
	sortFederated(out[1:])
	return out
}

// BundlesFor implements workload.CallerBundler: the trust domain's bundle
// first, then the bundles of the trust domains that the caller's matching
// entries (valid, unexpired, whose selectors are all among sels) name in
// FederatesWith, sorted by trust domain. A trust domain no bundle was synced
// for is left out; a caller without a matching entry gets the own bundle
// only. What it reads (entries, bundles) changes only with a broadcast, so
// responses cached under the caller's selectors stay right.
func (c *cache) BundlesFor(sels []model.Selector) []*spiffebundle.Bundle {
	sels = canonical(sels)
	now := c.now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.bundle == nil {
		return nil
	}
	out := []*spiffebundle.Bundle{c.bundle}
	if len(c.federated) == 0 {
		return out
	}
	var seen map[spiffeid.TrustDomain]bool
	for _, s := range sels {
		for _, r := range c.bySel[s] {
			if len(r.entry.FederatesWith()) == 0 || expired(r.entry, now) || !model.WorkloadMatches(r.entry.Selectors, sels) {
				continue
			}
			for _, td := range r.entry.FederatesWith() {
				b := c.federated[td]
				if b == nil || seen[td] {
					continue
				}
				if seen == nil {
					seen = make(map[spiffeid.TrustDomain]bool, len(r.entry.FederatesWith()))
				}
				seen[td] = true
				out = append(out, b)
			}
		}
	}
	sortFederated(out[1:])
	return out
}

// sortFederated sorts bundles by trust domain name.
func sortFederated(bs []*spiffebundle.Bundle) {
	slices.SortFunc(bs, func(a, b *spiffebundle.Bundle) int {
		return strings.Compare(a.TrustDomain().Name(), b.TrustDomain().Name())
	})
}

// Bundle returns the current trust bundle.
func (c *cache) Bundle() *spiffebundle.Bundle {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bundle
}

// setBundle replaces the bundle, reporting whether it changed.
func (c *cache) setBundle(b *spiffebundle.Bundle) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bundle != nil && c.bundle.Equal(b) {
		return false
	}
	c.bundle = b
	return true
}

// GetX509BundleForTrustDomain implements x509bundle.Source with the current
// bundle, so TLS to the server follows CA rotation.
func (c *cache) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != c.td {
		return nil, fmt.Errorf("no bundle for trust domain %q", td)
	}
	b := c.Bundle()
	if b == nil {
		return nil, errors.New("no trust bundle yet")
	}
	return b.X509Bundle(), nil
}

// X509SVIDs returns the SVIDs of the entries whose selectors are all among
// sels, sorted by SPIFFE ID then entry ID. sels need not be sorted. The
// chains and keys returned are shared: callers must not modify them.
func (c *cache) X509SVIDs(sels []model.Selector) []workload.X509SVID {
	sels = canonical(sels)
	now := c.now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	// Collect the candidate buckets first so that the result is allocated
	// once, at most the candidates' size.
	var stack [16][]*entryRec
	buckets, candidates := stack[:0], 0
	for _, s := range sels {
		if b := c.bySel[s]; len(b) > 0 {
			buckets = append(buckets, b)
			candidates += len(b)
		}
	}
	if candidates == 0 {
		return nil
	}
	out := make([]workload.X509SVID, 0, min(candidates, 64))
	for _, b := range buckets {
		for _, r := range b {
			if r.svid == nil || !r.servable(now) || !model.WorkloadMatches(r.entry.Selectors, sels) {
				continue
			}
			out = append(out, workload.X509SVID{
				EntryID:   r.entry.ID,
				ID:        r.entry.SPIFFEID,
				ChainDER:  r.svid.chainDER(),
				KeyDER:    r.svid.keyDER(),
				ExpiresAt: time.Unix(0, r.svid.notAfter).UTC(),
				Hint:      r.entry.Hint(),
			})
		}
	}
	ids := make([]string, len(out))
	for i := range out {
		ids[i] = out[i].EntryID
	}
	c.served.mark(now, ids...)
	if len(out) > 1 {
		slices.SortFunc(out, func(a, b workload.X509SVID) int {
			if c := strings.Compare(a.ID.String(), b.ID.String()); c != 0 {
				return c
			}
			return strings.Compare(a.EntryID, b.EntryID)
		})
	}
	return out
}

// matching returns copies of the valid, unexpired entries whose selectors
// are among sels (which must be canonical), whether or not they hold an
// X509-SVID.
func (c *cache) matching(sels []model.Selector, now time.Time) []heldEntry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []heldEntry
	for _, s := range sels {
		for _, r := range c.bySel[s] {
			if !expired(r.entry, now) && model.WorkloadMatches(r.entry.Selectors, sels) {
				out = append(out, r.entry)
			}
		}
	}
	slices.SortFunc(out, func(a, b heldEntry) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// servable reports whether r's SVID may be handed out at now.
func (r *entryRec) servable(now time.Time) bool {
	return r.invalid == nil && r.svid != nil && nanos(now) < r.svid.notAfter && !expired(r.entry, now)
}

// expired reports whether the entry has passed its expires_at.
func expired(e heldEntry, now time.Time) bool {
	return e.expiresAt != 0 && now.Unix() >= e.expiresAt
}

// canonical returns sels sorted and deduplicated, copying only when sels is
// not already in that form.
func canonical(sels []model.Selector) []model.Selector {
	for i := 1; i < len(sels); i++ {
		if compareSelectors(sels[i-1], sels[i]) >= 0 {
			return model.SortSelectors(slices.Clone(sels))
		}
	}
	return sels
}

func compareSelectors(a, b model.Selector) int {
	if c := strings.Compare(a.Type, b.Type); c != 0 {
		return c
	}
	return strings.Compare(a.Value, b.Value)
}

// syncRequest builds the next Sync request from what the cache holds.
func (c *cache) syncRequest() *agentv1.SyncRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	req := &agentv1.SyncRequest{KnownRevision: c.revision}
	if c.forceFull {
		req.KnownRevision = 0
	}
	if c.digest == nil {
		ids := make([]string, 0, len(c.entries))
		for id := range c.entries {
			ids = append(ids, id)
		}
		c.digest = apiconv.EntrySetDigest(ids)
	}
	req.EntrySetDigest = c.digest
	if c.bundle != nil {
		req.KnownBundleSequence, _ = c.bundle.SequenceNumber()
	}
	return req
}

// maxRefusalLogs bounds the log lines about refused entries per response.
const maxRefusalLogs = 10

// applied reports what applySync changed.
type applied struct {
	entries   bool                 // the entry set or an entry changed
	bundle    *spiffebundle.Bundle // the new bundle; nil when unchanged
	federated bool                 // the federated bundles changed
	refused   int                  // entries held as invalid
	due       []signJob            // entries of the response that need an X509-SVID
}

// applySync applies a Sync response that is the whole answer (not one page
// of several); see applyPage.
func (c *cache) applySync(resp *agentv1.SyncResponse) (applied, error) {
	return c.applyPage(resp, &pageState{})
}

// pageState follows one paged sync across its pages. The zero value is the
// state before the first page.
type pageState struct {
	started bool
	gen     uint64 // marks the entries the sync's pages confirmed
	sweep   bool   // the pages list the node's complete set (full or entry_ids)
	missing bool   // the server listed an id the agent does not hold
	added   bool   // entries were indexed incrementally: rebalance at the end
}

// applyPage applies one page of a Sync response (or the whole response of
// a server or a sync that does not page: a single last page). The response
// is untrusted input: the bundle must be a usable bundle of the agent's
// trust domain (else nothing is applied), and each entry must be a
// well-formed entry of the trust domain (else it is held as invalid and
// never served).
//
// Entries are merged as each page arrives, so their SVIDs can be signed
// while later pages are fetched (applied.due lists those of the page that
// need one). Deletions wait for the last page: every entry a full sync's
// pages (or an incremental sync's entry_ids) did not confirm is dropped
// then, with one pass over what the agent holds. The revision is adopted
// at the last page only.
func (c *cache) applyPage(resp *agentv1.SyncResponse, st *pageState) (applied, error) {
	var res applied
	if resp == nil {
		return res, errors.New("apply sync: empty response")
	}
	var bundle *spiffebundle.Bundle
	if pb := resp.GetBundle(); pb != nil {
		b, err := apiconv.BundleFromProto(pb)
		if err != nil {
			return res, fmt.Errorf("apply sync: bundle: %w", err)
		}
		if b.TrustDomain() != c.td {
			return res, fmt.Errorf("apply sync: bundle is for trust domain %q, want %q", b.TrustDomain(), c.td)
		}
		if len(b.X509Authorities()) == 0 {
			return res, errors.New("apply sync: bundle has no x509 authorities")
		}
		bundle = b
	}
	last := resp.GetNextPageToken() == ""
	federated := c.federatedFrom(resp.GetFederatedBundles())
	incoming := make([]*entryRec, 0, len(resp.GetEntries()))
	for i, pe := range resp.GetEntries() {
		if pe.GetId() == "" {
			return res, fmt.Errorf("apply sync: entries[%d] has no id", i)
		}
		r := &entryRec{}
		e, err := apiconv.EntryFromProto(pe)
		if err == nil {
			err = c.checkEntry(e)
		}
		r.entry, r.invalid = hold(e), err
		if r.invalid != nil {
			r.entry = heldEntry{ID: pe.GetId()}
			res.refused++
			if res.refused <= maxRefusalLogs {
				c.log.Warn("refusing entry from server", logKeyEntryID, pe.GetId(), logKeyError, r.invalid)
			}
		}
		incoming = append(incoming, r)
	}
	if res.refused > maxRefusalLogs {
		c.log.Warn("refused more entries from server", "count", res.refused-maxRefusalLogs)
	}
	now := c.now()

	c.mu.Lock()
	defer c.mu.Unlock()
	if !st.started {
		st.started = true
		c.syncGen++
		st.gen = c.syncGen
		st.sweep = resp.GetFull() || resp.GetEntryIdsSet()
	}
	structural := false
	var added []*entryRec
	for _, r := range incoming {
		old := c.entries[r.entry.ID]
		var oldSels []model.Selector
		if old != nil {
			oldSels = old.entry.Selectors
		}
		held := c.merge(old, r)
		switch {
		case old == nil:
			added = append(added, held)
		case held != old || !slices.Equal(oldSels, r.entry.Selectors):
			structural = true // old leaves the index, or is filed under a selector it lost
		}
		c.entries[r.entry.ID] = held
		held.seen = st.gen
		res.entries = true
		if held.dueAt(now) {
			res.due = append(res.due, signJob{rec: held, entry: held.entry})
		}
	}
	if resp.GetEntryIdsSet() {
		for _, id := range resp.GetEntryIds() {
			if r := c.entries[id]; r != nil {
				r.seen = st.gen
			} else {
				// The server lists an entry the agent never received: its
				// incremental view went wrong, so ask for everything.
				st.missing = true
			}
		}
	}
	if last && st.sweep {
		for id, r := range c.entries {
			if r.seen != st.gen {
				c.setSVID(r, nil)
				delete(c.entries, id)
				res.entries, structural = true, true
			}
		}
		if resp.GetFull() {
			c.forceFull = false
		}
	}
	if last {
		if st.missing {
			c.forceFull = true
		}
		c.revision = resp.GetRevision()
	}
	if res.entries {
		c.digest = nil
		switch {
		case structural || (last && st.added) || (last && len(added) > 0):
			c.reindex()
		default:
			for _, r := range added {
				c.indexAdd(r)
			}
			st.added = st.added || len(added) > 0
		}
	}
	if bundle != nil && (c.bundle == nil || !bundle.Equal(c.bundle)) {
		c.bundle = bundle
		res.bundle = bundle
	}
	if !maps.EqualFunc(federated, c.federated, (*spiffebundle.Bundle).Equal) {
		c.federated = federated
		res.federated = true
	}
	c.met.setCachedSVIDs(c.nSVIDs)
	return res, nil
}

// dueAt reports whether r needs an X509-SVID at now: valid, unexpired, not
// backing off after a failure, and holding no SVID or one past half its
// lifetime. It must be called with c.mu held.
func (r *entryRec) dueAt(now time.Time) bool {
	if r.invalid != nil || expired(r.entry, now) || nanos(now) < r.nextTry {
		return false
	}
	return r.svid == nil || nanos(now) >= r.svid.renewAt
}

// indexAdd files a new rec in the selector index under the one of its
// selectors whose bucket is smallest now, between full reindexes (the
// pages of one sync). It must be called with c.mu held.
func (c *cache) indexAdd(r *entryRec) {
	if r.invalid != nil || len(r.entry.Selectors) == 0 {
		return
	}
	key := r.entry.Selectors[0]
	for _, s := range r.entry.Selectors[1:] {
		if len(c.bySel[s]) < len(c.bySel[key]) {
			key = s
		}
	}
	c.bySel[key] = append(c.bySel[key], r)
}

// maxFederatedBundles bounds the federated bundles taken from one response.
const maxFederatedBundles = 256

// federatedFrom converts a response's federated bundles (untrusted input):
// one that fails to convert, is of the agent's own trust domain, repeats a
// trust domain or has no authorities is skipped and logged.
func (c *cache) federatedFrom(in []*commonv1.Bundle) map[spiffeid.TrustDomain]*spiffebundle.Bundle {
	var out map[spiffeid.TrustDomain]*spiffebundle.Bundle
	for i, pb := range in {
		if i >= maxFederatedBundles {
			c.log.Warn("refusing federated bundles past the limit", "count", len(in)-maxFederatedBundles)
			break
		}
		b, err := apiconv.BundleFromProto(pb)
		switch {
		case err != nil:
		case b.TrustDomain() == c.td:
			err = errors.New("is of the agent's own trust domain")
		case len(b.X509Authorities()) == 0 && len(b.JWTAuthorities()) == 0:
			err = errors.New("has no authorities")
		case out[b.TrustDomain()] != nil:
			err = errors.New("repeats a trust domain")
		}
		if err != nil {
			c.log.Warn("refusing federated bundle from server", "trust_domain", logsafe.Truncate(pb.GetTrustDomain()), logKeyError, err)
			continue
		}
		if out == nil {
			out = make(map[spiffeid.TrustDomain]*spiffebundle.Bundle, min(len(in), maxFederatedBundles))
		}
		out[b.TrustDomain()] = b
	}
	return out
}

// checkEntry applies the agent's own checks to a converted entry.
func (c *cache) checkEntry(e model.Entry) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if !e.SPIFFEID.MemberOf(c.td) {
		return fmt.Errorf("spiffe_id %s is not in trust domain %s", e.SPIFFEID, c.td)
	}
	return nil
}

// merge returns the rec to hold for an entry that arrived as next while old
// was held: old updated in place when the SVID it holds still fits the
// entry, next otherwise. It must be called with c.mu held.
func (c *cache) merge(old, next *entryRec) *entryRec {
	if old == nil {
		return next
	}
	if old.invalid == nil && next.invalid == nil && sameIdentity(old.entry, next.entry) {
		old.entry = next.entry
		return old
	}
	c.setSVID(old, nil)
	return next
}

// sameIdentity reports whether an SVID minted for a is also right for b:
// same SPIFFE ID, DNS names and CA flag. Other fields (selectors, hint,
// TTLs, expiry) are read from the entry at serving or renewal time.
func sameIdentity(a, b heldEntry) bool {
	var ax, bx heldExtra
	if a.x != nil {
		ax = *a.x
	}
	if b.x != nil {
		bx = *b.x
	}
	return a.SPIFFEID == b.SPIFFEID && slices.Equal(ax.dnsNames, bx.dnsNames) && ax.downstream == bx.downstream
}

// reindex rebuilds the selector index: each valid entry is filed under the
// one of its selectors that the fewest entries share. Any of an entry's
// selectors would do, since a caller matching the entry has them all; the
// rarest keeps buckets small when many entries share a common selector
// (a namespace, a cluster). It must be called with c.mu held.
//
// Only the selectors of entries with a choice to make (two selectors or
// more) are counted: on a node whose entries have one selector each, the
// rebuild holds no count table beside the index.
func (c *cache) reindex() {
	var counts map[model.Selector]int
	for _, r := range c.entries {
		if r.invalid == nil && len(r.entry.Selectors) > 1 {
			if counts == nil {
				counts = make(map[model.Selector]int)
			}
			for _, s := range r.entry.Selectors {
				counts[s] = 0
			}
		}
	}
	if counts != nil {
		for _, r := range c.entries {
			if r.invalid == nil {
				for _, s := range r.entry.Selectors {
					if n, ok := counts[s]; ok {
						counts[s] = n + 1
					}
				}
			}
		}
	}
	idx := make(map[model.Selector][]*entryRec, len(c.bySel))
	for _, r := range c.entries {
		if r.invalid != nil || len(r.entry.Selectors) == 0 {
			continue
		}
		key := r.entry.Selectors[0]
		for _, s := range r.entry.Selectors[1:] {
			if counts[s] < counts[key] {
				key = s
			}
		}
		idx[key] = append(idx[key], r)
	}
	c.bySel = idx
}

// setSVID replaces r's SVID and keeps the SVID count. It must be called
// with c.mu held.
func (c *cache) setSVID(r *entryRec, s *svidRec) {
	switch {
	case r.svid == nil && s != nil:
		c.nSVIDs++
	case r.svid != nil && s == nil:
		c.nSVIDs--
	}
	r.svid = s
}

// sweep drops SVIDs that expired or whose entry expired, and JWT-SVIDs
// that expired or whose entry is gone. It reports whether anything served
// changed.
func (c *cache) sweep(now time.Time) bool {
	changed := false
	c.mu.Lock()
	for _, r := range c.entries {
		if r.svid != nil && (nanos(now) >= r.svid.notAfter || expired(r.entry, now)) {
			c.setSVID(r, nil)
			changed = true
		}
	}
	c.met.setCachedSVIDs(c.nSVIDs)
	c.mu.Unlock()
	c.sweepJWTs(now)
	c.revoked.sweep(now)
	return changed
}

// signJob is an entry due for an X509-SVID.
type signJob struct {
	rec   *entryRec
	entry heldEntry
}

// due returns the entries that need an X509-SVID at now: valid, unexpired,
// not backing off after a failure, and holding no SVID or one past half its
// lifetime.
func (c *cache) due(now time.Time) []signJob {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var jobs []signJob
	for _, r := range c.entries {
		if r.dueAt(now) && !r.signing {
			jobs = append(jobs, signJob{rec: r, entry: r.entry})
		}
	}
	return jobs
}

// claim marks the recs of jobs as being signed and returns the jobs whose
// recs were not already (in place: it reuses jobs' array). The pipeline
// that claimed a job releases it (release) whatever becomes of it.
func (c *cache) claim(jobs []signJob) []signJob {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := jobs[:0]
	for _, j := range jobs {
		if !j.rec.signing {
			j.rec.signing = true
			out = append(out, j)
		}
	}
	return out
}

// release ends the claim on the recs of jobs.
func (c *cache) release(jobs []signJob) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, j := range jobs {
		j.rec.signing = false
	}
}

// storeSVID checks a parsed chain the server signed for job in full
// (x509svid.Verify against the current bundle) and caches it with key; see
// keep. The signing pipeline verifies whole responses with a chainVerifier
// instead.
func (c *cache) storeSVID(job signJob, chain []*x509.Certificate, key crypto.Signer, now time.Time) error {
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return errNotP256
	}
	k, err := holdKey(ec)
	if err != nil {
		return err
	}
	if len(chain) == 0 {
		return errors.New("empty certificate chain")
	}
	id, _, err := x509svid.Verify(chain, c, x509svid.WithTime(now))
	if err != nil {
		return fmt.Errorf("verify x509-svid: %w", err)
	}
	var chainDER []byte
	for _, c := range chain {
		chainDER = append(chainDER, c.Raw...)
	}
	return c.keep(job, id, chain[0], chainDER, k, now)
}

// keep caches a verified X509-SVID (leaf, its SPIFFE ID, the chain's DER)
// for job with key. The SVID must carry the entry's SPIFFE ID and certify
// key. An SVID for an entry that changed identity or went away meanwhile is
// discarded (errStale). The chain, the PKCS#8 key and the serial share one
// allocation (newSVIDRec).
func (c *cache) keep(job signJob, id spiffeid.ID, leaf *x509.Certificate, chainDER []byte, key heldKey, now time.Time) error {
	if id != job.entry.SPIFFEID {
		return fmt.Errorf("x509-svid is for %s, want %s", id, job.entry.SPIFFEID)
	}
	if !key.certifies(leaf) {
		return errors.New("x509-svid certifies another key than the one requested")
	}
	s := newSVIDRec(chainDER, key.der, leaf.SerialNumber, renewTime(leaf.NotBefore, leaf.NotAfter, now), leaf.NotBefore, leaf.NotAfter)
	if serial := s.serial(); c.revoked.x509Revoked(job.entry.SPIFFEID, serial, leaf.NotBefore) {
		return fmt.Errorf("x509-svid serial %s is revoked", serial)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[job.entry.ID] != job.rec {
		return errStale
	}
	c.setSVID(job.rec, s)
	job.rec.signFails, job.rec.nextTry = 0, 0
	c.met.setCachedSVIDs(c.nSVIDs)
	return nil
}

// errStale reports an SVID signed for an entry that changed meanwhile.
var errStale = errors.New("entry changed while its x509-svid was being signed")

// signFailed delays the next attempt for job's entry: base doubled per
// consecutive failure, at most max.
func (c *cache) signFailed(job signJob, now time.Time, base, max time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := job.rec
	r.signFails++
	d := base
	for i := 1; i < r.signFails && d < max; i++ {
		d *= 2
	}
	r.nextTry = nanos(now.Add(min(d, max)))
}

// publicKeyEqual compares two public keys of the standard library's types.
func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// NoSVIDReason implements workload.Explainer: a caller whose entries exist
// but hold no servable SVID is told that they expired (the agent could not
// get them renewed, for instance during a server outage) rather than that
// nothing is registered for it.
func (c *cache) NoSVIDReason(sels []model.Selector) error {
	sels = canonical(sels)
	now := c.now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	matched, expiredSVID := false, false
	for _, s := range sels {
		for _, r := range c.bySel[s] {
			if r.invalid != nil || expired(r.entry, now) || !model.WorkloadMatches(r.entry.Selectors, sels) {
				continue
			}
			matched = true
			if r.svid == nil || nanos(now) >= r.svid.notAfter {
				expiredSVID = true
			}
		}
	}
	if !matched || !expiredSVID {
		return nil
	}
	return errkind.New(errkind.Unavailable,
		"this workload's SVIDs have expired or are not signed yet: the agent cannot get them from the server right now and keeps retrying")
}
