package server_test

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/testenv"
)

// svidsSigned reads signet_server_svids_signed_total{type="x509",result}.
func svidsSigned(t *testing.T, env *testenv.Env, result string) int {
	t.Helper()
	mfs, err := env.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != "signet_server_svids_signed_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["type"] == "x509" && labels["result"] == result {
				n += int(m.GetCounter().GetValue())
			}
		}
	}
	return n
}

// TestSignX509SVIDsBatchRecords: one batch mixing signed, denied and failed
// items counts each outcome, and leaves one audit record per decision, the
// sign records naming the node, the SPIFFE ID, the certificate's serial (in
// lower-case hex) and its NotAfter; the chain still verifies.
func TestSignX509SVIDsBatchRecords(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	own1 := createEntry(t, env, entry("spiffe://example.org/one", nodeA, false))
	own2 := createEntry(t, env, entry("spiffe://example.org/two", nodeA, false))
	foreign := createEntry(t, env, entry("spiffe://example.org/theirs", nodeB, false))
	_, csr1 := testenv.NewCSR(t)
	_, csr2 := testenv.NewCSR(t)
	_, csr3 := testenv.NewCSR(t)
	resp, err := a.Client.SignX509SVIDs(env.Ctx(), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{
		{EntryId: own1.GetId(), Csr: csr1}, {EntryId: foreign.GetId(), Csr: csr2},
		{EntryId: own2.GetId(), Csr: []byte("garbage")}, {EntryId: own2.GetId(), Csr: csr3}}})
	if err != nil {
		t.Fatalf("SignX509SVIDs: %v", err)
	}
	want := []codes.Code{codes.OK, codes.PermissionDenied, codes.InvalidArgument, codes.OK}
	serials := map[string]*x509.Certificate{} // entry id → leaf
	for i, res := range resp.GetResults() {
		if got := codes.Code(res.GetStatus().GetCode()); got != want[i] {
			t.Fatalf("result %d: %s (%s), want %s", i, got, res.GetStatus().GetMessage(), want[i])
		}
		if want[i] == codes.OK {
			leaf, err := x509.ParseCertificate(res.GetCertChain()[0])
			if err != nil {
				t.Fatal(err)
			}
			serials[res.GetEntryId()] = leaf
		}
	}
	for result, n := range map[string]int{"ok": 2, "denied": 1, "error": 1} {
		if got := svidsSigned(t, env, result); got != n {
			t.Errorf("svids_signed_total{x509,%s} = %d, want %d", result, got, n)
		}
	}

	recs, err := inventoryv1.NewAuditClient(env.AdminConn()).ListAudit(env.Ctx(), &inventoryv1.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	signs, denies := 0, 0
	for _, r := range recs.GetRecords() {
		d := r.GetDetail()
		switch r.GetAction() {
		case "svid.x509.sign":
			signs++
			leaf := serials[r.GetObject()]
			if leaf == nil {
				t.Fatalf("sign record for entry %q, which was not signed", r.GetObject())
			}
			if s := d["serial"]; s != strings.ToLower(leaf.SerialNumber.Text(16)) {
				t.Errorf("sign record serial %q, certificate %x", s, leaf.SerialNumber)
			}
			if d["node"] != nodeA || d["spiffe_id"] != leaf.URIs[0].String() || d["not_after"] != leaf.NotAfter.UTC().Format(time.RFC3339) {
				t.Errorf("sign record detail %v; want node %s, spiffe_id %s, not_after %s", d, nodeA, leaf.URIs[0], leaf.NotAfter.UTC().Format(time.RFC3339))
			}
		case "svid.x509.deny":
			denies++
			if r.GetObject() != foreign.GetId() || d["node"] != nodeA {
				t.Errorf("deny record %s %v; want entry %s, node %s", r.GetObject(), d, foreign.GetId(), nodeA)
			}
		}
	}
	if signs != 2 || denies != 1 {
		t.Errorf("audit: %d sign and %d deny records, want 2 and 1", signs, denies)
	}
	v, err := inventoryv1.NewAuditClient(env.AdminConn()).VerifyAudit(env.Ctx(), &inventoryv1.VerifyAuditRequest{})
	if err != nil || !v.GetOk() {
		t.Errorf("VerifyAudit() = %v, %v; want ok", v, err)
	}
}
