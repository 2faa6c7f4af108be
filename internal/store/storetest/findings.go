package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var findingTests = map[string]func(t *testing.T, s *store.Store){
	"UpsertByFingerprint": testFindingUpsert,
	"RotatedIsNew":        testFindingRotated,
	"ScopeMarksGone":      testFindingScopeGone,
	"ResolveIsSticky":     testFindingResolve,
	"ReportErrors":        testFindingReportErrors,
	"AuditNoFingerprint":  testFindingAudit,
	"NodeLabels":          testNodeLabels,
}

const (
	fpA = "0123456789abcdef"
	fpB = "fedcba9876543210"
)

// finding returns a reported finding of fingerprint fp at the given paths
// (line 3 each).
func finding(fp string, paths ...string) store.Finding {
	f := store.Finding{
		Fingerprint: fp, RuleID: "github-pat", Detector: "gitleaks", Kind: "token", Severity: "high",
		Description: "GitHub personal access token", Preview: "ghp_…(40)",
		Details: map[string]string{"user": "ci"},
	}
	for _, p := range paths {
		f.Locations = append(f.Locations, store.FindingLocation{Path: p, Line: 3, Column: 7})
	}
	return f
}

func report(t *testing.T, s *store.Store, r store.FindingReport) store.ReportResult {
	t.Helper()
	res, err := s.ReportFindings(ctxFor(t), r)
	must(t, "ReportFindings", err)
	return res
}

func getFinding(t *testing.T, s *store.Store, fp string) store.Finding {
	t.Helper()
	f, err := s.GetFinding(t.Context(), fp)
	must(t, "GetFinding", err)
	return f
}

func paths(f store.Finding) []string {
	var out []string
	for _, l := range f.Locations {
		s := l.Host + ":" + l.Path
		if !l.GoneAt.IsZero() {
			s += " (gone)"
		}
		out = append(out, s)
	}
	return out
}

func testFindingUpsert(t *testing.T, s *store.Store) {
	committed := epoch.Add(-400 * 24 * time.Hour)
	first := finding(fpA, "/srv/app/config.yaml")
	first.Locations[0].Commit, first.Locations[0].Author, first.Locations[0].CommittedAt = "abc123", "dev", committed
	res := report(t, s, store.FindingReport{Host: "h1", Labels: map[string]string{"environment": "ci"}, Findings: []store.Finding{first}})
	if res != (store.ReportResult{New: 1}) {
		t.Errorf("ReportFindings(first) = %+v, want 1 new", res)
	}
	f1 := getFinding(t, s, fpA)
	if f1.Status != store.FindingOpen || f1.FirstSeenAt.IsZero() || !f1.LastSeenAt.Equal(f1.FirstSeenAt) {
		t.Errorf("GetFinding() = %+v, want open with first = last seen", f1)
	}
	if !f1.Since().Equal(committed) {
		t.Errorf("Since() = %v, want the commit date %v", f1.Since(), committed)
	}

	// The same secret again, at the same place and at a new one (upper-case
	// fingerprint: the same identity), with another label and new metadata.
	again := finding(strings.ToUpper(fpA), "/srv/app/config.yaml", "/etc/other.env")
	again.Locations[0].Commit = "abc123"
	again.Severity = "critical"
	res = report(t, s, store.FindingReport{Host: "h1", Labels: map[string]string{"owner": "payments"}, Findings: []store.Finding{again}})
	if res != (store.ReportResult{Seen: 1}) {
		t.Errorf("ReportFindings(again) = %+v, want 1 seen", res)
	}
	all, err := s.ListFindings(t.Context(), store.FindingFilter{})
	must(t, "ListFindings", err)
	if len(all) != 1 {
		t.Fatalf("ListFindings() = %d findings, want 1 (upsert by fingerprint)", len(all))
	}
	f2 := all[0]
	if diff := cmp.Diff([]string{"h1:/etc/other.env", "h1:/srv/app/config.yaml"}, paths(f2)); diff != "" {
		t.Errorf("locations (-want +got):\n%s", diff)
	}
	if !f2.FirstSeenAt.Equal(f1.FirstSeenAt) || f2.LastSeenAt.Before(f1.LastSeenAt) {
		t.Errorf("times = first %v last %v, want first kept (%v) and last advanced", f2.FirstSeenAt, f2.LastSeenAt, f1.FirstSeenAt)
	}
	if f2.Severity != "critical" {
		t.Errorf("Severity = %q, want the newest report's", f2.Severity)
	}
	if diff := cmp.Diff(map[string]string{"environment": "ci", "owner": "payments"}, f2.Labels); diff != "" {
		t.Errorf("labels not merged (-want +got):\n%s", diff)
	}
	loc := f2.Locations[1]
	if loc.Commit != "abc123" || loc.Author != "dev" || !loc.CommittedAt.Equal(committed) || loc.Line != 3 || loc.Column != 7 {
		t.Errorf("location = %+v", loc)
	}
	// Another host seeing the same secret adds a location, not a finding.
	res = report(t, s, store.FindingReport{Host: "h2", Findings: []store.Finding{finding(fpA, "/srv/app/config.yaml")}})
	if res.New != 0 || res.Seen != 1 || len(getFinding(t, s, fpA).Locations) != 3 {
		t.Errorf("ReportFindings(h2) = %+v, locations %v; want seen with a third location", res, paths(getFinding(t, s, fpA)))
	}
	_, err = s.GetFinding(t.Context(), "00000000")
	wantKind(t, "GetFinding(unknown)", err, errkind.NotFound)
}

func testFindingRotated(t *testing.T, s *store.Store) {
	report(t, s, store.FindingReport{Host: "h", Findings: []store.Finding{finding(fpA, "/app/.env")}})
	// Rotated: a different secret at the same place is a new finding.
	res := report(t, s, store.FindingReport{Host: "h", Findings: []store.Finding{finding(fpB, "/app/.env")}})
	if res.New != 1 {
		t.Errorf("ReportFindings(rotated) = %+v, want 1 new", res)
	}
	all, err := s.ListFindings(t.Context(), store.FindingFilter{})
	must(t, "ListFindings", err)
	if len(all) != 2 || all[0].Fingerprint != fpA || all[1].Fingerprint != fpB {
		t.Errorf("ListFindings() = %v, want both fingerprints", all)
	}
}

func testFindingScopeGone(t *testing.T, s *store.Store) {
	report(t, s, store.FindingReport{Host: "h", Scope: []string{"/srv"}, Findings: []store.Finding{
		finding(fpA, "/srv/a/x.env", "/srv2/y.env"), finding(fpB, "/srv/b/z.env"),
	}})
	// A rescan of another scope, and one of the same scope on another host,
	// change nothing.
	report(t, s, store.FindingReport{Host: "h", Scope: []string{"/opt"}})
	report(t, s, store.FindingReport{Host: "other", Scope: []string{"/srv"}})
	if f := getFinding(t, s, fpB); f.Status != store.FindingOpen {
		t.Fatalf("finding B = %s after unrelated scans, want open", f.Status)
	}
	// A rescan of /srv finds only A's /srv/a location: B is gone; A keeps
	// its /srv2 location (outside the scope) and stays open.
	res := report(t, s, store.FindingReport{Host: "h", Scope: []string{"/srv"}, Findings: []store.Finding{finding(fpA, "/srv/a/x.env")}})
	if res != (store.ReportResult{Seen: 1, Gone: 1}) {
		t.Errorf("ReportFindings(rescan) = %+v, want 1 seen, 1 gone", res)
	}
	b := getFinding(t, s, fpB)
	if b.Status != store.FindingGone || b.ClosedAt.IsZero() || b.Locations[0].GoneAt.IsZero() {
		t.Errorf("finding B = %+v, want gone with a closed time and its location gone", b)
	}
	a := getFinding(t, s, fpA)
	if a.Status != store.FindingOpen {
		t.Errorf("finding A = %s, want open", a.Status)
	}
	// Scanning /srv2 without A now leaves A with no open location: gone.
	res = report(t, s, store.FindingReport{Host: "h", Scope: []string{"/srv2/", "/srv"}, Findings: []store.Finding{}})
	if res.Gone != 1 || getFinding(t, s, fpA).Status != store.FindingGone {
		t.Errorf("ReportFindings(empty rescan) = %+v, A %s; want A gone", res, getFinding(t, s, fpA).Status)
	}
	open, err := s.ListFindings(t.Context(), store.FindingFilter{Status: []store.FindingStatus{store.FindingOpen}})
	must(t, "ListFindings(open)", err)
	if len(open) != 0 {
		t.Errorf("open findings = %v, want none", open)
	}
	// B is back: reopened, its location no longer gone.
	res = report(t, s, store.FindingReport{Host: "h", Findings: []store.Finding{finding(fpB, "/srv/b/z.env")}})
	b = getFinding(t, s, fpB)
	if res.Reopened != 1 || b.Status != store.FindingOpen || !b.ClosedAt.IsZero() || !b.Locations[0].GoneAt.IsZero() {
		t.Errorf("ReportFindings(back) = %+v, B = %+v; want reopened", res, b)
	}
	var actions []string
	for _, r := range auditLog(t, s) {
		if r.Action != "finding.scan" {
			actions = append(actions, r.Action+" "+r.Object+" "+r.Detail["change"])
		}
	}
	want := []string{
		"finding.report finding:01234567 new", "finding.report finding:fedcba98 new",
		"finding.gone finding:fedcba98 ", "finding.gone finding:01234567 ", "finding.report finding:fedcba98 reopened",
	}
	if diff := cmp.Diff(want, actions); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

func testFindingResolve(t *testing.T, s *store.Store) {
	report(t, s, store.FindingReport{Host: "h", Findings: []store.Finding{finding(fpA, "/repo/a.go")}})
	f, err := s.ResolveFinding(ctxFor(t), fpA, "rotated")
	must(t, "ResolveFinding", err)
	if f.Status != store.FindingResolved || f.Resolution != "rotated" || f.ClosedAt.IsZero() {
		t.Errorf("ResolveFinding() = %+v, want resolved (rotated)", f)
	}
	// Seen again (the old secret lingers in git history): still resolved.
	report(t, s, store.FindingReport{Host: "h", Findings: []store.Finding{finding(fpA, "/repo/a.go", "/repo/b.go")}})
	if f := getFinding(t, s, fpA); f.Status != store.FindingResolved || len(f.Locations) != 2 {
		t.Errorf("after another sighting: %+v, want still resolved with both locations", f)
	}
	_, err = s.ResolveFinding(ctxFor(t), fpB, "rotated")
	wantKind(t, "ResolveFinding(unknown)", err, errkind.NotFound)
	_, err = s.ResolveFinding(ctxFor(t), fpA, "")
	wantKind(t, "ResolveFinding(no reason)", err, errkind.InvalidArgument)
	rec := auditLog(t, s)
	last := rec[len(rec)-1]
	if last.Action != "finding.scan" {
		t.Fatalf("last audit record = %v", last)
	}
	var res *store.AuditRecord
	for i := range rec {
		if rec[i].Action == "finding.resolve" {
			res = &rec[i]
		}
	}
	if res == nil || res.Detail["reason"] != "rotated" || res.Object != "finding:01234567" {
		t.Errorf("finding.resolve record = %+v", res)
	}
}

func testFindingReportErrors(t *testing.T, s *store.Store) {
	noLoc := finding(fpA)
	badFP := finding("xyz", "/a")
	badSev := finding(fpA, "/a")
	badSev.Severity = "urgent"
	longPreview := finding(fpA, "/a")
	longPreview.Preview = strings.Repeat("s", 65)
	badLine := finding(fpA, "/a")
	badLine.Locations[0].Line = -1
	noPath := finding(fpA, "")
	cases := map[string]struct {
		r    store.FindingReport
		want string
	}{
		"no host":       {store.FindingReport{Findings: []store.Finding{finding(fpA, "/a")}}, "host is required"},
		"no location":   {store.FindingReport{Host: "h", Findings: []store.Finding{noLoc}}, "findings[0].locations"},
		"bad fp":        {store.FindingReport{Host: "h", Findings: []store.Finding{finding(fpA, "/a"), badFP}}, "findings[1].fingerprint"},
		"bad severity":  {store.FindingReport{Host: "h", Findings: []store.Finding{badSev}}, "findings[0].severity"},
		"long preview":  {store.FindingReport{Host: "h", Findings: []store.Finding{longPreview}}, "findings[0].preview"},
		"negative line": {store.FindingReport{Host: "h", Findings: []store.Finding{badLine}}, "findings[0].locations[0]"},
		"no path":       {store.FindingReport{Host: "h", Findings: []store.Finding{noPath}}, "findings[0].locations[0].path"},
		"bad label":     {store.FindingReport{Host: "h", Labels: map[string]string{"Env": "x"}}, "labels"},
	}
	for name, c := range cases {
		_, err := s.ReportFindings(ctxFor(t), c.r)
		if errkind.Of(err) != errkind.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: ReportFindings() error = %v, want InvalidArgument naming %q", name, err, c.want)
		}
	}
	if all, err := s.ListFindings(t.Context(), store.FindingFilter{}); err != nil || len(all) != 0 {
		t.Errorf("ListFindings() = %v, %v; want nothing stored", all, err)
	}
}

func testFindingAudit(t *testing.T, s *store.Store) {
	f := finding(fpA, "/srv/app/.env")
	report(t, s, store.FindingReport{Host: "build-7", Scope: []string{"/srv"}, Findings: []store.Finding{f}})
	recs := auditLog(t, s)
	if len(recs) != 2 {
		t.Fatalf("audit = %v, want finding.report and finding.scan", actions(recs))
	}
	r := recs[0]
	want := map[string]string{"fingerprint": "01234567", "kind": "token", "path": "/srv/app/.env", "host": "build-7", "change": "new"}
	if r.Action != "finding.report" || r.Actor != "test:"+t.Name() || !cmp.Equal(want, r.Detail) {
		t.Errorf("audit record = %+v, want finding.report with detail %v", r, want)
	}
	if recs[1].Action != "finding.scan" || recs[1].Object != "build-7" || recs[1].Detail["new"] != "1" {
		t.Errorf("audit record = %+v, want finding.scan of build-7", recs[1])
	}
	for _, r := range recs {
		if strings.Contains(fmt.Sprint(r, r.Detail), fpA) {
			t.Errorf("audit record %v carries the whole fingerprint", r)
		}
	}
	// Seeing it again unchanged is usage: no finding.report record.
	report(t, s, store.FindingReport{Host: "build-7", Findings: []store.Finding{f}})
	if n := len(auditLog(t, s)); n != 3 {
		t.Errorf("audit has %d records after an unchanged report, want 3 (only finding.scan added)", n)
	}
	verifyOK(t, s)
}

func testNodeLabels(t *testing.T, s *store.Store) {
	n := node("n1")
	n.Labels = map[string]string{"zone": "a", "owner": "old"}
	created, err := s.CreateNode(ctxFor(t), n)
	must(t, "CreateNode", err)
	got, err := s.SetNodeLabels(ctxFor(t), n.SPIFFEID, map[string]string{"environment": "vm", "owner": "infra"}, []string{"zone"})
	must(t, "SetNodeLabels", err)
	want := map[string]string{"environment": "vm", "owner": "infra"}
	if diff := cmp.Diff(want, got.Labels); diff != "" {
		t.Errorf("SetNodeLabels() labels (-want +got):\n%s", diff)
	}
	stored, err := s.GetNode(t.Context(), n.SPIFFEID)
	must(t, "GetNode", err)
	if diff := cmp.Diff(got, stored, cmpOpts); diff != "" {
		t.Errorf("GetNode() (-returned +stored):\n%s", diff)
	}
	if stored.SerialNumber != created.SerialNumber || stored.Revision <= created.Revision {
		t.Errorf("stored = %+v, want serial kept and revision advanced", stored)
	}
	recs := auditLog(t, s)
	last := recs[len(recs)-1]
	if last.Action != "node.label" || last.Detail["set.environment"] != "vm" || last.Detail["removed"] != "zone" {
		t.Errorf("audit = %+v, want node.label", last)
	}
	_, err = s.SetNodeLabels(ctxFor(t), id("spiffe://example.org/agent/none"), want, nil)
	wantKind(t, "SetNodeLabels(unknown)", err, errkind.NotFound)
	_, err = s.SetNodeLabels(ctxFor(t), n.SPIFFEID, map[string]string{"Bad Key": "x"}, nil)
	wantKind(t, "SetNodeLabels(bad key)", err, errkind.InvalidArgument)
	_, err = s.SetNodeLabels(ctxFor(t), n.SPIFFEID, map[string]string{"a": "x"}, []string{"a"})
	wantKind(t, "SetNodeLabels(set and remove)", err, errkind.InvalidArgument)
}
