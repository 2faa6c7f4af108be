package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var entryTests = map[string]func(t *testing.T, s *store.Store){
	"CreateAssignsFields":          testCreateAssignsFields,
	"CreateRoundTripsAllFields":    testCreateRoundTrip,
	"CreateKeepsCallerID":          testCreateKeepsCallerID,
	"CreateInvalid":                testCreateInvalid,
	"CreateDuplicateInBatch":       testCreateDuplicateInBatch,
	"CreateDuplicateOfStored":      testCreateDuplicateOfStored,
	"CreateAtomicRejectsBatch":     testCreateAtomicRejects,
	"CreateAtomicRejectsOnStore":   testCreateAtomicRejectsOnStore,
	"CreateNonAtomicPartial":       testCreateNonAtomicPartial,
	"CreateEmpty":                  testCreateEmpty,
	"CreateAudits":                 testCreateAudits,
	"CreateDoesNotAliasInput":      testCreateDoesNotAliasInput,
	"GetNotFound":                  testGetNotFound,
	"ListFilters":                  testListFilters,
	"ListPagination":               testListPagination,
	"Update":                       testUpdate,
	"UpdateErrors":                 testUpdateErrors,
	"Delete":                       testDelete,
	"DeleteNothingFound":           testDeleteNothingFound,
	"Touch":                        testTouch,
	"ConcurrentCreates":            testConcurrentCreates,
	"CreateLargeBatch":             testCreateLargeBatch,
	"CreateIDsIncrease":            testCreateIDsIncrease,
	"CreateDatabaseErrorRollsBack": testCreateDatabaseError,
}

func testCreateAssignsFields(t *testing.T, s *store.Store) {
	before := revision(t, s)
	in := entry("web", "n1", "unix:uid:1000", "k8s:ns:prod", "unix:gid:5", "unix:uid:1000")
	got := create(t, s, in)[0]
	if _, err := uuid.Parse(got.ID); err != nil {
		t.Errorf("created ID = %q, want a UUID: %v", got.ID, err)
	}
	if got.Revision != before+1 || revision(t, s) != before+1 {
		t.Errorf("Revision = %d, store at %d, want %d", got.Revision, revision(t, s), before+1)
	}
	if got.CreatedAt.IsZero() || !got.CreatedAt.Equal(got.UpdatedAt) {
		t.Errorf("CreatedAt = %v, UpdatedAt = %v, want equal and set", got.CreatedAt, got.UpdatedAt)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt location = %v, want UTC", got.CreatedAt.Location())
	}
	wantSels := sels("k8s:ns:prod", "unix:gid:5", "unix:uid:1000")
	if diff := cmp.Diff(wantSels, got.Selectors); diff != "" {
		t.Errorf("selectors not canonical (-want +got):\n%s", diff)
	}
	stored, err := s.GetEntry(t.Context(), got.ID)
	must(t, "GetEntry", err)
	if diff := cmp.Diff(got, stored, cmpOpts); diff != "" {
		t.Errorf("GetEntry() differs from the created entry (-created +stored):\n%s", diff)
	}
}

func testCreateRoundTrip(t *testing.T, s *store.Store) {
	loc := time.FixedZone("UTC+5", 5*3600)
	in := store.Entry{
		ID:            "custom-id-1",
		SPIFFEID:      id("spiffe://example.org/db"),
		ParentID:      id("spiffe://example.org/node/n1"),
		Selectors:     sels("unix:uid:0", "docker:label:app:db"),
		X509TTL:       90*time.Minute + time.Nanosecond,
		JWTTTL:        5 * time.Minute,
		DNSNames:      []string{"db.internal", "db"},
		Admin:         true,
		Downstream:    true,
		FederatesWith: []spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString("partner.example")},
		ExpiresAt:     time.Date(2027, 1, 2, 3, 4, 5, 987654321, loc),
		Hint:          "primary",
		Labels:        map[string]string{"owner": "team-db", "env": "prod"},
	}
	got := create(t, s, in)[0]
	stored, err := s.GetEntry(t.Context(), "custom-id-1")
	must(t, "GetEntry", err)
	want := in
	want.Selectors = sels("docker:label:app:db", "unix:uid:0")
	want.ExpiresAt = in.ExpiresAt.UTC()
	want.Revision, want.CreatedAt, want.UpdatedAt = got.Revision, got.CreatedAt, got.UpdatedAt
	if diff := cmp.Diff(want, stored, cmpOpts); diff != "" {
		t.Errorf("GetEntry() round trip (-want +got):\n%s", diff)
	}
	if !stored.ExpiresAt.Equal(in.ExpiresAt) || stored.ExpiresAt.Nanosecond() != 987654321 {
		t.Errorf("ExpiresAt = %v, want %v exactly", stored.ExpiresAt, in.ExpiresAt)
	}
}

func testCreateKeepsCallerID(t *testing.T, s *store.Store) {
	e := entry("a", "n1")
	e.ID = "my-entry"
	if got := create(t, s, e)[0]; got.ID != "my-entry" {
		t.Errorf("ID = %q, want my-entry", got.ID)
	}
}

func testCreateInvalid(t *testing.T, s *store.Store) {
	noSPIFFE := entry("a", "n1")
	noSPIFFE.SPIFFEID = spiffeid.ID{}
	noParent := entry("a", "n1")
	noParent.ParentID = spiffeid.ID{}
	noSelectors := entry("a", "n1")
	noSelectors.Selectors = nil
	badSelector := entry("a", "n1")
	badSelector.Selectors = []store.Selector{{Type: "Unix", Value: "uid:1"}}
	negTTL := entry("a", "n1")
	negTTL.X509TTL = -time.Second
	negJWT := entry("a", "n1")
	negJWT.JWTTTL = -time.Second
	badID := entry("a", "n1")
	badID.ID = "has space"
	longID := entry("a", "n1")
	longID.ID = strings.Repeat("x", 256)
	cases := map[string]store.Entry{
		"no spiffe id": noSPIFFE, "no parent": noParent, "no selectors": noSelectors,
		"bad selector": badSelector, "negative x509 ttl": negTTL, "negative jwt ttl": negJWT,
		"id with space": badID, "id too long": longID,
	}
	for name, e := range cases {
		res, err := s.CreateEntries(ctxFor(t), []store.Entry{e}, false)
		if err != nil {
			t.Fatalf("%s: CreateEntries(non-atomic) error = %v, want nil", name, err)
		}
		if errkind.Of(res[0].Err) != errkind.InvalidArgument {
			t.Errorf("%s: item error = %v, want kind InvalidArgument", name, res[0].Err)
		}
	}
	if got, _ := s.ListEntries(t.Context(), store.EntryFilter{}); len(got) != 0 {
		t.Errorf("ListEntries() = %d entries after only invalid creates, want 0", len(got))
	}
	if rev := revision(t, s); rev != 0 {
		t.Errorf("Revision() = %d after only invalid creates, want 0", rev)
	}
}

func testCreateDuplicateInBatch(t *testing.T, s *store.Store) {
	a := entry("a", "n1", "unix:uid:1", "unix:gid:2")
	sameSetOtherOrder := entry("a", "n1", "unix:gid:2", "unix:uid:1", "unix:gid:2")
	otherParent := entry("a", "n2", "unix:uid:1", "unix:gid:2")
	withID1, withID2 := entry("b", "n1"), entry("c", "n1")
	withID1.ID, withID2.ID = "same", "same"
	res, err := s.CreateEntries(ctxFor(t), []store.Entry{a, sameSetOtherOrder, otherParent, withID1, withID2}, false)
	must(t, "CreateEntries", err)
	wantKinds := []errkind.Kind{-1, errkind.AlreadyExists, -1, -1, errkind.AlreadyExists}
	for i, r := range res {
		got := errkind.Kind(-1)
		if r.Err != nil {
			got = errkind.Of(r.Err)
		}
		if got != wantKinds[i] {
			t.Errorf("item %d: error = %v, want kind %v (-1 = none)", i, r.Err, wantKinds[i])
		}
	}
	all, err := s.ListEntries(t.Context(), store.EntryFilter{})
	must(t, "ListEntries", err)
	if len(all) != 3 {
		t.Errorf("ListEntries() = %d entries, want 3", len(all))
	}
}

func testCreateDuplicateOfStored(t *testing.T, s *store.Store) {
	first := create(t, s, entry("a", "n1", "unix:uid:1"))[0]
	sameKey := entry("a", "n1", "unix:uid:1")
	sameID := entry("b", "n1")
	sameID.ID = first.ID
	res, err := s.CreateEntries(ctxFor(t), []store.Entry{sameKey, sameID, entry("c", "n1")}, false)
	must(t, "CreateEntries", err)
	wantKind(t, "duplicate key", res[0].Err, errkind.AlreadyExists)
	wantKind(t, "duplicate id", res[1].Err, errkind.AlreadyExists)
	if res[2].Err != nil || res[2].Entry.ID == "" {
		t.Errorf("valid item = %+v, want created", res[2])
	}
	if !strings.Contains(res[0].Err.Error(), first.ID) {
		t.Errorf("duplicate error %q does not name the existing entry %s", res[0].Err, first.ID)
	}
}

func testCreateAtomicRejects(t *testing.T, s *store.Store) {
	bad := entry("bad", "n1")
	bad.Selectors = nil
	res, err := s.CreateEntries(ctxFor(t), []store.Entry{entry("a", "n1"), bad, entry("b", "n1")}, true)
	wantKind(t, "CreateEntries(atomic)", err, errkind.FailedPrecondition)
	if want := "batch rejected: 1 of 3 entries invalid"; !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to say %q", err, want)
	}
	if len(res) != 3 || res[0].Err != nil || res[2].Err != nil || errkind.Of(res[1].Err) != errkind.InvalidArgument {
		t.Errorf("results = %+v, want only item 1 InvalidArgument", res)
	}
	assertEmpty(t, s)
}

func testCreateAtomicRejectsOnStore(t *testing.T, s *store.Store) {
	create(t, s, entry("taken", "n1"))
	rev, nAudit := revision(t, s), len(auditLog(t, s))
	res, err := s.CreateEntries(ctxFor(t), []store.Entry{entry("a", "n1"), entry("taken", "n1"), entry("b", "n1")}, true)
	wantKind(t, "CreateEntries(atomic)", err, errkind.FailedPrecondition)
	wantKind(t, "conflicting item", res[1].Err, errkind.AlreadyExists)
	if res[0].Err != nil || res[2].Err != nil {
		t.Errorf("valid items carry errors: %v, %v", res[0].Err, res[2].Err)
	}
	if got, _ := s.ListEntries(t.Context(), store.EntryFilter{}); len(got) != 1 {
		t.Errorf("ListEntries() = %d entries, want only the 1 created before", len(got))
	}
	if revision(t, s) != rev || len(auditLog(t, s)) != nAudit {
		t.Errorf("a rejected batch changed the revision or the audit log")
	}
}

func assertEmpty(t *testing.T, s *store.Store) {
	t.Helper()
	if got, _ := s.ListEntries(t.Context(), store.EntryFilter{}); len(got) != 0 {
		t.Errorf("ListEntries() = %d entries, want none written", len(got))
	}
	if rev := revision(t, s); rev != 0 {
		t.Errorf("Revision() = %d, want 0 (nothing written)", rev)
	}
	if recs := auditLog(t, s); len(recs) != 0 {
		t.Errorf("audit log has %d records, want none", len(recs))
	}
}

func testCreateNonAtomicPartial(t *testing.T, s *store.Store) {
	bad := entry("bad", "n1")
	bad.X509TTL = -1
	res, err := s.CreateEntries(ctxFor(t), []store.Entry{entry("a", "n1"), bad, entry("b", "n1")}, false)
	must(t, "CreateEntries(non-atomic)", err)
	wantKind(t, "invalid item", res[1].Err, errkind.InvalidArgument)
	for _, i := range []int{0, 2} {
		if res[i].Err != nil {
			t.Fatalf("item %d error = %v", i, res[i].Err)
		}
		if _, err := s.GetEntry(t.Context(), res[i].Entry.ID); err != nil {
			t.Errorf("GetEntry(item %d) error = %v", i, err)
		}
	}
	if res[0].Entry.Revision != res[2].Entry.Revision {
		t.Errorf("one batch, two revisions: %d and %d", res[0].Entry.Revision, res[2].Entry.Revision)
	}
}

func testCreateEmpty(t *testing.T, s *store.Store) {
	res, err := s.CreateEntries(ctxFor(t), nil, true)
	if err != nil || len(res) != 0 {
		t.Fatalf("CreateEntries(nil) = %v, %v, want empty, nil", res, err)
	}
	assertEmpty(t, s)
}

func testCreateAudits(t *testing.T, s *store.Store) {
	ctx := store.WithActor(t.Context(), "admin:uid:0")
	res, err := s.CreateEntries(ctx, []store.Entry{entry("a", "n1"), entry("b", "n1")}, true)
	must(t, "CreateEntries", err)
	recs := auditLog(t, s)
	want := []string{"entry.create " + res[0].Entry.ID, "entry.create " + res[1].Entry.ID}
	if diff := cmp.Diff(want, actions(recs)); diff != "" {
		t.Fatalf("audit (-want +got):\n%s", diff)
	}
	for _, r := range recs {
		if r.Actor != "admin:uid:0" {
			t.Errorf("audit actor = %q, want admin:uid:0", r.Actor)
		}
		if !r.Time.Equal(res[0].Entry.CreatedAt) {
			t.Errorf("audit time = %v, want the entry's CreatedAt %v", r.Time, res[0].Entry.CreatedAt)
		}
	}
	if recs[0].Detail["spiffe_id"] != "spiffe://example.org/a" {
		t.Errorf("audit detail = %v, want spiffe_id", recs[0].Detail)
	}
	// Without an actor the store records "system".
	create(t, s, entry("c", "n1"))
	_, err = s.CreateEntries(t.Context(), []store.Entry{entry("d", "n1")}, true)
	must(t, "CreateEntries", err)
	if recs := auditLog(t, s); recs[len(recs)-1].Actor != store.DefaultActor {
		t.Errorf("actor without WithActor = %q, want %q", recs[len(recs)-1].Actor, store.DefaultActor)
	}
	verifyOK(t, s)
}

func testCreateDoesNotAliasInput(t *testing.T, s *store.Store) {
	in := entry("a", "n1", "unix:uid:2", "unix:uid:1")
	in.Labels = map[string]string{"k": "v"}
	inSels := slices.Clone(in.Selectors)
	got := create(t, s, in)[0]
	if !slices.Equal(in.Selectors, inSels) {
		t.Errorf("CreateEntries reordered the caller's selectors: %v", in.Selectors)
	}
	got.Labels["k"] = "changed"
	if in.Labels["k"] != "v" {
		t.Errorf("the result shares the caller's labels map")
	}
}

func testGetNotFound(t *testing.T, s *store.Store) {
	_, err := s.GetEntry(t.Context(), "nope")
	wantKind(t, "GetEntry(nope)", err, errkind.NotFound)
}

func testListFilters(t *testing.T, s *store.Store) {
	federating := func(e store.Entry, tds ...string) store.Entry {
		for _, td := range tds {
			e.FederatesWith = append(e.FederatesWith, spiffeid.RequireTrustDomainFromString(td))
		}
		return e
	}
	es := create(t, s,
		federating(entry("web", "n1", "unix:uid:1", "unix:gid:1"), "partner.org"),
		federating(entry("web", "n2", "unix:uid:1"), "cloud.org", "partner.org"),
		federating(entry("db", "n1", "unix:uid:2", "unix:gid:1"), "cloud.org"),
		entry("db", "n2", "unix:uid:2", "unix:gid:1", "k8s:ns:prod"),
	)
	ids := func(idx ...int) []string {
		out := make([]string, len(idx))
		for i, j := range idx {
			out[i] = es[j].ID
		}
		slices.Sort(out)
		return out
	}
	cases := []struct {
		name string
		f    store.EntryFilter
		want []string
	}{
		{"all", store.EntryFilter{}, ids(0, 1, 2, 3)},
		{"parent", store.EntryFilter{ParentID: id("spiffe://example.org/node/n1")}, ids(0, 2)},
		{"spiffe id", store.EntryFilter{SPIFFEID: id("spiffe://example.org/db")}, ids(2, 3)},
		{"parent and spiffe id", store.EntryFilter{SPIFFEID: id("spiffe://example.org/db"), ParentID: id("spiffe://example.org/node/n2")}, ids(3)},
		{"one selector", store.EntryFilter{Selectors: sels("unix:gid:1")}, ids(0, 2, 3)},
		{"all of two selectors", store.EntryFilter{Selectors: sels("unix:gid:1", "unix:uid:2")}, ids(2, 3)},
		{"selector superset of entry", store.EntryFilter{Selectors: sels("unix:uid:1", "k8s:ns:prod")}, ids()},
		{"selectors and parent", store.EntryFilter{Selectors: sels("unix:uid:2"), ParentID: id("spiffe://example.org/node/n2")}, ids(3)},
		{"unknown parent", store.EntryFilter{ParentID: id("spiffe://example.org/node/zz")}, ids()},
		{"limit", store.EntryFilter{Limit: 2}, ids(0, 1, 2, 3)[:2]},
		{"federates with", store.EntryFilter{FederatesWith: spiffeid.RequireTrustDomainFromString("partner.org")}, ids(0, 1)},
		{"federates with and parent", store.EntryFilter{FederatesWith: spiffeid.RequireTrustDomainFromString("cloud.org"),
			ParentID: id("spiffe://example.org/node/n1")}, ids(2)},
		{"federates with no entry's", store.EntryFilter{FederatesWith: spiffeid.RequireTrustDomainFromString("part.org")}, ids()},
	}
	for _, c := range cases {
		got, err := s.ListEntries(t.Context(), c.f)
		must(t, "ListEntries("+c.name+")", err)
		var gotIDs []string
		for _, e := range got {
			gotIDs = append(gotIDs, e.ID)
		}
		if diff := cmp.Diff(c.want, gotIDs, cmp.Comparer(func(a, b []string) bool { return slices.Equal(a, b) })); diff != "" {
			t.Errorf("ListEntries(%s) IDs (-want +got):\n%s", c.name, diff)
		}
	}
}

func testListPagination(t *testing.T, s *store.Store) {
	var in []store.Entry
	for i := range 25 {
		e := entry(fmt.Sprintf("w%d", i), "n1")
		// Mixed case and digits: the order must be byte order on every backend.
		e.ID = fmt.Sprintf("%c-%02d", "aBzA0"[i%5], i)
		in = append(in, e)
	}
	create(t, s, in...)
	var got []string
	after := ""
	for {
		page, err := s.ListEntries(t.Context(), store.EntryFilter{After: after, Limit: 7})
		must(t, "ListEntries(page)", err)
		for _, e := range page {
			got = append(got, e.ID)
		}
		if len(page) < 7 {
			break
		}
		after = page[len(page)-1].ID
	}
	var want []string
	for _, e := range in {
		want = append(want, e.ID)
	}
	slices.Sort(want) // byte order
	if !slices.Equal(got, want) {
		t.Errorf("paged IDs = %v, want %v", got, want)
	}
}

func testUpdate(t *testing.T, s *store.Store) {
	orig := create(t, s, entry("a", "n1", "unix:uid:1"))[0]
	must(t, "TouchEntries", s.TouchEntries(t.Context(), []string{orig.ID}, epoch))
	upd := orig
	upd.SPIFFEID = id("spiffe://example.org/a2")
	upd.Selectors = sels("unix:uid:2", "unix:gid:9")
	upd.X509TTL, upd.JWTTTL = time.Hour, time.Minute
	upd.DNSNames = []string{"a2.internal"}
	upd.Admin = true
	upd.Labels = map[string]string{"owner": "x"}
	upd.Hint = "h"
	// Read-only fields given by the caller are ignored.
	upd.CreatedAt = epoch.Add(-time.Hour)
	upd.Revision = 999
	got, err := s.UpdateEntry(ctxFor(t), upd)
	must(t, "UpdateEntry", err)
	if got.Revision != orig.Revision+1 {
		t.Errorf("Revision = %d, want %d", got.Revision, orig.Revision+1)
	}
	if !got.CreatedAt.Equal(orig.CreatedAt) || !got.FirstIssuedAt.Equal(epoch) || !got.LastIssuedAt.Equal(epoch) {
		t.Errorf("UpdateEntry() = %+v, want CreatedAt and issuance times kept", got)
	}
	stored, err := s.GetEntry(t.Context(), orig.ID)
	must(t, "GetEntry", err)
	if diff := cmp.Diff(got, stored, cmpOpts); diff != "" {
		t.Errorf("stored differs from returned (-returned +stored):\n%s", diff)
	}
	if diff := cmp.Diff(sels("unix:gid:9", "unix:uid:2"), stored.Selectors); diff != "" {
		t.Errorf("selectors (-want +got):\n%s", diff)
	}
	// The selector index follows the update.
	if l, _ := s.ListEntries(t.Context(), store.EntryFilter{Selectors: sels("unix:uid:1")}); len(l) != 0 {
		t.Errorf("ListEntries(old selector) = %d entries, want 0", len(l))
	}
	if l, _ := s.ListEntries(t.Context(), store.EntryFilter{Selectors: sels("unix:gid:9")}); len(l) != 1 {
		t.Errorf("ListEntries(new selector) = %d entries, want 1", len(l))
	}
	recs := auditLog(t, s)
	if last := recs[len(recs)-1]; last.Action != "entry.update" || last.Object != orig.ID {
		t.Errorf("last audit = %v, want entry.update %s", last, orig.ID)
	}
}

func testUpdateErrors(t *testing.T, s *store.Store) {
	es := create(t, s, entry("a", "n1"), entry("b", "n1"))
	missing := entry("x", "n1")
	missing.ID = "missing"
	_, err := s.UpdateEntry(ctxFor(t), missing)
	wantKind(t, "UpdateEntry(missing)", err, errkind.NotFound)

	_, err = s.UpdateEntry(ctxFor(t), entry("x", "n1"))
	wantKind(t, "UpdateEntry(no id)", err, errkind.InvalidArgument)

	invalid := es[0]
	invalid.Selectors = nil
	_, err = s.UpdateEntry(ctxFor(t), invalid)
	wantKind(t, "UpdateEntry(invalid)", err, errkind.InvalidArgument)

	clash := es[0]
	clash.SPIFFEID = es[1].SPIFFEID
	rev := revision(t, s)
	_, err = s.UpdateEntry(ctxFor(t), clash)
	wantKind(t, "UpdateEntry(clash)", err, errkind.AlreadyExists)
	if revision(t, s) != rev {
		t.Errorf("a failed update changed the revision")
	}
	// Updating an entry to its own key is fine.
	_, err = s.UpdateEntry(ctxFor(t), es[0])
	must(t, "UpdateEntry(unchanged)", err)
}

func testDelete(t *testing.T, s *store.Store) {
	es := create(t, s, entry("a", "n1"), entry("b", "n1"), entry("c", "n1"))
	rev := revision(t, s)
	errs, err := s.DeleteEntries(ctxFor(t), []string{es[0].ID, "missing", es[2].ID, es[0].ID})
	must(t, "DeleteEntries", err)
	if len(errs) != 4 || errs[0] != nil || errs[2] != nil {
		t.Fatalf("DeleteEntries() = %v, want items 0 and 2 deleted", errs)
	}
	wantKind(t, "delete missing", errs[1], errkind.NotFound)
	wantKind(t, "delete twice", errs[3], errkind.NotFound)
	if revision(t, s) != rev+1 {
		t.Errorf("Revision = %d, want one bump to %d", revision(t, s), rev+1)
	}
	left, err := s.ListEntries(t.Context(), store.EntryFilter{})
	must(t, "ListEntries", err)
	if len(left) != 1 || left[0].ID != es[1].ID {
		t.Errorf("left = %v, want only %s", left, es[1].ID)
	}
	if l, _ := s.ListEntries(t.Context(), store.EntryFilter{Selectors: sels("unix:uid:1000")}); len(l) != 1 {
		t.Errorf("selector index still lists deleted entries: %d", len(l))
	}
	recs := auditLog(t, s)
	got := actions(recs[len(recs)-2:])
	want := []string{"entry.delete " + es[0].ID, "entry.delete " + es[2].ID}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("audit = %v, want %v", got, want)
	}
}

func testDeleteNothingFound(t *testing.T, s *store.Store) {
	errs, err := s.DeleteEntries(ctxFor(t), []string{"x", "y"})
	must(t, "DeleteEntries", err)
	wantKind(t, "item 0", errs[0], errkind.NotFound)
	wantKind(t, "item 1", errs[1], errkind.NotFound)
	assertEmpty(t, s)
	errs, err = s.DeleteEntries(ctxFor(t), nil)
	if err != nil || len(errs) != 0 {
		t.Errorf("DeleteEntries(nil) = %v, %v", errs, err)
	}
}

func testTouch(t *testing.T, s *store.Store) {
	es := create(t, s, entry("a", "n1"), entry("b", "n1"))
	rev, nAudit := revision(t, s), len(auditLog(t, s))
	t1, t2 := epoch, epoch.Add(time.Minute)
	must(t, "TouchEntries", s.TouchEntries(t.Context(), []string{es[0].ID, "unknown", es[0].ID}, t1))
	must(t, "TouchEntries", s.TouchEntries(t.Context(), []string{es[0].ID}, t2))
	must(t, "TouchEntries(older)", s.TouchEntries(t.Context(), []string{es[0].ID}, t1))
	got, err := s.GetEntry(t.Context(), es[0].ID)
	must(t, "GetEntry", err)
	if !got.FirstIssuedAt.Equal(t1) || !got.LastIssuedAt.Equal(t2) {
		t.Errorf("FirstIssuedAt, LastIssuedAt = %v, %v, want %v, %v", got.FirstIssuedAt, got.LastIssuedAt, t1, t2)
	}
	if got.Revision != es[0].Revision || revision(t, s) != rev {
		t.Errorf("TouchEntries changed the revision")
	}
	if len(auditLog(t, s)) != nAudit {
		t.Errorf("TouchEntries wrote audit records")
	}
	other, _ := s.GetEntry(t.Context(), es[1].ID)
	if !other.FirstIssuedAt.IsZero() || !other.LastIssuedAt.IsZero() {
		t.Errorf("untouched entry has issuance times %v, %v", other.FirstIssuedAt, other.LastIssuedAt)
	}
	must(t, "TouchEntries(nil)", s.TouchEntries(t.Context(), nil, t1))
}

func testConcurrentCreates(t *testing.T, s *store.Store) {
	const workers, each = 4, 5
	errc := make(chan error, workers*each)
	for w := range workers {
		go func() {
			for i := range each {
				_, err := s.CreateEntries(ctxFor(t), []store.Entry{entry(fmt.Sprintf("w%d-%d", w, i), "n1")}, true)
				errc <- err
			}
		}()
	}
	for range workers * each {
		must(t, "concurrent CreateEntries", <-errc)
	}
	all, err := s.ListEntries(t.Context(), store.EntryFilter{})
	must(t, "ListEntries", err)
	revs := map[int64]bool{}
	for _, e := range all {
		revs[e.Revision] = true
	}
	if len(all) != workers*each || len(revs) != workers*each || revision(t, s) != workers*each {
		t.Errorf("%d entries with %d distinct revisions, store at %d; want %d of each", len(all), len(revs), revision(t, s), workers*each)
	}
	verifyOK(t, s)
}

// testCreateIDsIncrease: the IDs the store assigns are UUIDv7s that
// increase in byte order in creation order, within a batch and across
// batches, so that bulk creates append to the ID-keyed indexes; an entry
// created with an ID of its own (a random UUID from before) keeps it.
func testCreateIDsIncrease(t *testing.T, s *store.Store) {
	var ids []string
	for b := range 3 {
		in := make([]store.Entry, 100)
		for i := range in {
			in[i] = entry(fmt.Sprintf("ordered/%d/%d", b, i), "n1")
		}
		for _, e := range create(t, s, in...) {
			ids = append(ids, e.ID)
		}
	}
	for i, id := range ids {
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 {
			t.Fatalf("created ID %d = %q (version %d, %v), want a UUIDv7", i, id, u.Version(), err)
		}
		if i > 0 && id <= ids[i-1] {
			t.Fatalf("created ID %d = %q, not after ID %d = %q: want IDs increasing in creation order", i, id, i-1, ids[i-1])
		}
	}
	old := entry("ordered/v4", "n1")
	old.ID = uuid.NewString()
	if got := create(t, s, old)[0]; got.ID != old.ID {
		t.Errorf("created with ID %q, stored as %q", old.ID, got.ID)
	}
	got, err := s.ListEntries(ctxFor(t), store.EntryFilter{ParentID: id("spiffe://example.org/node/n1")})
	if err != nil || len(got) != len(ids)+1 {
		t.Fatalf("ListEntries = %d entries, %v; want %d", len(got), err, len(ids)+1)
	}
}

func testCreateLargeBatch(t *testing.T, s *store.Store) {
	const n = 600 // several statements (or a COPY) per table
	in := make([]store.Entry, n)
	for i := range in {
		in[i] = entry(fmt.Sprintf("svc-%d", i), fmt.Sprintf("n%d", i%7), "k8s:ns:prod", fmt.Sprintf("k8s:sa:svc-%d", i))
	}
	got := create(t, s, in...)
	all, err := s.ListEntries(t.Context(), store.EntryFilter{})
	must(t, "ListEntries", err)
	if len(all) != n {
		t.Fatalf("ListEntries() = %d entries, want %d", len(all), n)
	}
	byID := map[string]store.Entry{}
	for _, e := range all {
		byID[e.ID] = e
	}
	for i, e := range got {
		if diff := cmp.Diff(e, byID[e.ID], cmpOpts); diff != "" {
			t.Fatalf("entry %d stored differently (-created +stored):\n%s", i, diff)
		}
	}
	if l, _ := s.ListEntries(t.Context(), store.EntryFilter{Selectors: sels("k8s:ns:prod")}); len(l) != n {
		t.Errorf("ListEntries(shared selector) = %d, want %d", len(l), n)
	}
	l, _ := s.ListEntries(t.Context(), store.EntryFilter{Selectors: sels("k8s:sa:svc-599")})
	if len(l) != 1 || l[0].SPIFFEID.Path() != "/svc-599" {
		t.Errorf("ListEntries(one selector) = %v, want svc-599", l)
	}
	if rep := verifyOK(t, s); rep.Records != n {
		t.Errorf("audit records = %d, want %d", rep.Records, n)
	}
}

// testCreateDatabaseError makes the database fail in the middle of a batch
// (a trigger) and checks that nothing of the batch remains.
func testCreateDatabaseError(t *testing.T, s *store.Store) {
	if s.Driver() == store.DriverPostgres {
		exec(t, s, `CREATE FUNCTION signet_test_boom() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN IF NEW.value = 'uid:466' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$`)
		exec(t, s, "CREATE TRIGGER boom BEFORE INSERT ON entry_selectors FOR EACH ROW EXECUTE FUNCTION signet_test_boom()")
	} else {
		exec(t, s, "CREATE TRIGGER boom BEFORE INSERT ON entry_selectors WHEN NEW.value = 'uid:466' BEGIN SELECT RAISE(ABORT, 'boom'); END")
	}
	in := make([]store.Entry, 600)
	for i := range in {
		in[i] = entry(fmt.Sprintf("svc-%d", i), "n1", fmt.Sprintf("unix:uid:%d", i))
	}
	_, err := s.CreateEntries(ctxFor(t), in, false)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("CreateEntries() error = %v, want the database's failure", err)
	}
	assertEmpty(t, s)
	// The store is still usable.
	create(t, s, entry("after", "n1"))
	verifyOK(t, s)
}
