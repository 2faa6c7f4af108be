package server_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/errkind"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/store/storetest"
	"github.com/signet-id/signet/internal/testenv"
)

// challengeVerifier is a test attestation method: it sends one challenge,
// wants it echoed back reversed, and grants the agent ID named in the
// payload with selectors describing a node in region eu.
type challengeVerifier struct{}

func (challengeVerifier) Name() string { return "test_challenge" }

func (challengeVerifier) Attest(ctx context.Context, payload []byte, c nodeattest.Challenger) (nodeattest.Result, error) {
	nonce := []byte("nonce-1234")
	answer, err := c.Challenge(ctx, nonce)
	if err != nil {
		return nodeattest.Result{}, err
	}
	if !bytes.Equal(answer, reverse(nonce)) {
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied, "wrong answer")
	}
	id, err := spiffeid.FromString(string(payload))
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "payload: %v", err)
	}
	return nodeattest.Result{AgentID: id, Selectors: []model.Selector{
		{Type: "test", Value: "region:eu"}, {Type: "test", Value: "role:web"},
	}}, nil
}

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[len(b)-1-i] = b[i]
	}
	return out
}

// attestWith runs an attestation exchange with any method, answering
// challenges with answer.
func attestWith(t *testing.T, env *testenv.Env, method string, payload, csr []byte, answer func([]byte) []byte) (*agentv1.AgentSVID, error) {
	t.Helper()
	stream, err := env.Dial(nil).Client.AttestAgent(env.Ctx())
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params{Params: &agentv1.AttestParams{
		AttestationType: method, Payload: payload, Csr: csr}}}); err != nil {
		return nil, err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if ch := resp.GetChallenge(); ch != nil {
			if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_ChallengeResponse{
				ChallengeResponse: answer(ch)}}); err != nil {
				return nil, err
			}
			continue
		}
		_ = stream.CloseSend()
		return resp.GetResult(), nil
	}
}

func TestNodeSelectorsFromAttestationDriveAliases(t *testing.T) {
	env := testenv.New(t, func(c *server.Config) { c.NodeVerifiers = []nodeattest.Verifier{challengeVerifier{}} })
	serverID := server.ServerID(env.TrustDomain).String()
	alias := createEntry(t, env, &commonv1.Entry{SpiffeId: "spiffe://example.org/alias/eu-web", ParentId: serverID,
		Selectors: []*commonv1.Selector{{Type: "test", Value: "region:eu"}}})
	_ = createEntry(t, env, &commonv1.Entry{SpiffeId: "spiffe://example.org/alias/us", ParentId: serverID,
		Selectors: []*commonv1.Selector{{Type: "test", Value: "region:us"}}})
	viaAlias := createEntry(t, env, entry("spiffe://example.org/eu/web", alias.GetSpiffeId(), false))
	usOnly := createEntry(t, env, entry("spiffe://example.org/us/web", "spiffe://example.org/alias/us", false))

	key, csr := testenv.NewCSR(t)
	if _, err := attestWith(t, env, "test_challenge", []byte(nodeA), csr, func(b []byte) []byte { return b }); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("wrong challenge answer: %v, want PermissionDenied", err)
	}
	res, err := attestWith(t, env, "test_challenge", []byte(nodeA), csr, reverse)
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	node, err := env.Admin.GetNode(env.Ctx(), &adminv1.GetNodeRequest{SpiffeId: nodeA})
	if err != nil {
		t.Fatal(err)
	}
	if node.GetAttestationType() != "test_challenge" || len(node.GetSelectors()) != 2 {
		t.Fatalf("stored node = %v, want method test_challenge with 2 selectors", node)
	}
	a := env.Dial(testenv.SVIDFromChain(t, res.GetCertChain(), key))
	sync, err := a.Client.Sync(env.Ctx(), &agentv1.SyncRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range sync.GetEntries() {
		got = append(got, e.GetSpiffeId())
	}
	if len(got) != 1 || got[0] != viaAlias.GetSpiffeId() {
		t.Fatalf("synced entries = %v, want only %s (through the eu alias)", got, viaAlias.GetSpiffeId())
	}
	if r, _ := sign(t, env, a, viaAlias.GetId()); codes.Code(r.GetStatus().GetCode()) != codes.OK {
		t.Errorf("sign through alias: %v", r.GetStatus())
	}
	if r, _ := sign(t, env, a, usOnly.GetId()); codes.Code(r.GetStatus().GetCode()) != codes.PermissionDenied {
		t.Errorf("sign for another alias's entry: %v, want PermissionDenied", r.GetStatus())
	}
}

func TestGarbageNeverBurnsAJoinToken(t *testing.T) {
	env := testenv.New(t)
	tok := env.JoinToken(nodeA)
	for _, csr := range [][]byte{nil, []byte("not a csr")} {
		_, err := attestWith(t, env, jointoken.Name, []byte(tok), csr, nil)
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("attest with csr %q: %v, want InvalidArgument", csr, err)
		}
	}
	if _, err := env.TryAttest(tok); err != nil {
		t.Fatalf("the token was spent by a request that could not succeed: %v", err)
	}
}

func TestUnknownAttestationMethodNamesTheEnabledOnes(t *testing.T) {
	env := testenv.New(t)
	_, csr := testenv.NewCSR(t)
	_, err := attestWith(t, env, "tpm", []byte("x"), csr, nil)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "it accepts agent_reauth, join_token") {
		t.Fatalf("unknown method: %v, want InvalidArgument naming join_token", err)
	}
}

func TestJoinTokenCanBeDisabled(t *testing.T) {
	var off yaml.Node
	if err := yaml.Unmarshal([]byte("{enabled: false}"), &off); err != nil {
		t.Fatal(err)
	}
	env := testenv.New(t, func(c *server.Config) {
		c.NodeAttestors = map[string]yaml.Node{"join_token": *off.Content[0]}
		c.NodeVerifiers = []nodeattest.Verifier{challengeVerifier{}}
	})
	_, csr := testenv.NewCSR(t)
	_, err := attestWith(t, env, jointoken.Name, []byte("whatever-token"), csr, nil)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "not enabled") {
		t.Fatalf("join_token when disabled: %v, want InvalidArgument saying it is not enabled", err)
	}

	cfg := server.Config{TrustDomain: env.TrustDomain, DataDir: t.TempDir(), BindAddress: "127.0.0.1:0",
		NodeAttestors: map[string]yaml.Node{"join_token": *off.Content[0]}}
	if _, err := server.New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "every method that admits new nodes is disabled") {
		t.Errorf("server.New with every method disabled = %v, want an error saying so", err)
	}
	var typo yaml.Node
	_ = yaml.Unmarshal([]byte("{enabeld: false}"), &typo)
	cfg.DataDir = t.TempDir()
	cfg.NodeAttestors = map[string]yaml.Node{"join_token": *typo.Content[0], "tmp": {}}
	_, err = server.New(t.Context(), cfg)
	for _, want := range []string{"node_attestors.join_token.enabeld is not a known key: did you mean node_attestors.join_token.enabled?", "node_attestors.tmp: unknown node attestor: use one of agent_reauth, aws_iid, azure_msi, gcp_iit, join_token, k8s_psat, sshpop, tpm, x509pop"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("server.New with bad node_attestors = %v, want %q (every problem at once)", err, want)
		}
	}
}

// TestAttestationFloodDoesNotStopSigning floods the attestation method from
// 50 connections with garbage (BenchmarkSigningUnderAttestationFlood uses
// 200 and measures the rate) while a legitimate agent keeps getting
// SVIDs signed and an admin keeps writing entries.
func TestAttestationFloodDoesNotStopSigning(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	e := createEntry(t, env, entry("spiffe://example.org/web", nodeA, false))

	ctx, cancel := context.WithCancel(env.Ctx())
	var wg sync.WaitGroup
	var sent, throttled atomic.Int64
	for i := range 50 {
		c := env.Dial(nil)
		wg.Go(func() {
			for range 20 { // bounded: at most 1,000 garbage attestations
				if ctx.Err() != nil {
					return
				}
				stream, err := c.Client.AttestAgent(ctx)
				if err != nil {
					return
				}
				garbage := bytes.Repeat([]byte{byte(i)}, 1024)
				_ = stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params{Params: &agentv1.AttestParams{
					AttestationType: jointoken.Name, Payload: garbage, Csr: garbage}}})
				_, err = stream.Recv()
				sent.Add(1)
				if status.Code(err) == codes.ResourceExhausted {
					throttled.Add(1)
				}
			}
		})
	}
	for i := range 10 {
		if r, _ := sign(t, env, a, e.GetId()); codes.Code(r.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("signing during the flood: %v", r.GetStatus())
		}
		createEntry(t, env, entry(fmt.Sprintf("spiffe://example.org/flood/%d", i), nodeA, false))
	}
	cancel()
	wg.Wait()
	if throttled.Load() == 0 {
		t.Errorf("%d garbage attestations from one address and none throttled", sent.Load())
	}
}

// TestAdminDecisionsSurviveAgentTraffic interleaves an agent's renewals and
// syncs with `agent ban` and `agent label` through the real APIs: the ban
// and labels stand, and nobody unbanned the node.
func TestAdminDecisionsSurviveAgentTraffic(t *testing.T) {
	for _, driver := range storeDrivers(t) {
		t.Run(driver.name, func(t *testing.T) {
			env := testenv.New(t, driver.opt)
			a := env.Attest(nodeA)
			inv := inventoryv1.NewInventoryClient(env.AdminConn())
			var wg sync.WaitGroup
			stop := make(chan struct{})
			wg.Go(func() { // the agent, renewing and syncing
				cur := a
				for {
					select {
					case <-stop:
						return
					default:
					}
					key, csr := testenv.NewCSR(t)
					resp, err := cur.Client.RenewAgent(env.Ctx(), &agentv1.RenewAgentRequest{Csr: csr})
					if err != nil {
						return // banned
					}
					cur = env.Dial(testenv.SVIDFromChain(t, resp.GetSvid().GetCertChain(), key))
					if _, err := cur.Client.Sync(env.Ctx(), &agentv1.SyncRequest{}); err != nil {
						return
					}
				}
			})
			for i := range 10 {
				if _, err := inv.SetNodeLabels(env.Ctx(), &inventoryv1.SetNodeLabelsRequest{SpiffeId: nodeA,
					Set: map[string]string{fmt.Sprintf("k%d", i): "v"}}); err != nil {
					t.Fatalf("SetNodeLabels: %v", err)
				}
				if i == 5 {
					if _, err := env.Admin.BanNode(env.Ctx(), &adminv1.NodeRequest{SpiffeId: nodeA}); err != nil {
						t.Fatalf("BanNode: %v", err)
					}
				}
			}
			close(stop)
			wg.Wait()
			n, err := env.Admin.GetNode(env.Ctx(), &adminv1.GetNodeRequest{SpiffeId: nodeA})
			if err != nil {
				t.Fatal(err)
			}
			if !n.GetBanned() || len(n.GetLabels()) != 10 {
				t.Errorf("node after the interleaving: banned=%v labels=%v, want banned with 10 labels", n.GetBanned(), n.GetLabels())
			}
			audit := inventoryv1.NewAuditClient(env.AdminConn())
			recs, err := audit.ListAudit(env.Ctx(), &inventoryv1.ListAuditRequest{Action: "node.unban"})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs.GetRecords()) != 0 {
				t.Errorf("audit log records an unban nobody asked for: %v", recs.GetRecords())
			}
		})
	}
}

// storeDriver configures the server under test for one store backend.
type storeDriver struct {
	name string
	opt  testenv.Option
}

// storeDrivers returns SQLite and PostgreSQL (a fresh schema; skipped when
// unreachable outside CI).
func storeDrivers(t *testing.T) []storeDriver {
	return []storeDriver{
		{"sqlite", func(*server.Config) {}},
		{"postgres", func(c *server.Config) { c.StoreDriver, c.StoreDSN = "postgres", storetest.PostgresDSN(t) }},
	}
}

// TestSyncRecordsServedSVIDs: what an agent reports as served reaches the
// entries of its own node, clamped to the server's clock, and nobody else's.
func TestSyncRecordsServedSVIDs(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	mine := createEntry(t, env, entry("spiffe://example.org/web", nodeA, false))
	theirs := createEntry(t, env, entry("spiffe://example.org/db", nodeB, false))
	now := time.Now().Unix()
	served := []*agentv1.ServedEntry{
		{EntryId: mine.GetId(), FirstServedAt: now - 60, LastServedAt: now + 3600}, // the future is clamped
		{EntryId: theirs.GetId(), FirstServedAt: now - 60, LastServedAt: now},      // not this node's
		{EntryId: "unknown", FirstServedAt: now, LastServedAt: now},
	}
	if _, err := a.Client.Sync(env.Ctx(), &agentv1.SyncRequest{Served: served}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	get := func(id string) *commonv1.Entry {
		e, err := env.Admin.GetEntry(env.Ctx(), &adminv1.GetEntryRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if e := get(mine.GetId()); e.GetFirstServedAt() != now-60 || e.GetLastServedAt() > time.Now().Unix() || e.GetLastServedAt() < now {
		t.Errorf("own entry served = %d..%d, want %d..now", e.GetFirstServedAt(), e.GetLastServedAt(), now-60)
	}
	if e := get(theirs.GetId()); e.GetLastServedAt() != 0 {
		t.Errorf("another node's entry was marked served by this node")
	}
	tooMany := make([]*agentv1.ServedEntry, 1001)
	for i := range tooMany {
		tooMany[i] = &agentv1.ServedEntry{EntryId: mine.GetId(), FirstServedAt: now, LastServedAt: now}
	}
	_, err := a.Client.Sync(env.Ctx(), &agentv1.SyncRequest{Served: tooMany})
	wantCode(t, "Sync with 1,001 served entries", err, codes.InvalidArgument)
}
