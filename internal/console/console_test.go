package console_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/console"
	"github.com/signet-id/signet/internal/devenv"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/testenv"
)

// htmxSHA256 is the pinned htmx.org 2.0.11 dist/htmx.min.js (VENDORED.md).
const htmxSHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp, string(body)
}

// pagePaths are every page and variant the console serves.
var pagePaths = []string{"/", "/agents", "/entries", "/entries?selector=unix:uid:1042", "/inventory", "/inventory?kind=node",
	"/inventory?kind=credential", "/inventory?kind=finding", "/findings", "/findings?status=all", "/leases", "/audit", "/audit/verification"}

func TestPagesCarryCSPAndNoSecret(t *testing.T) {
	env := testenv.New(t, withConsole)
	s := seed(t, env)
	base := consoleURL(t, env, "http")
	for _, p := range pagePaths {
		for _, twin := range []string{"", "format=json"} {
			u := base + p
			if twin != "" {
				u += map[bool]string{true: "&", false: "?"}[strings.Contains(p, "?")] + twin
			}
			resp, body := get(t, http.DefaultClient, u)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d %s, want 200", u, resp.StatusCode, body)
			}
			if got := resp.Header.Get("Content-Security-Policy"); got != console.CSP {
				t.Errorf("GET %s: Content-Security-Policy = %q, want %q", u, got, console.CSP)
			}
			for _, secret := range s.secrets {
				if strings.Contains(body, secret) {
					t.Errorf("GET %s shows the planted secret %q", u, secret)
				}
			}
			if twin == "" {
				for _, inline := range []string{"<style", " style=", "<script>", "javascript:", " onclick=", " onload="} {
					if strings.Contains(body, inline) {
						t.Errorf("GET %s has inline %q (CSP forbids it)", u, inline)
					}
				}
			} else if ct := resp.Header.Get("Content-Type"); ct != "application/json" || !json.Valid([]byte(body)) {
				t.Errorf("GET %s: Content-Type %q, valid JSON %v; want application/json", u, ct, json.Valid([]byte(body)))
			}
		}
	}
}

func TestJSONTwins(t *testing.T) {
	env := testenv.New(t, withConsole)
	seed(t, env)
	base := consoleURL(t, env, "http")
	decode := func(path string, v any) {
		t.Helper()
		resp, body := get(t, http.DefaultClient, base+path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, resp.StatusCode, body)
		}
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	var ov console.Overview
	decode("/?format=json", &ov)
	if ov.TrustDomain != "example.org" || ov.Agents != 2 || len(ov.Replicas) != 1 || len(ov.Authorities) < 2 || ov.OpenFindings != seededOpenFindings {
		t.Errorf("overview = %+v; want example.org, 2 agents, 1 replica, X.509 and JWT authorities, %d open findings", ov, seededOpenFindings)
	}
	var ag console.Agents
	decode("/agents?format=json", &ag)
	if len(ag.Agents) != 2 || ag.Agents[0].SPIFFEID != nodeA || ag.Agents[0].Method != "join_token" || ag.Agents[0].SVIDExpiry.IsZero() {
		t.Errorf("agents = %+v; want node a and b, join_token, with SVID expiry", ag.Agents)
	}

	var ag1, ag2 console.Agents
	decode("/agents?format=json&limit=1", &ag1)
	decode("/agents?format=json&limit=1&after="+url.QueryEscape(ag1.Next), &ag2)
	if ag1.Total != 2 || len(ag1.Agents) != 1 || ag1.Next != nodeA || len(ag2.Agents) != 1 || ag2.Agents[0].SPIFFEID != nodeB || ag2.Next != "" {
		t.Errorf("agents paged by 1 = %+v then %+v; want node a (cursor a), then node b (last page)", ag1, ag2)
	}
	var fs1, fs2 console.Findings
	decode("/findings?format=json&limit=1", &fs1)
	decode("/findings?format=json&limit=1&after="+fs1.Next, &fs2)
	if fs1.Total != 2 || len(fs1.Findings) != 1 || len(fs2.Findings) != 1 || fs2.Next != "" || fs1.Findings[0].Fingerprint == fs2.Findings[0].Fingerprint {
		t.Errorf("findings paged by 1 = %+v then %+v; want the two findings, one a page", fs1, fs2)
	}

	var page1, page3, bySel, byParent console.Entries
	decode("/entries?format=json", &page1)
	if len(page1.Entries) != console.DefaultPageSize || page1.Next == "" {
		t.Fatalf("entries page 1: %d entries, next %q; want %d and a cursor", len(page1.Entries), page1.Next, console.DefaultPageSize)
	}
	var page2 console.Entries
	decode("/entries?format=json&after="+url.QueryEscape(page1.Next), &page2)
	decode("/entries?format=json&after="+url.QueryEscape(page2.Next), &page3)
	if total := len(page1.Entries) + len(page2.Entries) + len(page3.Entries); total != seededEntries || page3.Next != "" {
		t.Errorf("three pages hold %d entries, last cursor %q; want %d and none", total, page3.Next, seededEntries)
	}
	decode("/entries?format=json&selector=unix:uid:1042", &bySel)
	if len(bySel.Entries) != 1 || bySel.Entries[0].SPIFFEID != "spiffe://example.org/app/svc-042" {
		t.Errorf("entries by selector unix:uid:1042 = %+v; want svc-042 only", bySel.Entries)
	}
	decode("/entries?format=json&limit=500&parent_id="+url.QueryEscape(nodeB), &byParent)
	if len(byParent.Entries) != seededEntries/2 {
		t.Errorf("entries by parent %s: %d; want %d", nodeB, len(byParent.Entries), seededEntries/2)
	}

	var inv console.Inventory
	decode("/inventory?format=json", &inv)
	if len(inv.Trend) != seededReports || inv.Coverage == nil || *inv.Trend[2].CoveredPercent != 70 || len(inv.Items) != console.DefaultPageSize || inv.Next == "" {
		t.Errorf("inventory: %d trend points, %d items, next %q; want %d points ending at 70 %%, a page of %d workloads",
			len(inv.Trend), len(inv.Items), inv.Next, seededReports, console.DefaultPageSize)
	}
	var fs console.Findings
	decode("/findings?format=json", &fs)
	previews := map[string]string{}
	for _, f := range fs.Findings {
		previews[f.Fingerprint] = f.Preview
	}
	if len(fs.Findings) != 2 || previews["00112233445566aa"] != "ghp_…(40)" || previews["ffeeddccbbaa9988"] != "(hidden)" {
		t.Errorf("findings previews = %v; want scan's ghp_…(40), and (hidden) for a stored preview longer than scan prints", previews)
	}
	var ls console.Leases
	decode("/leases?format=json", &ls)
	if len(ls.Leases) != 3 {
		t.Errorf("leases = %+v; want 3", ls.Leases)
	}
	var au console.Audit
	decode("/audit?format=json&limit=5", &au)
	if au.Verification == nil || !au.Verification.OK || au.Verification.Records == 0 || len(au.Records) != 5 || au.Next != au.Records[4].Seq {
		t.Errorf("audit = %+v; want a verified chain and a page of 5 with a cursor", au)
	}
}

func TestBadQueriesNameTheField(t *testing.T) {
	env := testenv.New(t, withConsole)
	base := consoleURL(t, env, "http")
	for _, tc := range []struct{ path, want string }{
		{"/entries?spiffe_id=web", "spiffe_id"},
		{"/entries?parent_id=http://x", "parent_id"},
		{"/entries?selector=nocolon", "selector"},
		{"/entries?limit=0", "limit"},
		{"/entries?limit=100000", "limit"},
		{"/entries?after=" + strings.Repeat("x", 300), "after"},
		{"/audit?after=-1", "after"},
		{"/audit?after=abc", "after"},
		{"/inventory?kind=robot", "kind"},
		{"/inventory?by=colour", "by"},
		{"/agents?format=xml", "format"},
		{"/agents?limit=x", "limit"},
		{"/findings?status=closed", "status"},
	} {
		resp, body := get(t, http.DefaultClient, base+tc.path)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d %q; want 400 naming %s", tc.path, resp.StatusCode, body, tc.want)
		}
	}
	resp, err := http.Post(base+"/entries", "application/x-www-form-urlencoded", strings.NewReader("spiffe_id=x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /entries = %d; want 405 (read-only)", resp.StatusCode)
	}
	resp, body := get(t, http.DefaultClient, base+"/static/htmx-2.0.11.min.js")
	if sum := sha256.Sum256([]byte(body)); resp.StatusCode != 200 || hex.EncodeToString(sum[:]) != htmxSHA256 {
		t.Errorf("GET htmx = %d, sha256 %x; want the pinned %s", resp.StatusCode, sum, htmxSHA256)
	}
	vendored, err := os.ReadFile(filepath.Join("static", "VENDORED.md"))
	if err != nil || !strings.Contains(string(vendored), htmxSHA256) {
		t.Errorf("static/VENDORED.md does not record htmx's sha256 %s (%v)", htmxSHA256, err)
	}
}

// openStore opens a fresh SQLite store for handler-level tests.
func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{DSN: filepath.Join(t.TempDir(), "signet.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestNonLoopbackClientRefused(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	local, err := console.New(console.Config{Store: openStore(t), TrustDomain: td, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		remote string
		want   int
	}{
		{"127.0.0.1:40000", http.StatusOK},
		{"[::1]:40000", http.StatusOK},
		{"192.0.2.7:40000", http.StatusForbidden},
		{"[2001:db8::1]:40000", http.StatusForbidden},
		{"10.0.0.1:40000", http.StatusForbidden},
		{"garbage", http.StatusForbidden},
	} {
		r := httptest.NewRequest("GET", "/agents", nil)
		r.RemoteAddr = tc.remote
		w := httptest.NewRecorder()
		local.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("GET /agents from %s = %d; want %d", tc.remote, w.Code, tc.want)
		}
	}
	// In mTLS mode a loopback address is no pass: a client certificate is.
	mtls, err := console.New(console.Config{Store: openStore(t), TrustDomain: td, Log: slog.New(slog.DiscardHandler),
		IsAdmin: func(spiffeid.ID, time.Time) bool { return true }, Bundle: nopBundle{}})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "127.0.0.1:40000"
	w := httptest.NewRecorder()
	mtls.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Errorf("mTLS console, loopback client without certificate = %d; want 403", w.Code)
	}
}

func TestConfigRefusesAnonymousRemoteConsole(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:8090", "[::]:0", "example.com:8090"} {
		cfg := devenv.ServerConfig(spiffeid.RequireTrustDomainFromString("example.org"), filepath.Join(t.TempDir(), "server"), slog.New(slog.DiscardHandler))
		cfg.UIAddress = addr
		_, err := server.New(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), "ui_address") || !strings.Contains(err.Error(), "ui_mtls") {
			t.Errorf("server.New(ui_address %q, no ui_mtls) = %v; want a refusal naming ui_address and ui_mtls", addr, err)
		}
	}
	cfg := devenv.ServerConfig(spiffeid.RequireTrustDomainFromString("example.org"), filepath.Join(t.TempDir(), "server"), slog.New(slog.DiscardHandler))
	cfg.UIMTLS = true
	if _, err := server.New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "ui_mtls needs ui_address") {
		t.Errorf("server.New(ui_mtls without ui_address) = %v; want a refusal", err)
	}
}

func TestConsoleOverMTLSNeedsAdminSVID(t *testing.T) {
	env := testenv.New(t, func(c *server.Config) { c.UIAddress, c.UIMTLS = "127.0.0.1:0", true })
	a := env.Attest(nodeA)
	admin := env.CreateEntry(&commonv1.Entry{SpiffeId: "spiffe://example.org/ops", ParentId: nodeA, Admin: true,
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:1000"}}})
	plain := env.CreateEntry(&commonv1.Entry{SpiffeId: "spiffe://example.org/web", ParentId: nodeA,
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:1001"}}})
	base := consoleURL(t, env, "https")
	client := func(svid x509svid.Source) *http.Client {
		var cfg *tls.Config
		serverID := tlsconfig.AuthorizeID(server.ServerID(env.TrustDomain))
		if svid == nil {
			cfg = tlsconfig.TLSClientConfig(env.Server, serverID)
		} else {
			cfg = tlsconfig.MTLSClientConfig(svid, env.Server, serverID)
		}
		tr := &http.Transport{TLSClientConfig: cfg}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	for _, tc := range []struct {
		name  string
		entry *commonv1.Entry
		want  int
	}{{"admin entry's SVID", admin, http.StatusOK}, {"plain entry's SVID", plain, http.StatusForbidden}} {
		key, csr := testenv.NewCSR(t)
		resp, err := a.Client.SignX509SVIDs(env.Ctx(), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: tc.entry.GetId(), Csr: csr}}})
		if err != nil {
			t.Fatal(err)
		}
		svid := testenv.SVIDFromChain(t, resp.GetResults()[0].GetCertChain(), key)
		got, body := get(t, client(svid), base+"/agents")
		if got.StatusCode != tc.want {
			t.Errorf("GET /agents with the %s = %d %q; want %d", tc.name, got.StatusCode, body, tc.want)
		}
	}
	got, body := get(t, client(a.SVID), base+"/")
	if got.StatusCode != http.StatusForbidden {
		t.Errorf("GET / with an agent SVID = %d %q; want 403", got.StatusCode, body)
	}
	if resp, err := client(nil).Get(base + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("GET / without a client certificate = %d; want the TLS handshake refused", resp.StatusCode)
	}
}

// nopBundle has no authorities: nothing verifies against it.
type nopBundle struct{}

func (nopBundle) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return x509bundle.New(td), nil
}

func TestRateLimited(t *testing.T) {
	c, err := console.New(console.Config{Store: openStore(t), TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// The burst is 60 at 20 per second: 300 requests in a row cannot all
	// pass however slow the machine is, unless they take 12 s.
	limited := 0
	for range 300 {
		r := httptest.NewRequest("GET", "/static/console.css", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		w := httptest.NewRecorder()
		c.ServeHTTP(w, r)
		if w.Code == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Errorf("300 requests from one address: none refused with 429; want the per-client rate limit")
	}
}

// FuzzParseEntryQuery feeds the entries page's query string parser
// arbitrary input: it returns a query or an error, never panics, and an
// accepted query stays within the page bounds.
func FuzzParseEntryQuery(f *testing.F) {
	for _, s := range []string{"", "spiffe_id=spiffe://example.org/web", "parent_id=spiffe://example.org/node&limit=500",
		"selector=unix:uid:1000+k8s:ns:default", "after=abc&limit=1", "limit=-1", "selector=%00", "spiffe_id=spiffe://%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := &http.Request{URL: &url.URL{RawQuery: raw}}
		q, err := console.ParseEntryQuery(r)
		if err != nil {
			return
		}
		if q.Limit < 1 || q.Limit > console.MaxPageSize {
			t.Fatalf("ParseEntryQuery(%q) limit %d out of bounds", raw, q.Limit)
		}
	})
}
