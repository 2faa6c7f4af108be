package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var federationTests = map[string]func(t *testing.T, s *store.Store){
	"CreateGetListDelete": testFederationCRUD,
	"Invalid":             testFederationInvalid,
	"RefreshOutcomes":     testFederationRefreshOutcomes,
	"ClaimOnce":           testFederationClaimOnce,
}

func federation(td string) store.Federation {
	return store.Federation{
		TrustDomain:       spiffeid.RequireTrustDomainFromString(td),
		BundleEndpointURL: "https://" + td + ":8443/bundle",
		Profile:           store.ProfileHTTPSSPIFFE,
		EndpointSPIFFEID:  spiffeid.RequireFromString("spiffe://" + td + "/signet/server"),
		CreatedAt:         epoch,
	}
}

func testFederationCRUD(t *testing.T, s *store.Store) {
	a := federation("partner.org")
	a.Bundle, a.BundleSequence = []byte(`{"keys":[]}`), 3
	b := federation("cloud.org")
	b.Profile, b.EndpointSPIFFEID = store.ProfileHTTPSWeb, spiffeid.ID{}
	rev, nAudit := revision(t, s), len(auditLog(t, s))
	must(t, "CreateFederation(a)", s.CreateFederation(ctxFor(t), a))
	must(t, "CreateFederation(b)", s.CreateFederation(ctxFor(t), b))
	if got := revision(t, s); got != rev+2 {
		t.Errorf("revision after two creates = %d, want %d", got, rev+2)
	}
	log := auditLog(t, s)[nAudit:]
	if len(log) != 2 || log[0].Action != "federation.create" || log[0].Object != "partner.org" || log[0].Detail["profile"] != store.ProfileHTTPSSPIFFE {
		t.Errorf("audit after creates = %+v, want two federation.create records", log)
	}
	err := s.CreateFederation(ctxFor(t), a)
	if errkind.Of(err) != errkind.AlreadyExists {
		t.Errorf("CreateFederation(again) error = %v, want AlreadyExists", err)
	}
	got, err := s.GetFederation(t.Context(), a.TrustDomain)
	must(t, "GetFederation", err)
	a.NextRefresh = epoch // defaults to CreatedAt: due at once
	if diff := cmp.Diff(a, got, cmpOpts); diff != "" {
		t.Errorf("GetFederation() (-want +got):\n%s", diff)
	}
	page, err := s.ListFederationsPage(t.Context(), "", 1)
	if err != nil || len(page) != 1 || page[0].TrustDomain.Name() != "cloud.org" {
		t.Fatalf("ListFederationsPage(first, 1) = %+v, %v; want cloud.org", page, err)
	}
	page, err = s.ListFederationsPage(t.Context(), "cloud.org", 1)
	if err != nil || len(page) != 1 || page[0].TrustDomain.Name() != "partner.org" {
		t.Fatalf("ListFederationsPage(after cloud.org, 1) = %+v, %v; want partner.org", page, err)
	}
	if page, err = s.ListFederationsPage(t.Context(), "partner.org", 1); err != nil || len(page) != 0 {
		t.Fatalf("ListFederationsPage(after partner.org) = %+v, %v; want none", page, err)
	}
	list, err := s.ListFederations(t.Context())
	must(t, "ListFederations", err)
	if len(list) != 2 || list[0].TrustDomain.Name() != "cloud.org" || list[1].TrustDomain.Name() != "partner.org" {
		t.Errorf("ListFederations() = %+v, want cloud.org then partner.org", list)
	}
	if list[0].Bundle != nil || !list[0].EndpointSPIFFEID.IsZero() {
		t.Errorf("ListFederations()[0] = %+v, want no bundle and no endpoint ID", list[0])
	}
	must(t, "DeleteFederation", s.DeleteFederation(ctxFor(t), a.TrustDomain))
	if _, err := s.GetFederation(t.Context(), a.TrustDomain); errkind.Of(err) != errkind.NotFound {
		t.Errorf("GetFederation(deleted) error = %v, want NotFound", err)
	}
	if err := s.DeleteFederation(ctxFor(t), a.TrustDomain); errkind.Of(err) != errkind.NotFound {
		t.Errorf("DeleteFederation(again) error = %v, want NotFound", err)
	}
	if last := auditLog(t, s); last[len(last)-1].Action != "federation.delete" {
		t.Errorf("last audit action = %q, want federation.delete", last[len(last)-1].Action)
	}
}

func testFederationInvalid(t *testing.T, s *store.Store) {
	for name, tc := range map[string]struct {
		mut   func(*store.Federation)
		field string
	}{
		"no trust domain": {func(f *store.Federation) { f.TrustDomain = spiffeid.TrustDomain{} }, "trust_domain"},
		"no url":          {func(f *store.Federation) { f.BundleEndpointURL = "" }, "bundle_endpoint_url"},
		"bad profile":     {func(f *store.Federation) { f.Profile = "https_magic" }, "profile"},
		"no endpoint id":  {func(f *store.Federation) { f.EndpointSPIFFEID = spiffeid.ID{} }, "endpoint_spiffe_id"},
	} {
		f := federation("partner.org")
		tc.mut(&f)
		err := s.CreateFederation(ctxFor(t), f)
		if errkind.Of(err) != errkind.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("CreateFederation(%s) error = %v, want InvalidArgument naming %s", name, err, tc.field)
		}
	}
}

func testFederationRefreshOutcomes(t *testing.T, s *store.Store) {
	f := federation("partner.org")
	must(t, "CreateFederation", s.CreateFederation(ctxFor(t), f))
	td := f.TrustDomain
	nAudit := len(auditLog(t, s))
	at := epoch.Add(time.Minute)
	must(t, "RecordFederationBundle", s.RecordFederationBundle(ctxFor(t), td, []byte(`{"keys":[1]}`), 7, at, at.Add(5*time.Minute)))
	// The same bundle again is not a change: not audited.
	must(t, "RecordFederationBundle(same)", s.RecordFederationBundle(ctxFor(t), td, []byte(`{"keys":[1]}`), 7, at, at.Add(5*time.Minute)))
	if log := auditLog(t, s)[nAudit:]; len(log) != 1 || log[0].Action != "federation.bundle_update" || log[0].Detail["bundle_sequence"] != "7" {
		t.Errorf("audit after bundle updates = %+v, want one federation.bundle_update", log)
	}
	failAt := at.Add(5 * time.Minute)
	must(t, "RecordFederationError", s.RecordFederationError(t.Context(), td, "fetch: connection refused", failAt, failAt.Add(10*time.Second)))
	must(t, "RecordFederationError", s.RecordFederationError(t.Context(), td, "fetch: connection refused", failAt, failAt.Add(20*time.Second)))
	got, err := s.GetFederation(t.Context(), td)
	must(t, "GetFederation", err)
	if string(got.Bundle) != `{"keys":[1]}` || got.BundleSequence != 7 || !got.LastRefresh.Equal(at) || !got.LastAttempt.Equal(failAt) ||
		got.LastError != "fetch: connection refused" || got.Failures != 2 || !got.NextRefresh.Equal(failAt.Add(20*time.Second)) {
		t.Errorf("GetFederation() after failures = %+v, want the last good bundle kept, 2 failures and the error", got)
	}
	must(t, "RecordFederationBundle", s.RecordFederationBundle(ctxFor(t), td, []byte(`{"keys":[2]}`), 8, failAt, failAt.Add(time.Minute)))
	got, err = s.GetFederation(t.Context(), td)
	must(t, "GetFederation", err)
	if got.Failures != 0 || got.LastError != "" || got.BundleSequence != 8 {
		t.Errorf("GetFederation() after success = %+v, want the error cleared", got)
	}
	if err := s.RecordFederationBundle(ctxFor(t), td, nil, 9, at, at); errkind.Of(err) != errkind.InvalidArgument {
		t.Errorf("RecordFederationBundle(empty) error = %v, want InvalidArgument", err)
	}
	other := spiffeid.RequireTrustDomainFromString("other.org")
	if err := s.RecordFederationBundle(ctxFor(t), other, []byte("{}"), 1, at, at); errkind.Of(err) != errkind.NotFound {
		t.Errorf("RecordFederationBundle(unknown) error = %v, want NotFound", err)
	}
	if err := s.RecordFederationError(t.Context(), other, "x", at, at); errkind.Of(err) != errkind.NotFound {
		t.Errorf("RecordFederationError(unknown) error = %v, want NotFound", err)
	}
	must(t, "RescheduleFederation", s.RescheduleFederation(t.Context(), td, epoch))
	if got, _ := s.GetFederation(t.Context(), td); !got.NextRefresh.Equal(epoch) {
		t.Errorf("NextRefresh after reschedule = %v, want %v", got.NextRefresh, epoch)
	}
}

func testFederationClaimOnce(t *testing.T, s *store.Store) {
	f := federation("partner.org")
	must(t, "CreateFederation", s.CreateFederation(ctxFor(t), f))
	const n = 8
	won := make(chan bool, n)
	for range n {
		go func() {
			ok, err := s.ClaimFederation(t.Context(), f.TrustDomain, epoch, epoch.Add(time.Minute))
			if err != nil {
				t.Errorf("ClaimFederation error = %v", err)
			}
			won <- ok
		}()
	}
	wins := 0
	for range n {
		if <-won {
			wins++
		}
	}
	if wins != 1 {
		t.Errorf("%d concurrent ClaimFederation calls won %d times, want 1", n, wins)
	}
}
