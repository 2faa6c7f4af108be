// Package storetest is the conformance suite every store backend passes.
// Backends run it from their own tests:
//
//	func TestSQLite(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) *store.Store { … a fresh, empty store … })
//	}
//
// Each subtest opens its own store and runs in parallel with the others, so
// open must hand out isolated databases (a temp file, a fresh schema) and
// arrange their cleanup with t.Cleanup.
package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// OpenFunc returns a fresh, empty, migrated store whose cleanup is
// registered on t.
type OpenFunc func(t *testing.T) *store.Store

// Run runs the conformance suite against the stores open returns.
func Run(t *testing.T, open OpenFunc) {
	groups := []struct {
		name  string
		tests map[string]func(t *testing.T, s *store.Store)
	}{
		{"Entries", entryTests},
		{"EntryChanges", changeTests},
		{"EntryBatch", entryBatchTests},
		{"Nodes", nodeTests},
		{"NodeAddresses", nodeAddressTests},
		{"JoinTokens", tokenTests},
		{"JoinTokenAdmin", tokenAdminTests},
		{"Identity", identityTests},
		{"NodeAllowances", allowanceTests},
		{"Authorities", authorityTests},
		{"Audit", auditTests},
		{"Revision", revisionTests},
		{"Findings", findingTests},
		{"Coverage", coverageTests},
		{"Replacements", replacementTests},
		{"Broker", brokerTests},
		{"TokenReplay", replayTests},
		{"SVIDBindings", bindingTests},
		{"Federation", federationTests},
		{"SVIDRevocations", revocationTests},
		{"CAKeys", caKeyTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for name, test := range g.tests {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					test(t, open(t))
				})
			}
		})
	}
}

// cmpOpts compare store types: SPIFFE IDs and trust domains by value, times
// with time.Time.Equal.
var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b }),
	cmp.Comparer(func(a, b spiffeid.TrustDomain) bool { return a == b }),
}

func ctxFor(t *testing.T) context.Context {
	return store.WithActor(t.Context(), "test:"+t.Name())
}

func id(s string) spiffeid.ID { return spiffeid.RequireFromString(s) }

func sel(s string) store.Selector {
	x, err := model.ParseSelector(s)
	if err != nil {
		panic(err)
	}
	return x
}

func sels(ss ...string) []store.Selector {
	out := make([]store.Selector, len(ss))
	for i, s := range ss {
		out[i] = sel(s)
	}
	return out
}

// entry returns a valid entry for spiffe://example.org/<name> under
// spiffe://example.org/node/<parent> with the given selectors.
func entry(name, parent string, selectors ...string) store.Entry {
	if len(selectors) == 0 {
		selectors = []string{"unix:uid:1000"}
	}
	return store.Entry{
		SPIFFEID:  id("spiffe://example.org/" + name),
		ParentID:  id("spiffe://example.org/node/" + parent),
		Selectors: sels(selectors...),
	}
}

// create creates entries non-atomically and fails the test on any error.
func create(t *testing.T, s *store.Store, entries ...store.Entry) []store.Entry {
	t.Helper()
	res, err := s.CreateEntries(ctxFor(t), entries, true)
	if err != nil {
		t.Fatalf("CreateEntries() error = %v", err)
	}
	out := make([]store.Entry, len(res))
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("CreateEntries() item %d error = %v", i, r.Err)
		}
		out[i] = r.Entry
	}
	return out
}

func revision(t *testing.T, s *store.Store) int64 {
	t.Helper()
	rev, err := s.Revision(t.Context())
	if err != nil {
		t.Fatalf("Revision() error = %v", err)
	}
	return rev
}

func auditLog(t *testing.T, s *store.Store) []store.AuditRecord {
	t.Helper()
	recs, err := s.ListAudit(t.Context(), store.AuditFilter{})
	if err != nil {
		t.Fatalf("ListAudit() error = %v", err)
	}
	return recs
}

// actions returns "action object" for each record.
func actions(recs []store.AuditRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Action + " " + r.Object
	}
	return out
}

func wantKind(t *testing.T, what string, err error, want errkind.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s error = nil, want kind %v", what, want)
	}
	if got := errkind.Of(err); got != want {
		t.Fatalf("%s error = %v (kind %v), want kind %v", what, err, got, want)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s error = %v", what, err)
	}
}

func verifyOK(t *testing.T, s *store.Store) store.AuditReport {
	t.Helper()
	rep, err := s.VerifyAudit(t.Context())
	if err != nil {
		t.Fatalf("VerifyAudit() error = %v", err)
	}
	if !rep.OK {
		t.Fatalf("VerifyAudit() = %+v, want OK", rep)
	}
	return rep
}

// exec runs raw SQL against the store's database, for tampering.
func exec(t *testing.T, s *store.Store, query string, args ...any) {
	t.Helper()
	if s.Driver() == store.DriverPostgres {
		n := 0
		q := []byte{}
		for i := 0; i < len(query); i++ {
			if query[i] == '?' {
				n++
				q = fmt.Appendf(q, "$%d", n)
				continue
			}
			q = append(q, query[i])
		}
		query = string(q)
	}
	if _, err := s.DB().ExecContext(t.Context(), query, args...); err != nil {
		t.Fatalf("exec %q: %v", query, err)
	}
}

var epoch = time.Date(2026, 11, 3, 10, 0, 0, 123456789, time.UTC)
