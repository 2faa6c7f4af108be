package store_test

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

// TestTracing opens each backend with a tracer provider and checks that a
// write under a caller's span is a "store update" child span with its SQL
// statements under it, that a bulk write (COPY on PostgreSQL, through the
// traced driver) still works, that statements outside any span make none,
// and that bound values never reach the spans.
func TestTracing(t *testing.T) {
	backends := map[string]func(t *testing.T) store.Config{
		"sqlite": func(t *testing.T) store.Config {
			return store.Config{DSN: filepath.Join(t.TempDir(), "signet.db")}
		},
		"postgres": func(t *testing.T) store.Config {
			return store.Config{Driver: store.DriverPostgres, DSN: storetest.PostgresDSN(t)}
		},
	}
	for name, cfg := range backends {
		t.Run(name, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			c := cfg(t)
			c.TracerProvider = tp
			s, err := store.Open(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			exp.Reset()

			// Outside any span: nothing.
			if _, err := s.Revision(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := exp.GetSpans(); len(got) != 0 {
				t.Fatalf("a store call outside any span made %d spans (%s), want none", len(got), got[0].Name)
			}

			ctx, parent := tp.Tracer("test").Start(t.Context(), "rpc")
			secret := "join-token-value-never-in-a-span"
			hash := sha256.Sum256([]byte(secret))
			err = s.CreateJoinToken(ctx, store.JoinToken{Hash: hash[:], ExpiresAt: time.Now().Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			// 100 entries: over PostgreSQL's COPY threshold.
			td := spiffeid.RequireTrustDomainFromString("example.org")
			var entries []store.Entry
			for i := range 100 {
				entries = append(entries, store.Entry{
					SPIFFEID:  spiffeid.RequireFromPath(td, fmt.Sprintf("/traced/workload-%03d", i)),
					ParentID:  spiffeid.RequireFromPath(td, "/node/traced"),
					Selectors: []store.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 1000+i)}},
					X509TTL:   time.Hour,
				})
			}
			if _, err := s.CreateEntries(ctx, entries, true); err != nil {
				t.Fatalf("CreateEntries through the traced driver: %v", err)
			}
			parent.End()

			spans := exp.GetSpans()
			updates := map[string]tracetest.SpanStub{}
			for _, sp := range spans {
				if sp.Name != "store update" {
					continue
				}
				if sp.Parent.SpanID() != parent.SpanContext().SpanID() {
					t.Errorf("store update span's parent = %s, want the caller's span", sp.Parent.SpanID())
				}
				for _, kv := range sp.Attributes {
					if kv.Key == "signet.store.operation" {
						updates[kv.Value.AsString()] = sp
					}
				}
			}
			var create tracetest.SpanStub
			for op, sp := range updates {
				if strings.HasPrefix(op, "create join token ") {
					create = sp
				}
			}
			if _, ok := updates["create entries"]; !ok || !create.SpanContext.IsValid() {
				t.Fatalf("store update operations = %v, want create join token … and create entries", keys(updates))
			}
			insert := false
			for _, sp := range spans {
				for _, kv := range sp.Attributes {
					v := kv.Value.String()
					if strings.Contains(v, secret) || strings.Contains(v, fmt.Sprintf("%x", hash[:8])) || strings.Contains(v, "/traced/workload-") {
						t.Errorf("span %q attribute %s carries a bound value: %q", sp.Name, kv.Key, v)
					}
					if kv.Key == "db.query.text" && strings.Contains(v, "INSERT INTO join_tokens") {
						insert = sp.Parent.SpanID() == create.SpanContext.SpanID()
					}
				}
			}
			if !insert {
				t.Errorf("no INSERT INTO join_tokens span under the create join token span; spans: %v", names(spans))
			}
		})
	}
}

func keys(m map[string]tracetest.SpanStub) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}
