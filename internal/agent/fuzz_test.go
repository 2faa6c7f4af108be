package agent

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
)

// The agent parses three kinds of untrusted input: its own state files
// (which anyone who can write the data dir controls) and the server's Sync
// responses. None may panic, and what they yield must be self-consistent.

func FuzzParseAgentSVID(f *testing.F) {
	ca := newTestCA(f, "example.org")
	svid := newAgentSVID(f, ca, time.Now(), time.Hour)
	cert, key, err := svid.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cert, key)
	f.Add(cert, cert)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), key)
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		s, err := parseAgentSVID(spiffeid.TrustDomain{}, certPEM, keyPEM)
		if err != nil {
			return
		}
		if len(s.Certificates) == 0 || s.PrivateKey == nil || !publicKeyEqual(s.Certificates[0].PublicKey, s.PrivateKey.Public()) {
			t.Fatalf("parseAgentSVID() accepted an SVID without a matching key and certificate")
		}
	})
}

func FuzzParseBundle(f *testing.F) {
	ca := newTestCA(f, "example.org")
	data, err := ca.bundle(7).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"keys":[],"spiffe_sequence":1}`))
	f.Add([]byte(`{"keys":[{"use":"x509-svid","kty":"EC","crv":"P-256","x":"","y":"","x5c":[""]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseBundle(ca.td, data)
		if err != nil {
			return
		}
		if len(b.X509Authorities()) == 0 || b.TrustDomain() != ca.td {
			t.Fatalf("parseBundle() accepted a bundle without authorities of %s", ca.td)
		}
		if _, err := b.Marshal(); err != nil {
			t.Fatalf("parsed bundle does not marshal: %v", err)
		}
	})
}

func FuzzApplySync(f *testing.F) {
	ca := newTestCA(f, "example.org")
	seeds := []*agentv1.SyncResponse{
		{Revision: 1, Full: true, Bundle: ca.bundleProto(f, 2), Entries: []*commonv1.Entry{pe("a", "/a", "unix:uid:1"), pe("b", "/b", "unix:gid:1", "unix:uid:1")}},
		{Revision: 2, Entries: []*commonv1.Entry{pe("c", "/c", "k8s:ns:x")}, EntryIds: []string{"a", "c", "z"}, EntryIdsSet: true},
		{Revision: 3, Full: true},
		{Revision: -1, Entries: []*commonv1.Entry{pe("a", "/a"), {Id: "x", SpiffeId: "spiffe://evil.org/x"}}},
	}
	for _, s := range seeds {
		data, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	clock := newFakeClock()
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp agentv1.SyncResponse
		if err := proto.Unmarshal(data, &resp); err != nil {
			return
		}
		c := newCache(ca.td, ca.bundle(1), clock.Now, slog.New(slog.DiscardHandler), testMetrics(t))
		// Start from a synced, signed state so updates and deletions of
		// entries holding SVIDs are exercised too.
		if _, err := c.applySync(seeds[0]); err != nil {
			t.Fatal(err)
		}
		signAll(t, c, ca, clock.Now(), time.Hour)
		if _, err := c.applySync(&resp); err != nil {
			return
		}
		c.syncRequest()
		c.X509SVIDs(sels("k8s:ns:x", "unix:gid:1", "unix:uid:1"))
		c.due(clock.Now())
		c.sweep(clock.Now())
		checkCacheInvariants(t, c)
	})
}

// checkCacheInvariants checks that the index and SVID count agree with the
// entries held.
func checkCacheInvariants(t *testing.T, c *cache) {
	t.Helper()
	c.mu.RLock()
	defer c.mu.RUnlock()
	n, indexed := 0, 0
	for id, r := range c.entries {
		if r.entry.ID != id {
			t.Fatalf("entry held under %q has id %q", id, r.entry.ID)
		}
		if r.svid != nil {
			n++
			if r.invalid != nil {
				t.Fatalf("invalid entry %q holds an SVID", id)
			}
		}
		if r.invalid == nil {
			indexed++
		}
	}
	if n != c.nSVIDs {
		t.Fatalf("nSVIDs = %d, entries hold %d", c.nSVIDs, n)
	}
	total := 0
	for key, rs := range c.bySel {
		for _, r := range rs {
			total++
			if c.entries[r.entry.ID] != r || !slices.Contains(r.entry.Selectors, key) {
				t.Fatalf("index holds a stale or misfiled entry %q", r.entry.ID)
			}
		}
	}
	if total != indexed {
		t.Fatalf("index holds %d entries, want %d", total, indexed)
	}
}

// FuzzParseRevocation feeds arbitrary revocation messages (untrusted
// input from the server) to parseRevocation: it must never panic, and what
// it accepts must be canonical serials or a valid SPIFFE ID.
func FuzzParseRevocation(f *testing.F) {
	f.Add("3fa2", "spiffe://example.org/web", int64(1700000000), int64(1700003600), "a1", int64(0))
	f.Add("", "spiffe://example.org/web", int64(1700000000), int64(1700003600), "", int64(1699999990))
	f.Add("0A", "web", int64(0), int64(-1), "zz", int64(-5))
	f.Fuzz(func(t *testing.T, serial, id string, revokedAt, expiresAt int64, more string, until int64) {
		in := &agentv1.SVIDRevocation{Serial: serial, SpiffeId: id, RevokedAt: revokedAt, ExpiresAt: expiresAt,
			Serials: []string{more}, X509NotBeforeUntil: until}
		out, err := parseRevocation(nil, in)
		if err != nil {
			return
		}
		for _, p := range out {
			if p.serial != "" && !canonicalSerial(p.serial) {
				t.Fatalf("accepted serial %q", p.serial)
			}
			if p.serial == "" && p.id.IsZero() {
				t.Fatalf("accepted an ID revocation without an ID: %+v", in)
			}
		}
	})
}
