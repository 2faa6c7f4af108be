package storetest

import (
	"testing"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var allowanceTests = map[string]func(t *testing.T, s *store.Store){
	"AllowListDisallow": testNodeAllowances,
	"BadInput":          testNodeAllowanceErrors,
}

func testNodeAllowances(t *testing.T, s *store.Store) {
	const hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	if ok, err := s.NodeAllowed(t.Context(), "tpm", hash); err != nil || ok {
		t.Fatalf("NodeAllowed(before) = %v, %v; want false", ok, err)
	}
	a, err := s.AllowNode(ctxFor(t), "tpm", hash)
	must(t, "AllowNode", err)
	again, err := s.AllowNode(ctxFor(t), "tpm", hash)
	must(t, "AllowNode(again)", err)
	if !again.CreatedAt.Equal(a.CreatedAt) {
		t.Errorf("AllowNode(again) changed CreatedAt")
	}
	_, err = s.AllowNode(ctxFor(t), "other", "x")
	must(t, "AllowNode(other)", err)
	if ok, err := s.NodeAllowed(t.Context(), "tpm", hash); err != nil || !ok {
		t.Fatalf("NodeAllowed(after) = %v, %v; want true", ok, err)
	}
	if ok, _ := s.NodeAllowed(t.Context(), "x509pop", hash); ok {
		t.Errorf("an allowance for tpm admits x509pop")
	}
	list, err := s.ListNodeAllowances(t.Context(), "tpm")
	must(t, "ListNodeAllowances", err)
	if len(list) != 1 || list[0].Value != hash {
		t.Errorf("ListNodeAllowances(tpm) = %+v", list)
	}
	if all, _ := s.ListNodeAllowances(t.Context(), ""); len(all) != 2 {
		t.Errorf("ListNodeAllowances() = %d, want 2", len(all))
	}
	page, err := s.ListNodeAllowancesPage(t.Context(), "", store.NodeAllowance{}, 1)
	must(t, "ListNodeAllowancesPage", err)
	if len(page) != 1 || page[0].AttestationType != "other" {
		t.Fatalf("ListNodeAllowancesPage(first, 1) = %+v, want the other allowance", page)
	}
	if page, _ = s.ListNodeAllowancesPage(t.Context(), "", page[0], 1); len(page) != 1 || page[0].Value != hash {
		t.Errorf("ListNodeAllowancesPage(after other) = %+v, want the tpm one", page)
	}
	if page, _ = s.ListNodeAllowancesPage(t.Context(), "", page[0], 1); len(page) != 0 {
		t.Errorf("ListNodeAllowancesPage(after tpm) = %+v, want none", page)
	}
	must(t, "DisallowNode", s.DisallowNode(ctxFor(t), "tpm", hash))
	wantKind(t, "DisallowNode(again)", s.DisallowNode(ctxFor(t), "tpm", hash), errkind.NotFound)
	var actions []string
	for _, r := range auditLog(t, s) {
		actions = append(actions, r.Action)
	}
	if len(actions) != 3 || actions[0] != "node.allow" || actions[2] != "node.disallow" {
		t.Errorf("audit actions = %v, want node.allow (once per new allowance), node.disallow", actions)
	}
}

func testNodeAllowanceErrors(t *testing.T, s *store.Store) {
	for _, c := range []struct{ method, value string }{{"", "x"}, {"TPM", "x"}, {"tpm", ""}, {"tpm", "a b"}, {"tpm", string(make([]byte, 300))}} {
		_, err := s.AllowNode(ctxFor(t), c.method, c.value)
		wantKind(t, "AllowNode("+c.method+")", err, errkind.InvalidArgument)
	}
}
