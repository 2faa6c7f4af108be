package storetest

import (
	"encoding/json"
	"testing"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var coverageTests = map[string]func(t *testing.T, s *store.Store){
	"SaveReturnsPrevious": testCoverageSave,
	"List":                testCoverageList,
	"Errors":              testCoverageErrors,
}

func saveCoverage(t *testing.T, s *store.Store, dim, report string) (store.CoverageReport, store.CoverageReport) {
	t.Helper()
	saved, prev, err := s.SaveCoverageReport(t.Context(), store.CoverageReport{Dimension: dim, Report: json.RawMessage(report)})
	must(t, "SaveCoverageReport", err)
	return saved, prev
}

func testCoverageSave(t *testing.T, s *store.Store) {
	first, prev := saveCoverage(t, s, "environment", `{"n":1}`)
	if first.ID == 0 || first.CreatedAt.IsZero() || prev.ID != 0 {
		t.Errorf("first save = %+v, previous %+v; want an ID, a time and no previous", first, prev)
	}
	other, prev := saveCoverage(t, s, "owner", `{"n":2}`)
	if other.ID <= first.ID || prev.ID != 0 {
		t.Errorf("owner save = %+v, previous %+v; want a later ID and no previous (other dimension)", other, prev)
	}
	second, prev := saveCoverage(t, s, "environment", `{"n":3}`)
	if prev.ID != first.ID || string(prev.Report) != `{"n":1}` || !prev.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("second save previous = %+v, want the first environment report", prev)
	}
	if second.ID <= other.ID {
		t.Errorf("IDs not increasing: %d after %d", second.ID, other.ID)
	}
	if revision(t, s) != 0 || len(auditLog(t, s)) != 0 {
		t.Errorf("coverage reports changed the revision or the audit log")
	}
}

func testCoverageList(t *testing.T, s *store.Store) {
	for i, dim := range []string{"environment", "owner", "environment", "environment"} {
		saveCoverage(t, s, dim, `{"i":`+string(rune('0'+i))+`}`)
	}
	env, err := s.ListCoverageReports(t.Context(), "environment", 2)
	must(t, "ListCoverageReports", err)
	if len(env) != 2 || string(env[0].Report) != `{"i":3}` || string(env[1].Report) != `{"i":2}` {
		t.Errorf("ListCoverageReports(environment, 2) = %v, want the newest two, newest first", env)
	}
	all, err := s.ListCoverageReports(t.Context(), "", 0)
	must(t, "ListCoverageReports", err)
	if len(all) != 4 || all[0].ID < all[3].ID {
		t.Errorf("ListCoverageReports(all) = %d reports, want 4 newest first", len(all))
	}
}

func testCoverageErrors(t *testing.T, s *store.Store) {
	_, _, err := s.SaveCoverageReport(t.Context(), store.CoverageReport{Report: json.RawMessage(`{}`)})
	wantKind(t, "SaveCoverageReport(no dimension)", err, errkind.InvalidArgument)
	_, _, err = s.SaveCoverageReport(t.Context(), store.CoverageReport{Dimension: "owner", Report: json.RawMessage(`{`)})
	wantKind(t, "SaveCoverageReport(bad json)", err, errkind.InvalidArgument)
}
