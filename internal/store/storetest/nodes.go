package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var nodeTests = map[string]func(t *testing.T, s *store.Store){
	"CreateGet":     testNodeCreateGet,
	"CreateErrors":  testNodeCreateErrors,
	"List":          testNodeList,
	"UpdateAndBan":  testNodeUpdate,
	"UpdateMissing": testNodeUpdateMissing,
	"Touch":         testNodeTouch,
	"Delete":        testNodeDelete,
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

func testNodeUpdate(t *testing.T, s *store.Store) {
	orig, err := s.CreateNode(ctxFor(t), node("n1"))
	must(t, "CreateNode", err)
	upd := orig
	upd.SerialNumber = "ff"
	upd.NewSerialNumber = "ee"
	upd.CertNotAfter = epoch.Add(2 * time.Hour)
	upd.Selectors = sels("join_token:n1", "agent:version:2")
	upd.Labels = map[string]string{"pool": "blue"}
	upd.AttestationType = "x509pop"
	got, err := s.UpdateNode(ctxFor(t), upd)
	must(t, "UpdateNode", err)
	if got.Revision != orig.Revision+1 || !got.CreatedAt.Equal(orig.CreatedAt) || !got.LastSeenAt.Equal(orig.LastSeenAt) {
		t.Errorf("UpdateNode() = %+v, want revision bumped, CreatedAt and LastSeenAt kept", got)
	}
	stored, err := s.GetNode(t.Context(), orig.SPIFFEID)
	must(t, "GetNode", err)
	if diff := cmp.Diff(got, stored, cmpOpts); diff != "" {
		t.Errorf("GetNode() (-updated +stored):\n%s", diff)
	}
	upd.Banned = true
	_, err = s.UpdateNode(ctxFor(t), upd)
	must(t, "UpdateNode(ban)", err)
	_, err = s.UpdateNode(ctxFor(t), upd)
	must(t, "UpdateNode(still banned)", err)
	upd.Banned = false
	_, err = s.UpdateNode(ctxFor(t), upd)
	must(t, "UpdateNode(unban)", err)
	want := []string{"node.attest", "node.update", "node.ban", "node.update", "node.unban"}
	var got2 []string
	for _, r := range auditLog(t, s) {
		got2 = append(got2, r.Action)
	}
	if diff := cmp.Diff(want, got2); diff != "" {
		t.Errorf("audit actions (-want +got):\n%s", diff)
	}
}

func testNodeUpdateMissing(t *testing.T, s *store.Store) {
	_, err := s.UpdateNode(ctxFor(t), node("ghost"))
	wantKind(t, "UpdateNode(missing)", err, errkind.NotFound)
	if revision(t, s) != 0 {
		t.Errorf("a failed update changed the revision")
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
