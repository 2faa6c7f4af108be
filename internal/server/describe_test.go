package server

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/exchange"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/tokenapi"
)

func sels(t *testing.T, ss ...string) []model.Selector {
	t.Helper()
	out := make([]model.Selector, 0, len(ss))
	for _, s := range ss {
		sel, err := model.ParseSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sel)
	}
	return out
}

// TestDescribeJudgesTheSVIDsOwnEntryAndNode registers one SPIFFE ID on a
// prod node and on a dev node: a caller is described by the entry and
// node its SVID was signed for, and a caller whose SVID has no binding
// only by what both have in common.
func TestDescribeJudgesTheSVIDsOwnEntryAndNode(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(ctx, store.Config{DSN: filepath.Join(t.TempDir(), "signet.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	web := spiffeid.RequireFromString("spiffe://example.org/web")
	prod, dev := spiffeid.RequireFromString("spiffe://example.org/node/prod"), spiffeid.RequireFromString("spiffe://example.org/node/dev")
	for _, n := range []model.Node{
		{SPIFFEID: prod, AttestationType: "x509pop", Selectors: sels(t, "x509pop:subject:cn:prod", "x509pop:ca:fingerprint:aa"),
			Labels: map[string]string{"env": "prod", "team": "pay"}},
		{SPIFFEID: dev, AttestationType: "x509pop", Selectors: sels(t, "x509pop:subject:cn:dev", "x509pop:ca:fingerprint:aa"),
			Labels: map[string]string{"env": "dev", "team": "pay"}},
	} {
		n.CertNotAfter = time.Now().Add(time.Hour)
		if _, err := st.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	res, err := st.CreateEntries(ctx, []model.Entry{
		{ID: "prod-web", SPIFFEID: web, ParentID: prod, Selectors: sels(t, "unix:uid:1000", "unix:gid:50")},
		{ID: "dev-web", SPIFFEID: web, ParentID: dev, Selectors: sels(t, "unix:uid:2000", "unix:gid:50")},
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	exp := time.Now().Add(time.Hour)
	prodSVID, devSVID, ciSVID := model.SVIDDigest([]byte("prod")), model.SVIDDigest([]byte("dev")), model.SVIDDigest([]byte("ci"))
	if err := st.RecordIssuance(ctx, store.Issuance{At: time.Now(), Bindings: []store.SVIDBinding{
		{Digest: prodSVID, EntryID: "prod-web", NodeID: prod.String(), ExpiresAt: exp},
		{Digest: devSVID, EntryID: "dev-web", NodeID: dev.String(), ExpiresAt: exp},
		{Digest: ciSVID, EntryID: "prod-web", ExpiresAt: exp},
	}}); err != nil {
		t.Fatal(err)
	}
	d := storeDescriber{st}
	describe := func(digest string) exchange.Description {
		t.Helper()
		desc, err := d.Describe(ctx, &tokenapi.Subject{Kind: tokenapi.SubjectSPIFFE, ID: web, SVIDDigest: digest})
		if err != nil {
			t.Fatal(err)
		}
		return desc
	}

	for name, tc := range map[string]struct {
		digest    string
		facts     string
		entry     string
		node      spiffeid.ID
		selectors []string
		nodeSels  []string
		labels    map[string]string
		method    string
	}{
		"prod svid": {prodSVID, exchange.FactsSVID, "prod-web", prod, []string{"unix:uid:1000", "unix:gid:50"},
			[]string{"x509pop:subject:cn:prod", "x509pop:ca:fingerprint:aa"}, map[string]string{"env": "prod", "team": "pay"}, "x509pop"},
		"dev svid": {devSVID, exchange.FactsSVID, "dev-web", dev, []string{"unix:uid:2000", "unix:gid:50"},
			[]string{"x509pop:subject:cn:dev", "x509pop:ca:fingerprint:aa"}, map[string]string{"env": "dev", "team": "pay"}, "x509pop"},
		"svid issued without a node": {ciSVID, exchange.FactsSVID, "prod-web", spiffeid.ID{}, []string{"unix:uid:1000", "unix:gid:50"}, nil, nil, ""},
		"svid without a binding": {model.SVIDDigest([]byte("unrecorded")), exchange.FactsCommon, "", spiffeid.ID{}, []string{"unix:gid:50"},
			[]string{"x509pop:ca:fingerprint:aa"}, map[string]string{"team": "pay"}, "x509pop"},
		"no svid digest": {"", exchange.FactsCommon, "", spiffeid.ID{}, []string{"unix:gid:50"},
			[]string{"x509pop:ca:fingerprint:aa"}, map[string]string{"team": "pay"}, "x509pop"},
	} {
		t.Run(name, func(t *testing.T) {
			got := describe(tc.digest)
			if got.Facts != tc.facts || got.Entry != tc.entry || got.Node.ID != tc.node || got.Node.AttestationMethod != tc.method {
				t.Errorf("Describe = facts %q entry %q node %q method %q; want %q %q %q %q",
					got.Facts, got.Entry, got.Node.ID, got.Node.AttestationMethod, tc.facts, tc.entry, tc.node, tc.method)
			}
			if s := selStrings(got.Selectors); !slices.Equal(s, sorted(tc.selectors)) {
				t.Errorf("subject selectors = %v, want %v", s, sorted(tc.selectors))
			}
			if s := selStrings(got.Node.Selectors); !slices.Equal(s, sorted(tc.nodeSels)) {
				t.Errorf("node selectors = %v, want %v", s, sorted(tc.nodeSels))
			}
			if len(got.Node.Labels) != len(tc.labels) {
				t.Errorf("node labels = %v, want %v", got.Node.Labels, tc.labels)
			}
			for k, v := range tc.labels {
				if got.Node.Labels[k] != v {
					t.Errorf("node labels = %v, want %v", got.Node.Labels, tc.labels)
				}
			}
		})
	}

	t.Run("entry deleted since signing", func(t *testing.T) {
		if errs, err := st.DeleteEntries(ctx, []string{"dev-web"}); err != nil || errs[0] != nil {
			t.Fatal(err, errs)
		}
		got := describe(devSVID)
		if got.Facts != exchange.FactsNone || len(got.Selectors) != 0 || !got.Node.ID.IsZero() {
			t.Errorf("Describe(svid of a deleted entry) = %+v, want no facts", got)
		}
		// With one entry left, an unbound SVID is judged by it and its node.
		got = describe("")
		if got.Facts != exchange.FactsCommon || got.Entry != "prod-web" || got.Node.ID != prod {
			t.Errorf("Describe(unbound, one candidate) = %+v, want prod-web on %s", got, prod)
		}
	})
}

func selStrings(ss []model.Selector) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.String())
	}
	slices.Sort(out)
	return out
}

func sorted(ss []string) []string {
	out := slices.Clone(ss)
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return out
}
