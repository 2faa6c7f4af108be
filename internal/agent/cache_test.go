package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workload"
)

func sels(ss ...string) []model.Selector {
	var out []model.Selector
	for _, s := range ss {
		typ, val, _ := strings.Cut(s, ":")
		out = append(out, model.Selector{Type: typ, Value: val})
	}
	return out
}

func entryIDs(svids []workload.X509SVID) []string {
	var ids []string
	for _, s := range svids {
		ids = append(ids, s.EntryID)
	}
	return ids
}

func mustApply(t *testing.T, c *cache, resp *agentv1.SyncResponse) applied {
	t.Helper()
	res, err := c.applySync(resp)
	if err != nil {
		t.Fatalf("applySync() = %v", err)
	}
	return res
}

func TestCacheMatching(t *testing.T) {
	ca := newTestCA(t, "example.org")
	clock := newFakeClock()
	c := newTestCache(t, ca, clock)
	mustApply(t, c, &agentv1.SyncResponse{Revision: 1, Full: true, Entries: []*commonv1.Entry{
		pe("uid", "/uid", "unix:uid:1000"),
		pe("uid-gid", "/uid-gid", "unix:gid:50", "unix:uid:1000"),
		pe("other", "/other", "unix:uid:2000"),
		pe("k8s", "/k8s", "k8s:ns:default", "unix:uid:1000"),
	}})
	signAll(t, c, ca, clock.Now(), time.Hour)

	for _, tc := range []struct {
		name string
		sels []model.Selector
		want []string
	}{
		{"uid only", sels("unix:uid:1000"), []string{"uid"}},
		{"uid and gid", sels("unix:gid:50", "unix:uid:1000"), []string{"uid", "uid-gid"}},
		{"unsorted with duplicates", sels("unix:uid:1000", "unix:gid:50", "unix:uid:1000"), []string{"uid", "uid-gid"}},
		{"all", sels("k8s:ns:default", "unix:gid:50", "unix:uid:1000", "unix:uid:2000"), []string{"k8s", "other", "uid", "uid-gid"}},
		{"none", sels("unix:uid:3000"), nil},
		{"empty", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := entryIDs(c.X509SVIDs(tc.sels))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("X509SVIDs(%v) entry ids (-want +got):\n%s", tc.sels, diff)
			}
		})
	}
	got := c.X509SVIDs(sels("unix:uid:1000"))
	if len(got) != 1 || got[0].ID.String() != "spiffe://example.org/uid" || len(got[0].KeyDER) == 0 || len(got[0].ChainDER) == 0 {
		t.Errorf("X509SVIDs() = %+v, want the SVID of spiffe://example.org/uid with key and chain", got)
	}
}

// TestCacheContainerizedCaller checks that the cache matches with
// model.WorkloadMatches: an all-unix entry is for host processes, and a
// caller the unix attestor marked containerized gets it only when the entry
// says unix:container:true. X509 and JWT matching agree.
func TestCacheContainerizedCaller(t *testing.T) {
	ca := newTestCA(t, "example.org")
	clock := newFakeClock()
	c := newTestCache(t, ca, clock)
	mustApply(t, c, &agentv1.SyncResponse{Revision: 1, Full: true, Entries: []*commonv1.Entry{
		pe("host", "/host", "unix:uid:1000"),
		pe("container", "/container", "unix:container:true", "unix:uid:1000"),
		pe("k8s", "/k8s", "k8s:ns:shop", "unix:uid:1000"),
	}})
	signAll(t, c, ca, clock.Now(), time.Hour)
	for _, tc := range []struct {
		name string
		sels []model.Selector
		want []string
	}{
		{"host caller", sels("unix:uid:1000"), []string{"host"}},
		{"containerized caller", sels("unix:container:true", "unix:uid:1000"), []string{"container"}},
		{"containerized pod", sels("k8s:ns:shop", "unix:container:true", "unix:uid:1000"), []string{"container", "k8s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, entryIDs(c.X509SVIDs(tc.sels))); diff != "" {
				t.Errorf("X509SVIDs(%v) entry ids (-want +got):\n%s", tc.sels, diff)
			}
			var ids []string
			for _, e := range c.matching(canonical(tc.sels), clock.Now()) {
				ids = append(ids, e.ID)
			}
			if diff := cmp.Diff(tc.want, ids); diff != "" {
				t.Errorf("matching(%v) entry ids (-want +got):\n%s", tc.sels, diff)
			}
		})
	}
}

func TestCacheNoSVIDBeforeSigning(t *testing.T) {
	ca := newTestCA(t, "example.org")
	c := newTestCache(t, ca, newFakeClock())
	mustApply(t, c, &agentv1.SyncResponse{Revision: 1, Full: true, Entries: []*commonv1.Entry{pe("a", "/a", "unix:uid:1")}})
	if got := c.X509SVIDs(sels("unix:uid:1")); len(got) != 0 {
		t.Errorf("X509SVIDs() before signing = %d SVIDs, want 0", len(got))
	}
	if c.Ready() {
		t.Errorf("Ready() before the first sync completed = true")
	}
}

func TestCacheRenewalAtHalfLife(t *testing.T) {
	ca := newTestCA(t, "example.org")
	clock := newFakeClock()
	c := newTestCache(t, ca, clock)
	mustApply(t, c, &agentv1.SyncResponse{Revision: 1, Full: true, Entries: []*commonv1.Entry{pe("a", "/a", "unix:uid:1")}})
	if n := len(c.due(clock.Now())); n != 1 {
		t.Fatalf("due() for a new entry = %d jobs, want 1", n)
	}
	start := clock.Now()
	signAll(t, c, ca, start, time.Hour)
	for _, tc := range []struct {
		at   time.Duration
		want int
	}{
		{0, 0},
		{29 * time.Minute, 0},
		{30*time.Minute - time.Second, 0},
		{30 * time.Minute, 1},
		{59 * time.Minute, 1},
	} {
		if got := len(c.due(start.Add(tc.at))); got != tc.want {
			t.Errorf("due(start+%s) = %d jobs, want %d", tc.at, got, tc.want)
		}
	}
	// Renewing replaces the SVID and moves the renewal time.
	clock.Add(31 * time.Minute)
	if n := signAll(t, c, ca, clock.Now(), time.Hour); n != 1 {
		t.Fatalf("signAll() at half-life renewed %d SVIDs, want 1", n)
	}
	if n := len(c.due(clock.Now().Add(29 * time.Minute))); n != 0 {
		t.Errorf("due() right after renewal = %d jobs, want 0", n)
	}
}

func TestCacheSignFailureBackoff(t *testing.T) {
	ca := newTestCA(t, "example.org")
	clock := newFakeClock()
	c := newTestCache(t, ca, clock)
	mustApply(t, c, &agentv1.SyncResponse{Revision: 1, Full: true, Entries: []*commonv1.Entry{pe("a", "/a", "unix:uid:1")}})
	for i, want := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second} {
		jobs := c.due(clock.Now())
		if len(jobs) != 1 {
			t.Fatalf("failure %d: due() = %d jobs, want 1", i, len(jobs))
		}
		c.signFailed(jobs[0], clock.Now(), 5*time.Second, time.Minute)
		if n := len(c.due(clock.Now().Add(want - time.Second))); n != 0 {
			t.Errorf("failure %d: due() before %s backoff = %d jobs, want 0", i, want, n)
		}
		clock.Add(want)
	}
}

func TestCacheExpiry(t *testing.T) {
	ca := newTestCA(t, "example.org")
	clock := newFakeClock()
	c := newTestCache(t, ca, clock)
	exp := pe("expiring", "/exp", "unix:uid:1")
	exp.ExpiresAt = clock.Now().Add(10 * time.Minute).Unix()
	mustApply(t, c, &agentv1.SyncResponse{Revision: 1, Full: true, Entries: []*commonv1.Entry{exp, pe("short", "/short", "unix:uid:1")}})
	signAll(t, c, ca, clock.Now(), time.Hour)
	if got := entryIDs(c.X509SVIDs(sels("unix:uid:1"))); len(got) != 2 {
		t.Fatalf("X509SVIDs() = %v, want both entries", got)
	}
	ch := c.Changed()
	clock.Add(10 * time.Minute)
	// Lookups stop serving the expired entry at once, before any sweep.
	if got := entryIDs(c.X509SVIDs(sels("unix:uid:1"))); !slices.Equal(got, []string{"short"}) {
		t.Errorf("X509SVIDs() after entry expiry = %v, want [short]", got)
	}
	if n := len(c.due(clock.Now())); n != 0 {
		t.Errorf("due() after entry expiry = %d jobs, want 0 (expired entries are not signed)", n)
	}
	if !c.sweep(clock.Now()) {
		t.Errorf("sweep() after entry expiry = false, want true")
	}
	c.broadcast()
	select {
	case <-ch:
	default:
		t.Errorf("Changed() not closed after expiry sweep")
	}
	// An SVID past NotAfter is dropped too (the server was away).
	clock.Add(50 * time.Minute)
	if got := c.X509SVIDs(sels("unix:uid:1")); len(got) != 0 {
		t.Errorf("X509SVIDs() after SVID expiry = %d SVIDs, want 0", len(got))
	}
	if !c.sweep(clock.Now()) || c.nSVIDs != 0 {
		t.Errorf("sweep() after SVID expiry left %d SVIDs, want 0", c.nSVIDs)
	}
	// The caller is told its SVIDs expired, not that nothing matches it;
	// a caller nothing matches still gets no reason.
	if err := c.NoSVIDReason(sels("unix:uid:1")); errkind.Of(err) != errkind.Unavailable || !strings.Contains(err.Error(), "expired") {
		t.Errorf("NoSVIDReason(expired) = %v, want Unavailable saying the SVIDs expired", err)
	}
	if err := c.NoSVIDReason(sels("unix:uid:2")); err != nil {
		t.Errorf("NoSVIDReason(no entry) = %v, want nil", err)
	}
}

func TestCacheDeletion(t *testing.T) {
	ca := newTestCA(t, "example.org")
	clock := newFakeClock()
	c := newTestCache(t, ca, clock)
	mustApply(t, c, &agentv1.SyncResponse{Revision: 1, Full: true, Entries: []*commonv1.Entry{
		pe("a", "/a", "unix:uid:1"), pe("b", "/b", "unix:uid:1"), pe("c", "/c", "unix:uid:1"),
	}})
	signAll(t, c, ca, clock.Now(), time.Hour)

	// Partial sync: b changes, c is deleted (absent from entry_ids).
	b := pe("b", "/b", "unix:uid:1")
	b.Hint = "new hint"
	res := mustApply(t, c, &agentv1.SyncResponse{Revision: 2, Entries: []*commonv1.Entry{b}, EntryIds: []string{"a", "b"}, EntryIdsSet: true})
	if !res.entries {
		t.Errorf("applySync() reported no entry change")
	}
	got := c.X509SVIDs(sels("unix:uid:1"))
	if diff := cmp.Diff([]string{"a", "b"}, entryIDs(got)); diff != "" {
		t.Errorf("X509SVIDs() after deletion (-want +got):\n%s", diff)
	}
	if got[1].Hint != "new hint" {
		t.Errorf("hint after update = %q, want %q (and the SVID kept)", got[1].Hint, "new hint")
	}
	if c.nSVIDs != 2 {
		t.Errorf("nSVIDs = %d, want 2", c.nSVIDs)
	}

	// Full sync replaces everything.
	mustApply(t, c, &agentv1.SyncResponse{Revision: 3, Full: true, Entries: []*commonv1.Entry{pe("a", "/a", "unix:uid:1")}})
	if diff := cmp.Diff([]string{"a"}, entryIDs(c.X509SVIDs(sels("unix:uid:1")))); diff != "" {
		t.Errorf("X509SVIDs() after full sync (-want +got):\n%s", diff)
	}
	if c.nSVIDs != 1 {
		t.Errorf("nSVIDs = %d, want 1", c.nSVIDs)
	}
}

func TestCacheIdentityChangeDropsSVID(t *testing.T) {
	ca := newTestCA(t, "example.org")
	clock := newFakeClock()
	c := newTestCache(t, ca, clock)
	mustApply(t, c, &agentv1.SyncResponse{Revision: 1, Full: true, Entries: []*commonv1.Entry{pe("a", "/a", "unix:uid:1")}})
	jobs := c.due(clock.Now())
	signAll(t, c, ca, clock.Now(), time.Hour)

	mustApply(t, c, &agentv1.SyncResponse{Revision: 2, Entries: []*commonv1.Entry{pe("a", "/renamed", "unix:uid:1")}})
	if got := c.X509SVIDs(sels("unix:uid:1")); len(got) != 0 {
		t.Errorf("X509SVIDs() after SPIFFE ID change = %v, want none until re-signed", got)
	}
	// An SVID signed for the old identity is discarded.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := ca.sign(t, jobs[0].entry.SPIFFEID, key.Public(), clock.Now(), clock.Now().Add(time.Hour))
	if err := c.storeSVID(jobs[0], []*x509.Certificate{leaf}, key, clock.Now()); !errors.Is(err, errStale) {
		t.Errorf("storeSVID(old identity) = %v, want errStale", err)
	}
	signAll(t, c, ca, clock.Now(), time.Hour)
	if got := c.X509SVIDs(sels("unix:uid:1")); len(got) != 1 || got[0].ID.Path() != "/renamed" {
		t.Errorf("X509SVIDs() after re-signing = %v, want /renamed", got)
	}
}

func TestCacheStoreSVIDChecks(t *testing.T) {
	ca := newTestCA(t, "example.org")
	other := newTestCA(t, "example.org")
	clock := newFakeClock()
	c := newTestCache(t, ca, clock)
	mustApply(t, c, &agentv1.SyncResponse{Revision: 1, Full: true, Entries: []*commonv1.Entry{pe("a", "/a", "unix:uid:1")}})
	job := c.due(clock.Now())[0]
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := clock.Now()
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
	}{
		{"empty", nil},
		{"untrusted CA", []*x509.Certificate{other.sign(t, job.entry.SPIFFEID, key.Public(), now, now.Add(time.Hour))}},
		{"wrong id", []*x509.Certificate{ca.sign(t, job.entry.SPIFFEID.TrustDomain().ID(), key.Public(), now, now.Add(time.Hour))}},
		{"wrong key", []*x509.Certificate{ca.sign(t, job.entry.SPIFFEID, otherKey.Public(), now, now.Add(time.Hour))}},
		{"expired", []*x509.Certificate{ca.sign(t, job.entry.SPIFFEID, key.Public(), now.Add(-2*time.Hour), now.Add(-time.Hour))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.storeSVID(job, tc.chain, key, now); err == nil {
				t.Errorf("storeSVID(%s) = nil, want an error", tc.name)
			}
		})
	}
	if c.nSVIDs != 0 {
		t.Errorf("nSVIDs = %d after refused SVIDs, want 0", c.nSVIDs)
	}
}

func TestCacheChangedBroadcast(t *testing.T) {
	ca := newTestCA(t, "example.org")
	c := newTestCache(t, ca, newFakeClock())
	ch1 := c.Changed()
	ch2 := c.Changed()
	if ch1 != ch2 {
		t.Fatalf("Changed() returned different channels without a change")
	}
	select {
	case <-ch1:
		t.Fatalf("Changed() closed before any change")
	default:
	}
	c.broadcast()
	for i, ch := range []<-chan struct{}{ch1, ch2} {
		select {
		case <-ch:
		default:
			t.Errorf("waiter %d not woken by broadcast", i)
		}
	}
	select {
	case <-c.Changed():
		t.Errorf("Changed() after the broadcast is already closed")
	default:
	}
}

func TestEntrySetDigest(t *testing.T) {
	want := sha256.Sum256([]byte("a\nb\nc\n"))
	if got := apiconv.EntrySetDigest([]string{"c", "a", "b"}); string(got) != string(want[:]) {
		t.Errorf("apiconv.EntrySetDigest(c,a,b) = %x, want %x", got, want)
	}
	empty := sha256.Sum256(nil)
	if got := apiconv.EntrySetDigest(nil); string(got) != string(empty[:]) {
		t.Errorf("apiconv.EntrySetDigest(nil) = %x, want %x", got, empty)
	}
}

func TestCacheSyncRequest(t *testing.T) {
	ca := newTestCA(t, "example.org")
	c := newTestCache(t, ca, newFakeClock())
	req := c.syncRequest()
	empty := sha256.Sum256(nil)
	if req.GetKnownRevision() != 0 || string(req.GetEntrySetDigest()) != string(empty[:]) || req.GetKnownBundleSequence() != 1 {
		t.Errorf("first syncRequest() = %v, want revision 0, empty-set digest, bundle sequence 1", req)
	}
	mustApply(t, c, &agentv1.SyncResponse{Revision: 7, Full: true, Bundle: ca.bundleProto(t, 9),
		Entries: []*commonv1.Entry{pe("b", "/b", "unix:uid:1"), pe("a", "/a", "unix:uid:1")}})
	req = c.syncRequest()
	want := sha256.Sum256([]byte("a\nb\n"))
	if req.GetKnownRevision() != 7 || string(req.GetEntrySetDigest()) != string(want[:]) || req.GetKnownBundleSequence() != 9 {
		t.Errorf("syncRequest() = %v, want revision 7, digest of a,b, bundle sequence 9", req)
	}
	// The server lists an entry the agent never got: ask for a full sync.
	mustApply(t, c, &agentv1.SyncResponse{Revision: 8, EntryIds: []string{"a", "b", "z"}, EntryIdsSet: true})
	if got := c.syncRequest().GetKnownRevision(); got != 0 {
		t.Errorf("syncRequest() after unknown id in entry_ids: known_revision = %d, want 0 (full sync)", got)
	}
}

func TestCacheRefusesBadInput(t *testing.T) {
	ca := newTestCA(t, "example.org")
	foreign := newTestCA(t, "evil.org")
	c := newTestCache(t, ca, newFakeClock())
	for _, tc := range []struct {
		name string
		resp *agentv1.SyncResponse
	}{
		{"nil", nil},
		{"foreign bundle", &agentv1.SyncResponse{Bundle: foreign.bundleProto(t, 2)}},
		{"empty bundle", &agentv1.SyncResponse{Bundle: &commonv1.Bundle{TrustDomain: "example.org", Sequence: 3}}},
		{"garbage bundle", &agentv1.SyncResponse{Bundle: &commonv1.Bundle{TrustDomain: "example.org", X509Authorities: [][]byte{{1, 2}}}}},
		{"entry without id", &agentv1.SyncResponse{Entries: []*commonv1.Entry{pe("", "/a", "unix:uid:1")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.applySync(tc.resp); err == nil {
				t.Errorf("applySync(%s) = nil, want an error", tc.name)
			}
		})
	}
	// Invalid entries are held (for the digest) but never served or signed.
	foreignEntry := pe("foreign", "/x", "unix:uid:1")
	foreignEntry.SpiffeId = "spiffe://evil.org/x"
	res := mustApply(t, c, &agentv1.SyncResponse{Revision: 1, Full: true, Entries: []*commonv1.Entry{
		foreignEntry,
		pe("nosel", "/nosel"),
		{Id: "badid", SpiffeId: "not a spiffe id", ParentId: "spiffe://example.org/agent"},
		pe("ok", "/ok", "unix:uid:1"),
	}})
	if res.refused != 3 {
		t.Errorf("applySync() refused %d entries, want 3", res.refused)
	}
	if n := len(c.due(c.now())); n != 1 {
		t.Errorf("due() = %d jobs, want 1 (only the valid entry)", n)
	}
	want := sha256.Sum256([]byte("badid\nforeign\nnosel\nok\n"))
	if got := c.syncRequest().GetEntrySetDigest(); string(got) != string(want[:]) {
		t.Errorf("digest does not cover the refused entries")
	}
}
