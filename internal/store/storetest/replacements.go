package storetest

import (
	"testing"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var replacementTests = map[string]func(t *testing.T, s *store.Store){
	"RiskScoredAndPaged":      testFindingRiskPaging,
	"PageErrors":              testFindingPageErrors,
	"LinkThenProveReplaced":   testReplacementLifecycle,
	"LinkErrors":              testReplacementErrors,
	"CountByEnvironment":      testCountFindings,
	"CredentialUsesHandedOut": testCredentialUses,
}

// riskFixture reports three findings whose scores differ: a production
// private key in two places, a production token and a development token.
func riskFixture(t *testing.T, s *store.Store) (high, mid, low string) {
	t.Helper()
	key := finding("aaaaaaaa00000001", "/srv/app/key.pem", "/srv/app/copy.pem")
	key.Kind, key.RuleID = "private-key", "pem-private-key"
	report(t, s, store.FindingReport{Host: "web-1", Labels: map[string]string{"environment": "prod", "owner": "pay"},
		Findings: []store.Finding{key, finding("aaaaaaaa00000002", "/srv/app/.env")}})
	report(t, s, store.FindingReport{Host: "dev-1", Labels: map[string]string{"environment": "development"},
		Findings: []store.Finding{finding("aaaaaaaa00000003", "/home/dev/.env")}})
	return "aaaaaaaa00000001", "aaaaaaaa00000002", "aaaaaaaa00000003"
}

func testFindingRiskPaging(t *testing.T, s *store.Store) {
	high, mid, low := riskFixture(t, s)
	var got []string
	tok := ""
	for range 5 {
		page, next, err := s.ListFindingsPage(t.Context(), store.FindingPage{Status: []store.FindingStatus{store.FindingOpen}, ByRisk: true, Limit: 1, Token: tok})
		must(t, "ListFindingsPage", err)
		for _, f := range page {
			got = append(got, f.Fingerprint)
			if f.Risk <= 0 || len(f.RiskFactors) == 0 || len(f.Locations) == 0 {
				t.Errorf("finding %s: risk %d, factors %v, %d locations; want a score, its factors and locations", f.Fingerprint, f.Risk, f.RiskFactors, len(f.Locations))
			}
		}
		if tok = next; tok == "" {
			break
		}
	}
	if want := []string{high, mid, low}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("by risk = %v, want %v", got, want)
	}
	f := getFinding(t, s, high)
	if f.Environment != "production" || f.Owner != "pay" {
		t.Errorf("environment, owner = %q, %q; want production, pay", f.Environment, f.Owner)
	}
	names := map[string]bool{}
	for _, fc := range f.RiskFactors {
		names[fc.Name] = true
	}
	if !names["environment"] || !names["places"] || !names["kind"] {
		t.Errorf("factors %+v: want kind, environment and places", f.RiskFactors)
	}
	if d := getFinding(t, s, low); d.Risk >= f.Risk || d.Environment != "development" || d.Owner != "unknown" {
		t.Errorf("development finding: risk %d (key %d), env %q owner %q", d.Risk, f.Risk, d.Environment, d.Owner)
	}
	// By fingerprint, two to a page.
	page, next, err := s.ListFindingsPage(t.Context(), store.FindingPage{Limit: 2})
	must(t, "ListFindingsPage(by fingerprint)", err)
	if len(page) != 2 || page[0].Fingerprint != high || next == "" {
		t.Fatalf("first page by fingerprint: %d findings, next %q", len(page), next)
	}
	page, next, err = s.ListFindingsPage(t.Context(), store.FindingPage{Limit: 2, Token: next})
	must(t, "ListFindingsPage(page 2)", err)
	if len(page) != 1 || page[0].Fingerprint != low || next != "" {
		t.Fatalf("second page by fingerprint: %v, next %q", page, next)
	}
}

func testFindingPageErrors(t *testing.T, s *store.Store) {
	riskFixture(t, s)
	_, next, err := s.ListFindingsPage(t.Context(), store.FindingPage{ByRisk: true, Limit: 1})
	must(t, "ListFindingsPage", err)
	for name, p := range map[string]store.FindingPage{
		"negative limit":    {Limit: -1},
		"huge limit":        {Limit: store.MaxFindingPage + 1},
		"garbage token":     {Token: "!!!"},
		"risk token by key": {Token: next},
		"forged token":      {ByRisk: true, Token: "cjo5OTk6YWFhYWFhYWEwMDAwMDAwMQ"}, // r:999:…
	} {
		_, _, err := s.ListFindingsPage(t.Context(), p)
		wantKind(t, name, err, errkind.InvalidArgument)
	}
}

func testReplacementLifecycle(t *testing.T, s *store.Store) {
	_, fp, _ := riskFixture(t, s)
	f, err := s.LinkReplacement(ctxFor(t), fp, "orders-db", "CHG-42")
	must(t, "LinkReplacement", err)
	if f.Replacement == nil || f.Replacement.Credential != "orders-db" || f.Replacement.Note != "CHG-42" ||
		f.Replacement.LinkedAt.IsZero() || !f.Replacement.ReplacedAt.IsZero() || f.Status != store.FindingOpen {
		t.Fatalf("after link: status %s, replacement %+v", f.Status, f.Replacement)
	}
	recs, err := s.ListAudit(t.Context(), store.AuditFilter{Action: "finding.link"})
	must(t, "ListAudit", err)
	if len(recs) != 1 || recs[0].Detail["credential"] != "orders-db" || recs[0].Detail["note"] != "CHG-42" ||
		recs[0].Actor != "test:"+t.Name() || len(recs[0].Object) > len("finding:")+store.AuditFingerprintLen {
		t.Fatalf("finding.link audit = %+v", recs)
	}
	pend, err := s.PendingReplacements(t.Context())
	must(t, "PendingReplacements", err)
	if len(pend) != 1 || pend[0].Fingerprint != fp || pend[0].Environment != "production" || pend[0].Status != store.FindingOpen {
		t.Fatalf("pending = %+v", pend)
	}
	// Still present: the proof does not hold.
	ok, err := s.MarkReplaced(ctxFor(t), fp, f.Replacement.LinkedAt, nil)
	must(t, "MarkReplaced(open)", err)
	if ok {
		t.Fatal("MarkReplaced of a finding still present succeeded")
	}
	// A complete rescan no longer sees it.
	report(t, s, store.FindingReport{Host: "web-1", Scope: []string{"/srv/app"}, Findings: []store.Finding{finding("aaaaaaaa00000001", "/srv/app/key.pem")}})
	if g := getFinding(t, s, fp); g.Status != store.FindingGone {
		t.Fatalf("after rescan: %s, want gone", g.Status)
	}
	ok, err = s.MarkReplaced(ctxFor(t), fp, f.Replacement.LinkedAt.Add(-time.Second), nil)
	must(t, "MarkReplaced(stale link)", err)
	if ok {
		t.Fatal("MarkReplaced with another link's time succeeded")
	}
	ok, err = s.MarkReplaced(ctxFor(t), fp, f.Replacement.LinkedAt, map[string]string{"subject": "spiffe://example.org/etl"})
	must(t, "MarkReplaced", err)
	g := getFinding(t, s, fp)
	if !ok || g.Status != store.FindingReplaced || g.Replacement.ReplacedAt.IsZero() || g.ClosedAt.IsZero() {
		t.Fatalf("after proof: ok %v, status %s, replacement %+v", ok, g.Status, g.Replacement)
	}
	recs, err = s.ListAudit(t.Context(), store.AuditFilter{Action: "finding.replaced"})
	must(t, "ListAudit", err)
	if len(recs) != 1 || recs[0].Detail["subject"] != "spiffe://example.org/etl" || recs[0].Detail["credential"] != "orders-db" {
		t.Fatalf("finding.replaced audit = %+v", recs)
	}
	if pend, _ := s.PendingReplacements(t.Context()); len(pend) != 0 {
		t.Fatalf("pending after proof = %+v", pend)
	}
	// The secret is back: open again, its proof void.
	res := report(t, s, store.FindingReport{Host: "web-1", Findings: []store.Finding{finding(fp, "/srv/app/.env")}})
	g = getFinding(t, s, fp)
	if res.Reopened != 1 || g.Status != store.FindingOpen || !g.Replacement.ReplacedAt.IsZero() {
		t.Fatalf("seen again: reopened %d, status %s, replacement %+v", res.Reopened, g.Status, g.Replacement)
	}
}

func testReplacementErrors(t *testing.T, s *store.Store) {
	_, fp, low := riskFixture(t, s)
	_, err := s.LinkReplacement(ctxFor(t), "bbbbbbbb00000000", "orders-db", "")
	wantKind(t, "unknown finding", err, errkind.NotFound)
	_, err = s.LinkReplacement(ctxFor(t), fp, "bad name!", "")
	wantKind(t, "bad credential", err, errkind.InvalidArgument)
	_, err = s.LinkReplacement(ctxFor(t), fp, "orders-db", "line\nbreak")
	wantKind(t, "bad note", err, errkind.InvalidArgument)
	_, err = s.LinkReplacement(ctxFor(t), "xyz", "orders-db", "")
	wantKind(t, "bad fingerprint", err, errkind.InvalidArgument)
	_, err = s.ResolveFinding(ctxFor(t), low, "rotated")
	must(t, "ResolveFinding", err)
	_, err = s.LinkReplacement(ctxFor(t), low, "orders-db", "")
	wantKind(t, "resolved finding", err, errkind.FailedPrecondition)
}

func testCountFindings(t *testing.T, s *store.Store) {
	_, _, low := riskFixture(t, s)
	_, err := s.ResolveFinding(ctxFor(t), low, "rotated")
	must(t, "ResolveFinding", err)
	got, err := s.CountFindings(t.Context(), "environment")
	must(t, "CountFindings", err)
	want := []store.FindingCount{{Key: "development", Status: store.FindingResolved, Count: 1}, {Key: "production", Status: store.FindingOpen, Count: 2}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("CountFindings(environment) = %+v, want %+v", got, want)
	}
	got, err = s.CountFindings(t.Context(), "owner")
	must(t, "CountFindings(owner)", err)
	if len(got) != 2 || got[0].Key != "pay" || got[1].Key != "unknown" {
		t.Fatalf("CountFindings(owner) = %+v", got)
	}
	_, err = s.CountFindings(t.Context(), "path; DROP TABLE findings")
	wantKind(t, "bad dimension", err, errkind.InvalidArgument)
}

func testCredentialUses(t *testing.T, s *store.Store) {
	since := time.Now().UTC().Add(-time.Minute)
	old := newLease("old", since.Add(-time.Hour), time.Hour)
	must2 := func(what string, _ store.Lease, err error) { t.Helper(); must(t, what, err) }
	l, err := s.CreateLease(ctxFor(t), old)
	must2("CreateLease(old)", l, err)
	l, err = s.ActivateLease(ctxFor(t), "old", nil, time.Time{})
	must2("ActivateLease(old)", l, err)
	// A failed issue: pending, then revoked without activation.
	failed := newLease("failed", since.Add(time.Second), time.Hour)
	failed.Subject = spiffe("spiffe://example.org/failed")
	l, err = s.CreateLease(ctxFor(t), failed)
	must2("CreateLease(failed)", l, err)
	l, err = s.EndLease(ctxFor(t), "failed", store.LeaseRevoked, "issue failed")
	must2("EndLease(failed)", l, err)
	pending := newLease("pending", since.Add(time.Second), time.Hour)
	pending.Subject = spiffe("spiffe://example.org/pending")
	l, err = s.CreateLease(ctxFor(t), pending)
	must2("CreateLease(pending)", l, err)
	used := newLease("used", since.Add(2*time.Second), time.Hour)
	l, err = s.CreateLease(ctxFor(t), used)
	must2("CreateLease(used)", l, err)
	l, err = s.ActivateLease(ctxFor(t), "used", nil, time.Time{})
	must2("ActivateLease(used)", l, err)
	l, err = s.EndLease(ctxFor(t), "used", store.LeaseRevoked, "done")
	must2("EndLease(used)", l, err)
	uses, err := s.CredentialUses(t.Context(), "orders-db", since, 10)
	must(t, "CredentialUses", err)
	if len(uses) != 1 || uses[0].Subject != "spiffe://example.org/etl" || uses[0].Node != "spiffe://example.org/node/a" {
		t.Fatalf("CredentialUses = %+v, want the etl workload's activated lease only", uses)
	}
	if uses, _ := s.CredentialUses(t.Context(), "other", since, 10); len(uses) != 0 {
		t.Fatalf("CredentialUses(other) = %+v", uses)
	}
}
