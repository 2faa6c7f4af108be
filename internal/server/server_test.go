package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/apiconv"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/testenv/testclock"
)

const (
	nodeA = "spiffe://example.org/node/a"
	nodeB = "spiffe://example.org/node/b"
)

func createEntry(t *testing.T, env *testenv.Env, e *commonv1.Entry) *commonv1.Entry {
	t.Helper()
	return env.CreateEntry(e)
}

func entry(spiffeID, parent string, admin bool) *commonv1.Entry {
	return &commonv1.Entry{SpiffeId: spiffeID, ParentId: parent, Admin: admin,
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:1000"}}}
}

func sign(t *testing.T, env *testenv.Env, a *testenv.AgentConn, entryID string) (*agentv1.X509SVIDResult, []byte) {
	t.Helper()
	_, csr := testenv.NewCSR(t)
	resp, err := a.Client.SignX509SVIDs(env.Ctx(), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: entryID, Csr: csr}}})
	if err != nil {
		t.Fatalf("SignX509SVIDs: %v", err)
	}
	return resp.GetResults()[0], csr
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if status.Code(err) != want {
		t.Fatalf("%s: error %v, want code %s", what, err, want)
	}
}

func TestAgentSignsOnlyItsNodesEntries(t *testing.T) {
	env := testenv.New(t)
	a, b := env.Attest(nodeA), env.Attest(nodeB)
	e := createEntry(t, env, entry("spiffe://example.org/web", nodeA, false))

	res, _ := sign(t, env, a, e.GetId())
	if codes.Code(res.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("node A signing its own entry: %s", res.GetStatus().GetMessage())
	}
	svid := testenv.SVIDFromChain(t, res.GetCertChain(), nil)
	if id, _, err := x509svid.Verify(svid.Certificates, env.Server.Bundle()); err != nil || id.String() != "spiffe://example.org/web" {
		t.Fatalf("minted svid: Verify = %v, %v", id, err)
	}

	res, _ = sign(t, env, b, e.GetId())
	if codes.Code(res.GetStatus().GetCode()) != codes.PermissionDenied {
		t.Fatalf("node B signing node A's entry: status %v, want PermissionDenied", res.GetStatus())
	}
	res, _ = sign(t, env, a, "no-such-entry")
	if codes.Code(res.GetStatus().GetCode()) != codes.PermissionDenied {
		t.Fatalf("unknown entry: status %v, want PermissionDenied", res.GetStatus())
	}
	_, err := b.Client.SignJWTSVID(env.Ctx(), &agentv1.SignJWTSVIDRequest{EntryId: e.GetId(), Audience: []string{"x"}})
	wantCode(t, "node B minting a JWT for node A's entry", err, codes.PermissionDenied)

	jr, err := a.Client.SignJWTSVID(env.Ctx(), &agentv1.SignJWTSVIDRequest{EntryId: e.GetId(), Audience: []string{"x"}})
	if err != nil {
		t.Fatalf("SignJWTSVID: %v", err)
	}
	if _, err := jwtsvid.ParseAndValidate(jr.GetToken(), env.Server.Bundle(), []string{"x"}); err != nil {
		t.Fatalf("minted jwt does not validate: %v", err)
	}
	_, err = a.Client.SignJWTSVID(env.Ctx(), &agentv1.SignJWTSVIDRequest{EntryId: e.GetId()})
	wantCode(t, "JWT without audience", err, codes.InvalidArgument)

	// The denial is in the audit log.
	recs, err := env.Admin.ListEntries(env.Ctx(), &adminv1.ListEntriesRequest{})
	if err != nil || len(recs.GetEntries()) != 1 || recs.GetEntries()[0].GetLastIssuedAt() == 0 {
		t.Errorf("entry issuance time not recorded: %v %v", recs, err)
	}
}

func TestBadCSRIsInvalidArgument(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	e := createEntry(t, env, entry("spiffe://example.org/web", nodeA, false))
	resp, err := a.Client.SignX509SVIDs(env.Ctx(), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: e.GetId(), Csr: []byte("garbage")}}})
	if err != nil {
		t.Fatal(err)
	}
	if st := resp.GetResults()[0].GetStatus(); codes.Code(st.GetCode()) != codes.InvalidArgument {
		t.Fatalf("garbage CSR: status %v, want InvalidArgument", st)
	}
	_, err = a.Client.SignX509SVIDs(env.Ctx(), &agentv1.SignX509SVIDsRequest{})
	wantCode(t, "empty batch", err, codes.InvalidArgument)
}

func TestJoinTokenIsSingleUse(t *testing.T) {
	env := testenv.New(t)
	tok := env.JoinToken(nodeA)
	if _, err := env.TryAttest(tok); err != nil {
		t.Fatalf("first use: %v", err)
	}
	_, reused := env.TryAttest(tok)
	_, garbage := env.TryAttest("not-a-token")
	wantCode(t, "reused token", reused, codes.PermissionDenied)
	wantCode(t, "garbage token", garbage, codes.PermissionDenied)
	if status.Convert(reused).Message() != status.Convert(garbage).Message() {
		t.Errorf("failures are distinguishable: %q vs %q", status.Convert(reused).Message(), status.Convert(garbage).Message())
	}
}

func TestEvictedAndBannedAgentsAreRefused(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	if _, err := a.Client.Sync(env.Ctx(), &agentv1.SyncRequest{}); err != nil {
		t.Fatalf("Sync: %v", err)
	}

	if _, err := env.Admin.EvictNode(env.Ctx(), &adminv1.NodeRequest{SpiffeId: nodeA}); err != nil {
		t.Fatalf("EvictNode: %v", err)
	}
	_, err := a.Client.Sync(env.Ctx(), &agentv1.SyncRequest{})
	wantCode(t, "evicted agent syncing", err, codes.PermissionDenied)

	// Re-attesting yields a new SVID; the one from before eviction stays dead.
	a2 := env.Attest(nodeA)
	if _, err := a2.Client.Sync(env.Ctx(), &agentv1.SyncRequest{}); err != nil {
		t.Fatalf("re-attested agent: %v", err)
	}
	_, err = a.Client.Sync(env.Ctx(), &agentv1.SyncRequest{})
	wantCode(t, "pre-eviction SVID", err, codes.PermissionDenied)

	if _, err := env.Admin.BanNode(env.Ctx(), &adminv1.NodeRequest{SpiffeId: nodeA}); err != nil {
		t.Fatalf("BanNode: %v", err)
	}
	_, err = a2.Client.Sync(env.Ctx(), &agentv1.SyncRequest{})
	wantCode(t, "banned agent syncing", err, codes.PermissionDenied)
	_, _, renewErr := renew(t, env, a2)
	wantCode(t, "banned agent renewing", renewErr, codes.PermissionDenied)
	_, err = env.TryAttest(env.JoinToken(nodeA))
	wantCode(t, "banned node re-attesting", err, codes.PermissionDenied)

	if _, err := env.Admin.UnbanNode(env.Ctx(), &adminv1.NodeRequest{SpiffeId: nodeA}); err != nil {
		t.Fatalf("UnbanNode: %v", err)
	}
	if _, err := env.TryAttest(env.JoinToken(nodeA)); err != nil {
		t.Fatalf("unbanned node re-attesting: %v", err)
	}
}

func renew(t *testing.T, env *testenv.Env, a *testenv.AgentConn) (*agentv1.RenewAgentResponse, []byte, error) {
	t.Helper()
	_, csr := testenv.NewCSR(t)
	resp, err := a.Client.RenewAgent(env.Ctx(), &agentv1.RenewAgentRequest{Csr: csr})
	return resp, csr, err
}

func TestRenewReplacesTheAgentSVID(t *testing.T) {
	clock := testclock.New(time.Now())
	env := testenv.New(t, func(c *server.Config) { c.Now = clock.Now })
	a := env.Attest(nodeA)
	key, csr := testenv.NewCSR(t)
	resp, err := a.Client.RenewAgent(env.Ctx(), &agentv1.RenewAgentRequest{Csr: csr})
	if err != nil {
		t.Fatalf("RenewAgent: %v", err)
	}
	// Until the renewed SVID is used, the old one still works: a renewal
	// reply lost on the way must not strand the agent.
	if _, err := a.Client.Sync(env.Ctx(), &agentv1.SyncRequest{}); err != nil {
		t.Fatalf("Sync with the old SVID before the new one is used: %v", err)
	}
	renewed := env.Dial(testenv.SVIDFromChain(t, resp.GetSvid().GetCertChain(), key))
	if _, err := renewed.Client.Sync(env.Ctx(), &agentv1.SyncRequest{}); err != nil {
		t.Fatalf("Sync with renewed SVID: %v", err)
	}
	// Calls already in flight on the old connection finish within a short
	// grace; after it the replaced SVID is refused.
	if _, err := a.Client.Sync(env.Ctx(), &agentv1.SyncRequest{}); err != nil {
		t.Fatalf("Sync with the replaced SVID within the grace: %v", err)
	}
	clock.Add(2 * time.Minute)
	_, err = a.Client.Sync(env.Ctx(), &agentv1.SyncRequest{})
	wantCode(t, "Sync with the replaced SVID after the grace", err, codes.PermissionDenied)

	// A renewal whose reply is lost: the agent renews again with the old SVID.
	if _, _, err := renew(t, env, renewed); err != nil {
		t.Fatalf("RenewAgent: %v", err)
	}
	if _, _, err := renew(t, env, renewed); err != nil {
		t.Fatalf("RenewAgent again after a lost reply: %v", err)
	}
}

func TestCallsWithoutSVIDAreUnauthenticated(t *testing.T) {
	env := testenv.New(t)
	anon := env.Dial(nil)
	_, err := anon.Client.Sync(env.Ctx(), &agentv1.SyncRequest{})
	wantCode(t, "Sync without client cert", err, codes.Unauthenticated)
	anonAdmin := adminv1.NewAdminClient(anonConn(t, env))
	_, err = anonAdmin.ListEntries(env.Ctx(), &adminv1.ListEntriesRequest{})
	wantCode(t, "admin over TLS without client cert", err, codes.Unauthenticated)
}

func TestAdminOverTLSNeedsAdminSVID(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	admin := createEntry(t, env, entry("spiffe://example.org/ops", nodeA, true))
	plain := createEntry(t, env, &commonv1.Entry{SpiffeId: "spiffe://example.org/web", ParentId: nodeA,
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:1001"}}})

	_, err := adminv1.NewAdminClient(agentConnRaw(a)).ListEntries(env.Ctx(), &adminv1.ListEntriesRequest{})
	wantCode(t, "agent SVID calling admin", err, codes.PermissionDenied)

	for _, tc := range []struct {
		entry *commonv1.Entry
		want  codes.Code
	}{{admin, codes.OK}, {plain, codes.PermissionDenied}} {
		key, csr := testenv.NewCSR(t)
		resp, err := a.Client.SignX509SVIDs(env.Ctx(), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: tc.entry.GetId(), Csr: csr}}})
		if err != nil {
			t.Fatal(err)
		}
		conn := env.Dial(testenv.SVIDFromChain(t, resp.GetResults()[0].GetCertChain(), key))
		_, err = adminv1.NewAdminClient(agentConnRaw(conn)).ListEntries(env.Ctx(), &adminv1.ListEntriesRequest{})
		wantCode(t, "ListEntries as "+tc.entry.GetSpiffeId(), err, tc.want)
	}
}

func TestSyncIsIncremental(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	e1 := createEntry(t, env, entry("spiffe://example.org/one", nodeA, false))
	createEntry(t, env, entry("spiffe://example.org/other-node", nodeB, false))

	full, err := a.Client.Sync(env.Ctx(), &agentv1.SyncRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !full.GetFull() || len(full.GetEntries()) != 1 || full.GetEntries()[0].GetId() != e1.GetId() || full.GetBundle() == nil {
		t.Fatalf("first Sync = full %v, %d entries, bundle %v; want full with node A's one entry and the bundle",
			full.GetFull(), len(full.GetEntries()), full.GetBundle() != nil)
	}
	digest := apiconv.EntrySetDigest([]string{e1.GetId()})
	seq := full.GetBundle().GetSequence()
	same, err := a.Client.Sync(env.Ctx(), &agentv1.SyncRequest{KnownRevision: full.GetRevision(), EntrySetDigest: digest, KnownBundleSequence: seq})
	if err != nil {
		t.Fatal(err)
	}
	if same.GetFull() || len(same.GetEntries()) != 0 || same.GetEntryIdsSet() || same.GetBundle() != nil {
		t.Fatalf("unchanged Sync sent data: %v", same)
	}
	e2 := createEntry(t, env, entry("spiffe://example.org/two", nodeA, false))
	if _, err := env.Admin.DeleteEntries(env.Ctx(), &adminv1.DeleteEntriesRequest{Ids: []string{e1.GetId()}}); err != nil {
		t.Fatal(err)
	}
	inc, err := a.Client.Sync(env.Ctx(), &agentv1.SyncRequest{KnownRevision: full.GetRevision(), EntrySetDigest: digest, KnownBundleSequence: seq})
	if err != nil {
		t.Fatal(err)
	}
	if inc.GetFull() || len(inc.GetEntries()) != 1 || inc.GetEntries()[0].GetId() != e2.GetId() ||
		!inc.GetEntryIdsSet() || len(inc.GetEntryIds()) != 1 || inc.GetEntryIds()[0] != e2.GetId() {
		t.Fatalf("incremental Sync = %v; want entry two and the id set {two}", inc)
	}
}

func TestCreateEntriesReportsEachItem(t *testing.T) {
	env := testenv.New(t)
	good := entry("spiffe://example.org/good", nodeA, false)
	bad := []*commonv1.Entry{
		entry("not-a-spiffe-id", nodeA, false),
		entry("spiffe://other.org/web", nodeA, false),
		entry("spiffe://example.org/signet/server", nodeA, false),
		{SpiffeId: "spiffe://example.org/nosel", ParentId: nodeA},
		{SpiffeId: "spiffe://example.org/badsel", ParentId: nodeA, Selectors: []*commonv1.Selector{{Type: "UNIX", Value: "uid:1"}}},
		{SpiffeId: "spiffe://example.org/ttl", ParentId: nodeA, X509TtlSeconds: -1, Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:1"}}},
	}
	wantWords := []string{"spiffe_id", "trust domain", "reserved", "selector", "selector type", "x509_ttl_seconds"}

	resp, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: append([]*commonv1.Entry{good}, bad...), Atomic: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.GetResults() {
		if codes.Code(r.GetStatus().GetCode()) == codes.OK {
			t.Errorf("atomic batch item %d succeeded", i)
		}
	}
	list, _ := env.Admin.ListEntries(env.Ctx(), &adminv1.ListEntriesRequest{})
	if len(list.GetEntries()) != 0 {
		t.Fatalf("atomic batch with invalid items wrote %d entries", len(list.GetEntries()))
	}

	resp, err = env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: append([]*commonv1.Entry{good}, bad...)})
	if err != nil {
		t.Fatal(err)
	}
	if codes.Code(resp.GetResults()[0].GetStatus().GetCode()) != codes.OK {
		t.Fatalf("valid item of a non-atomic batch: %v", resp.GetResults()[0].GetStatus())
	}
	for i, r := range resp.GetResults()[1:] {
		st := r.GetStatus()
		if codes.Code(st.GetCode()) != codes.InvalidArgument || !containsFold(st.GetMessage(), wantWords[i]) {
			t.Errorf("bad item %d: status %s %q, want InvalidArgument mentioning %q", i, codes.Code(st.GetCode()), st.GetMessage(), wantWords[i])
		}
	}
	dup, _ := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: []*commonv1.Entry{good}})
	if codes.Code(dup.GetResults()[0].GetStatus().GetCode()) != codes.AlreadyExists {
		t.Errorf("duplicate entry: %v, want AlreadyExists", dup.GetResults()[0].GetStatus())
	}
	_, err = env.Admin.UpdateEntry(env.Ctx(), &adminv1.UpdateEntryRequest{Entry: &commonv1.Entry{Id: "nope"}})
	wantCode(t, "UpdateEntry of unknown id", err, codes.NotFound)
	_, err = env.Admin.ListNodes(env.Ctx(), &adminv1.ListNodesRequest{Filter: "sideways"})
	wantCode(t, "ListNodes with a bad filter", err, codes.InvalidArgument)
}

func TestAuthorityRotationByHand(t *testing.T) {
	env := testenv.New(t)
	before := env.Server.Bundle().X509Authorities()
	prep, err := env.Admin.PrepareAuthority(env.Ctx(), &adminv1.AuthorityRequest{Kind: "x509"})
	if err != nil || prep.GetState() != "prepared" {
		t.Fatalf("PrepareAuthority = %v, %v", prep, err)
	}
	if got := len(env.Server.Bundle().X509Authorities()); got != len(before)+1 {
		t.Fatalf("bundle has %d X.509 authorities after prepare, want %d", got, len(before)+1)
	}
	act, err := env.Admin.ActivateAuthority(env.Ctx(), &adminv1.AuthorityRequest{Kind: "x509"})
	if err != nil || act.GetState() != "active" || act.GetId() != prep.GetId() {
		t.Fatalf("ActivateAuthority = %v, %v", act, err)
	}
	_, err = env.Admin.ActivateAuthority(env.Ctx(), &adminv1.AuthorityRequest{Kind: "x509"})
	wantCode(t, "activate with nothing prepared", err, codes.FailedPrecondition)
	_, err = env.Admin.PrepareAuthority(env.Ctx(), &adminv1.AuthorityRequest{Kind: "rsa"})
	wantCode(t, "bad kind", err, codes.InvalidArgument)

	// SVIDs are now signed by the new authority and verify with the bundle.
	a := env.Attest(nodeA)
	e := createEntry(t, env, entry("spiffe://example.org/web", nodeA, false))
	res, _ := sign(t, env, a, e.GetId())
	svid := testenv.SVIDFromChain(t, res.GetCertChain(), nil)
	if _, _, err := x509svid.Verify(svid.Certificates, env.Server.Bundle()); err != nil {
		t.Fatalf("svid after rotation: %v", err)
	}
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func TestHealthEndpoints(t *testing.T) {
	env := testenv.New(t, func(c *server.Config) { c.HealthAddress = "127.0.0.1:0" })
	base := "http://" + env.Server.HealthAddr().String()
	for path, want := range map[string]string{"/healthz": `"ok"`, "/readyz": `"ready":true`, "/metrics": "signet_server_entry_cache_entries"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %d %s, want 200 containing %s", path, resp.StatusCode, body, want)
		}
	}
}
