package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var nodeTests = map[string]func(t *testing.T, s *store.Store){
	"CreateGet":                testNodeCreateGet,
	"CreateErrors":             testNodeCreateErrors,
	"List":                     testNodeList,
	"Admit":                    testNodeAdmit,
	"AdmitNewOnlyOnce":         testNodeAdmitNewOnlyOnce,
	"RenewPromote":             testNodeRenewPromote,
	"Ban":                      testNodeBan,
	"DecisionsSurviveRenewals": testNodeDecisionsSurviveRenewals,
	"Touch":                    testNodeTouch,
	"Delete":                   testNodeDelete,
}

func node(name string) store.Node {
	return store.Node{
		SPIFFEID:        id("spiffe://example.org/agent/join_token/" + name),
		AttestationType: "join_token",
		Selectors:       sels("join_token:" + name),
		SerialNumber:    "0a1b",
		CertNotAfter:    epoch.Add(time.Hour),
	}
}

func testNodeCreateGet(t *testing.T, s *store.Store) {
	in := node("n1")
	in.Selectors = sels("x509pop:subject:cn:n1", "join_token:n1")
	in.Labels = map[string]string{"zone": "a"}
	got, err := s.CreateNode(ctxFor(t), in)
	must(t, "CreateNode", err)
	if got.Revision != 1 || got.CreatedAt.IsZero() || !got.LastSeenAt.Equal(got.CreatedAt) {
		t.Errorf("CreateNode() = %+v, want revision 1, CreatedAt = LastSeenAt set", got)
	}
	stored, err := s.GetNode(t.Context(), in.SPIFFEID)
	must(t, "GetNode", err)
	if diff := cmp.Diff(got, stored, cmpOpts); diff != "" {
		t.Errorf("GetNode() (-created +stored):\n%s", diff)
	}
	if diff := cmp.Diff(sels("join_token:n1", "x509pop:subject:cn:n1"), stored.Selectors); diff != "" {
		t.Errorf("selectors not canonical (-want +got):\n%s", diff)
	}
	recs := auditLog(t, s)
	if len(recs) != 1 || recs[0].Action != "node.attest" || recs[0].Object != in.SPIFFEID.String() ||
		recs[0].Detail["attestation_type"] != "join_token" {
		t.Errorf("audit = %v, want one node.attest", recs)
	}
	_, err = s.GetNode(t.Context(), id("spiffe://example.org/agent/unknown"))
	wantKind(t, "GetNode(unknown)", err, errkind.NotFound)
}

func testNodeCreateErrors(t *testing.T, s *store.Store) {
	_, err := s.CreateNode(ctxFor(t), node("n1"))
	must(t, "CreateNode", err)
	_, err = s.CreateNode(ctxFor(t), node("n1"))
	wantKind(t, "CreateNode(again)", err, errkind.AlreadyExists)
	noID := node("x")
	noID.SPIFFEID = spiffeid.ID{}
	_, err = s.CreateNode(ctxFor(t), noID)
	wantKind(t, "CreateNode(no id)", err, errkind.InvalidArgument)
	noType := node("y")
	noType.AttestationType = ""
	_, err = s.CreateNode(ctxFor(t), noType)
	wantKind(t, "CreateNode(no attestation type)", err, errkind.InvalidArgument)
	badSel := node("z")
	badSel.Selectors = []store.Selector{{Type: "x"}}
	_, err = s.CreateNode(ctxFor(t), badSel)
	wantKind(t, "CreateNode(bad selector)", err, errkind.InvalidArgument)
}

func testNodeList(t *testing.T, s *store.Store) {
	for _, n := range []store.Node{node("c"), node("a"), node("b")} {
		if n.SPIFFEID.Path() == "/agent/join_token/b" {
			n.AttestationType = "x509pop"
			n.Banned = true
		}
		n.LastSeenAt = epoch
		_, err := s.CreateNode(ctxFor(t), n)
		must(t, "CreateNode", err)
	}
	must(t, "TouchNode", s.TouchNode(t.Context(), node("c").SPIFFEID, epoch.Add(time.Hour)))
	yes, no := true, false
	cases := []struct {
		name string
		f    store.NodeFilter
		want []string
	}{
		{"all", store.NodeFilter{}, []string{"a", "b", "c"}},
		{"banned", store.NodeFilter{Banned: &yes}, []string{"b"}},
		{"not banned", store.NodeFilter{Banned: &no}, []string{"a", "c"}},
		{"attestation type", store.NodeFilter{AttestationType: "join_token"}, []string{"a", "c"}},
		{"seen before", store.NodeFilter{SeenBefore: epoch.Add(time.Minute)}, []string{"a", "b"}},
		{"combined", store.NodeFilter{SeenBefore: epoch.Add(time.Minute), Banned: &no}, []string{"a"}},
		{"first page", store.NodeFilter{Limit: 2}, []string{"a", "b"}},
		{"next page", store.NodeFilter{After: node("b").SPIFFEID.String(), Limit: 2}, []string{"c"}},
		{"page with filter", store.NodeFilter{Banned: &no, After: node("a").SPIFFEID.String(), Limit: 1}, []string{"c"}},
	}
	for _, c := range cases {
		got, err := s.ListNodes(t.Context(), c.f)
		must(t, "ListNodes("+c.name+")", err)
		var names []string
		for _, n := range got {
			names = append(names, n.SPIFFEID.Path()[len("/agent/join_token/"):])
		}
		if diff := cmp.Diff(c.want, names); diff != "" {
			t.Errorf("ListNodes(%s) (-want +got):\n%s", c.name, diff)
		}
	}
}

func testNodeAdmit(t *testing.T, s *store.Store) {
	first := node("n1")
	first.Labels = map[string]string{"pool": "blue"}
	orig, err := s.AdmitNode(ctxFor(t), first)
	must(t, "AdmitNode(new)", err)
	if orig.SerialNumber != "0a1b" || orig.Labels["pool"] != "blue" || orig.CreatedAt.IsZero() {
		t.Fatalf("AdmitNode(new) = %+v", orig)
	}
	must(t, "RenewNodeSVID", s.RenewNodeSVID(ctxFor(t), orig.SPIFFEID, "ee", epoch.Add(2*time.Hour)))
	again := node("n1")
	again.SerialNumber = "ff"
	again.AttestationType = "x509pop"
	again.Selectors = sels("x509pop:subject:cn:n1")
	got, err := s.AdmitNode(ctxFor(t), again)
	must(t, "AdmitNode(again)", err)
	want := orig
	want.SerialNumber, want.AttestationType, want.Selectors = "ff", "x509pop", again.Selectors
	want.Revision, want.LastSeenAt = got.Revision, got.LastSeenAt
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("AdmitNode(again) (-want +got):\n%s", diff)
	}
	if got.NewSerialNumber != "" {
		t.Errorf("AdmitNode kept pending serial %q: SVIDs from before a re-attestation must be void", got.NewSerialNumber)
	}
	_, err = s.SetNodeBanned(ctxFor(t), got.SPIFFEID, true)
	must(t, "SetNodeBanned", err)
	_, err = s.AdmitNode(ctxFor(t), again)
	wantKind(t, "AdmitNode(banned)", err, errkind.PermissionDenied)
	stored, err := s.GetNode(t.Context(), got.SPIFFEID)
	must(t, "GetNode", err)
	if !stored.Banned {
		t.Errorf("attestation of a banned node unbanned it")
	}
}

func testNodeRenewPromote(t *testing.T, s *store.Store) {
	n, err := s.AdmitNode(ctxFor(t), node("n1"))
	must(t, "AdmitNode", err)
	must(t, "RenewNodeSVID", s.RenewNodeSVID(ctxFor(t), n.SPIFFEID, "ee", epoch.Add(2*time.Hour)))
	got, err := s.GetNode(t.Context(), n.SPIFFEID)
	must(t, "GetNode", err)
	if got.SerialNumber != "0a1b" || got.NewSerialNumber != "ee" || !got.CertNotAfter.Equal(epoch.Add(2*time.Hour)) {
		t.Fatalf("after renewal: %+v", got)
	}
	ok, err := s.PromoteNodeSerial(ctxFor(t), n.SPIFFEID, "dd", epoch)
	must(t, "PromoteNodeSerial(wrong serial)", err)
	if ok {
		t.Fatalf("PromoteNodeSerial(wrong serial) = true")
	}
	grace := epoch.Add(time.Minute)
	ok, err = s.PromoteNodeSerial(ctxFor(t), n.SPIFFEID, "ee", grace)
	must(t, "PromoteNodeSerial", err)
	if !ok {
		t.Fatalf("PromoteNodeSerial = false, want true")
	}
	got, err = s.GetNode(t.Context(), n.SPIFFEID)
	must(t, "GetNode", err)
	if got.SerialNumber != "ee" || got.NewSerialNumber != "" || got.PrevSerialNumber != "0a1b" || !got.PrevSerialUntil.Equal(grace) {
		t.Errorf("after promotion: %+v", got)
	}
	if ok, _ := s.PromoteNodeSerial(ctxFor(t), n.SPIFFEID, "ee", grace); ok {
		t.Errorf("second PromoteNodeSerial = true: promotion must happen once")
	}
	_, err = s.SetNodeBanned(ctxFor(t), n.SPIFFEID, true)
	must(t, "SetNodeBanned", err)
	wantKind(t, "RenewNodeSVID(banned)", s.RenewNodeSVID(ctxFor(t), n.SPIFFEID, "cc", epoch), errkind.PermissionDenied)
	wantKind(t, "RenewNodeSVID(unknown)", s.RenewNodeSVID(ctxFor(t), id("spiffe://example.org/agent/ghost"), "cc", epoch), errkind.NotFound)
	got, err = s.GetNode(t.Context(), n.SPIFFEID)
	must(t, "GetNode", err)
	if got.PrevSerialNumber != "" || got.NewSerialNumber != "" {
		t.Errorf("ban kept serials other than the current one: %+v", got)
	}
}

func testNodeBan(t *testing.T, s *store.Store) {
	n, err := s.AdmitNode(ctxFor(t), node("n1"))
	must(t, "AdmitNode", err)
	for _, b := range []bool{true, true, false, false} {
		got, err := s.SetNodeBanned(ctxFor(t), n.SPIFFEID, b)
		must(t, "SetNodeBanned", err)
		if got.Banned != b {
			t.Errorf("SetNodeBanned(%v).Banned = %v", b, got.Banned)
		}
	}
	want := []string{"node.attest", "node.ban", "node.unban"}
	var got []string
	for _, r := range auditLog(t, s) {
		got = append(got, r.Action)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit actions (-want +got):\n%s", diff)
	}
	_, err = s.SetNodeBanned(ctxFor(t), id("spiffe://example.org/agent/ghost"), true)
	wantKind(t, "SetNodeBanned(missing)", err, errkind.NotFound)
}

// testNodeDecisionsSurviveRenewals interleaves what an agent does (attest
// again, renew, promote its renewed serial) with what an operator does (ban,
// label) from many goroutines, and checks that no admin decision is lost:
// the last ban stands, every label set is there, and the audit log records
// no unban that nobody asked for.
func testNodeDecisionsSurviveRenewals(t *testing.T, s *store.Store) {
	n, err := s.AdmitNode(ctxFor(t), node("n1"))
	must(t, "AdmitNode", err)
	const rounds = 20
	var wg sync.WaitGroup
	errs := make(chan error, 4*rounds)
	wg.Go(func() { // the agent
		for i := range rounds {
			serial := fmt.Sprintf("%04x", i+1)
			if err := s.RenewNodeSVID(ctxFor(t), n.SPIFFEID, serial, epoch.Add(time.Hour)); err != nil && !errkind.Is(err, errkind.PermissionDenied) {
				errs <- err
			}
			if _, err := s.PromoteNodeSerial(ctxFor(t), n.SPIFFEID, serial, epoch); err != nil {
				errs <- err
			}
			again := node("n1")
			again.SerialNumber = serial
			if _, err := s.AdmitNode(ctxFor(t), again); err != nil && !errkind.Is(err, errkind.PermissionDenied) {
				errs <- err
			}
		}
	})
	wg.Go(func() { // the operator labelling
		for i := range rounds {
			if _, err := s.SetNodeLabels(ctxFor(t), n.SPIFFEID, map[string]string{fmt.Sprintf("k%d", i): "v"}, nil); err != nil {
				errs <- err
			}
		}
	})
	wg.Go(func() { // the operator banning, once, mid-way
		time.Sleep(time.Millisecond)
		if _, err := s.SetNodeBanned(ctxFor(t), n.SPIFFEID, true); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("interleaved node write: %v", err)
	}
	got, err := s.GetNode(t.Context(), n.SPIFFEID)
	must(t, "GetNode", err)
	if !got.Banned {
		t.Errorf("the ban was lost to a concurrent agent write")
	}
	if len(got.Labels) != rounds {
		t.Errorf("labels = %v, want all %d labels set", got.Labels, rounds)
	}
	for _, r := range auditLog(t, s) {
		if r.Action == "node.unban" {
			t.Errorf("audit log records an unban nobody asked for: %+v", r)
		}
	}
}

func testNodeTouch(t *testing.T, s *store.Store) {
	n, err := s.CreateNode(ctxFor(t), node("n1"))
	must(t, "CreateNode", err)
	rev, nAudit := revision(t, s), len(auditLog(t, s))
	later := n.LastSeenAt.Add(time.Minute)
	must(t, "TouchNode", s.TouchNode(t.Context(), n.SPIFFEID, later))
	must(t, "TouchNode(older)", s.TouchNode(t.Context(), n.SPIFFEID, n.LastSeenAt))
	got, err := s.GetNode(t.Context(), n.SPIFFEID)
	must(t, "GetNode", err)
	if !got.LastSeenAt.Equal(later) {
		t.Errorf("LastSeenAt = %v, want %v", got.LastSeenAt, later)
	}
	if revision(t, s) != rev || len(auditLog(t, s)) != nAudit || got.Revision != n.Revision {
		t.Errorf("TouchNode changed the revision or wrote audit records")
	}
	err = s.TouchNode(t.Context(), id("spiffe://example.org/agent/ghost"), later)
	wantKind(t, "TouchNode(unknown)", err, errkind.NotFound)
}

func testNodeDelete(t *testing.T, s *store.Store) {
	n, err := s.CreateNode(ctxFor(t), node("n1"))
	must(t, "CreateNode", err)
	must(t, "DeleteNode", s.DeleteNode(ctxFor(t), n.SPIFFEID))
	_, err = s.GetNode(t.Context(), n.SPIFFEID)
	wantKind(t, "GetNode(deleted)", err, errkind.NotFound)
	wantKind(t, "DeleteNode(again)", s.DeleteNode(ctxFor(t), n.SPIFFEID), errkind.NotFound)
	recs := auditLog(t, s)
	if last := recs[len(recs)-1]; last.Action != "node.evict" || last.Object != n.SPIFFEID.String() {
		t.Errorf("last audit = %v, want node.evict", last)
	}
	if revision(t, s) != 2 {
		t.Errorf("Revision = %d, want 2 (attest, evict)", revision(t, s))
	}
}

func testNodeAdmitNewOnlyOnce(t *testing.T, s *store.Store) {
	const racers = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted, refused := 0, 0
	for range racers {
		wg.Go(func() {
			_, err := s.AdmitNewNode(ctxFor(t), node("tofu"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				admitted++
			case errkind.Is(err, errkind.AlreadyExists):
				refused++
			default:
				t.Errorf("AdmitNewNode: %v", err)
			}
		})
	}
	wg.Wait()
	if admitted != 1 || refused != racers-1 {
		t.Errorf("concurrent first attestations: %d admitted, %d refused; want exactly one admitted", admitted, refused)
	}
	must(t, "DeleteNode", s.DeleteNode(ctxFor(t), node("tofu").SPIFFEID))
	if _, err := s.AdmitNewNode(ctxFor(t), node("tofu")); err != nil {
		t.Errorf("AdmitNewNode after eviction: %v, want admitted again", err)
	}
}
