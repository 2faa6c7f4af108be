package agent_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/agent"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/testenv"
)

// These tests run agents whose Sync poll is an hour apart: whatever they
// learn within the test, they learned over the Watch push stream.

// pushOnly starts an agent for nodeID that only polls hourly.
func pushOnly(env *testenv.Env, node string) *testenv.Agent {
	a := env.StartAgent(node, func(c *agent.Config) { c.SyncInterval = time.Hour })
	a.AwaitReady()
	return a
}

// serialOf waits for the agent to hold an X509-SVID for entryID and
// returns its serial.
func serialOf(t *testing.T, a *testenv.Agent, entryID string) string {
	t.Helper()
	var serial string
	testenv.WaitFor(t, 10*time.Second, "an x509-svid for the entry", func() error {
		if serial = a.SVIDSerials()[entryID]; serial == "" {
			return errors.New("none yet")
		}
		return nil
	})
	return serial
}

func TestPushEntryDelete(t *testing.T) {
	env := testenv.New(t)
	e := env.CreateEntry(entry("/web"))
	a := pushOnly(env, nodeID)
	testenv.WaitFor(t, 10*time.Second, "serving /web", serving(t, a, "spiffe://example.org/web"))
	// An entry created after the first sync arrives by push too.
	env.CreateEntry(entry("/db"))
	testenv.WaitFor(t, 10*time.Second, "serving /db too", serving(t, a, "spiffe://example.org/db", "spiffe://example.org/web"))
	env.DeleteEntry(e.GetId())
	testenv.WaitFor(t, 10*time.Second, "/web dropped after entry delete", serving(t, a, "spiffe://example.org/db"))
}

func TestPushRevokeSerial(t *testing.T) {
	env := testenv.New(t)
	e := env.CreateEntry(entry("/web"))
	a := pushOnly(env, nodeID)
	other := pushOnly(env, "spiffe://example.org/node/b") // holds no SVID; must not be disturbed
	old := serialOf(t, a, e.GetId())

	resp, err := env.Admin.RevokeSVIDs(env.Ctx(), &adminv1.RevokeSVIDsRequest{Target: &adminv1.RevokeSVIDsRequest_Serial{Serial: strings.ToUpper(old)}})
	if err != nil {
		t.Fatalf("RevokeSVIDs(serial): %v", err)
	}
	if len(resp.GetRevocations()) != 1 || resp.GetRevocations()[0].GetSerial() != old || resp.GetRevocations()[0].GetSpiffeId() != "spiffe://example.org/web" {
		t.Fatalf("RevokeSVIDs = %v, want the revocation of %s", resp, old)
	}
	// The agent drops the revoked SVID and gets a fresh one: the stolen
	// key dies, the workload keeps working.
	testenv.WaitFor(t, 10*time.Second, "a fresh x509-svid", func() error {
		if s := a.SVIDSerials()[e.GetId()]; s == "" || s == old {
			return fmt.Errorf("holding %q", s)
		}
		return nil
	})
	if a.ServesSerial(old) {
		t.Fatalf("agent still serves revoked serial %s", old)
	}
	testenv.WaitFor(t, 10*time.Second, "serving /web again", serving(t, a, "spiffe://example.org/web"))
	select {
	case <-other.Done():
		t.Fatal("an unaffected agent stopped")
	default:
	}
	list, err := env.Admin.ListSVIDRevocations(env.Ctx(), &adminv1.ListSVIDRevocationsRequest{})
	if err != nil || len(list.GetRevocations()) != 1 {
		t.Fatalf("ListSVIDRevocations = %v, %v; want the one revocation", list, err)
	}
}

func TestPushRevokeJWTSVIDs(t *testing.T) {
	env := testenv.New(t)
	env.CreateEntry(entry("/web"))
	a := pushOnly(env, nodeID)
	addr := workloadapi.WithAddr("unix://" + a.SocketPath())
	tok, err := workloadapi.FetchJWTSVID(ctx(t), jwtsvid.Params{Audience: "db"}, addr)
	if err != nil {
		t.Fatalf("FetchJWTSVID: %v", err)
	}
	if _, err := workloadapi.ValidateJWTSVID(ctx(t), tok.Marshal(), "db", addr); err != nil {
		t.Fatalf("ValidateJWTSVID before revocation: %v", err)
	}
	if _, err := env.Admin.RevokeSVIDs(env.Ctx(), &adminv1.RevokeSVIDsRequest{Target: &adminv1.RevokeSVIDsRequest_SpiffeId{SpiffeId: "spiffe://example.org/web"}}); err != nil {
		t.Fatalf("RevokeSVIDs(spiffe_id): %v", err)
	}
	testenv.WaitFor(t, 10*time.Second, "ValidateJWTSVID refuses the revoked token", func() error {
		_, err := workloadapi.ValidateJWTSVID(ctx(t), tok.Marshal(), "db", addr)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "revoked") {
			return fmt.Errorf("ValidateJWTSVID = %v, want InvalidArgument (revoked)", err)
		}
		return nil
	})
	// A token minted after the revocation's second is good again.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
	fresh, err := workloadapi.FetchJWTSVID(ctx(t), jwtsvid.Params{Audience: "db"}, addr)
	if err != nil {
		t.Fatalf("FetchJWTSVID after revocation: %v", err)
	}
	if fresh.Marshal() == tok.Marshal() {
		t.Fatal("the agent served the revoked JWT-SVID again")
	}
	if _, err := workloadapi.ValidateJWTSVID(ctx(t), fresh.Marshal(), "db", addr); err != nil {
		t.Fatalf("ValidateJWTSVID(fresh token): %v", err)
	}
}

func TestPushBanStopsServing(t *testing.T) {
	env := testenv.New(t)
	env.CreateEntry(entry("/web"))
	a := pushOnly(env, nodeID)
	testenv.WaitFor(t, 10*time.Second, "serving /web", serving(t, a, "spiffe://example.org/web"))
	if _, err := env.Admin.BanNode(env.Ctx(), &adminv1.NodeRequest{SpiffeId: nodeID}); err != nil {
		t.Fatalf("BanNode: %v", err)
	}
	select {
	case <-a.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a banned agent kept running")
	}
	if err := a.Wait(time.Second); !errors.Is(err, agent.ErrEvicted) {
		t.Fatalf("Run = %v, want ErrEvicted", err)
	}
}

func TestPushRevokedAgentSVIDIsRefused(t *testing.T) {
	env := testenv.New(t)
	conn := env.Attest("spiffe://example.org/node/raw")
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.Client.Sync(c, &agentv1.SyncRequest{}); err != nil {
		t.Fatalf("Sync before revocation: %v", err)
	}
	serial := strings.ToLower(conn.SVID.Certificates[0].SerialNumber.Text(16))
	if _, err := env.Admin.RevokeSVIDs(env.Ctx(), &adminv1.RevokeSVIDsRequest{Target: &adminv1.RevokeSVIDsRequest_Serial{Serial: serial}}); err != nil {
		t.Fatalf("RevokeSVIDs(agent serial): %v", err)
	}
	for _, call := range []func() error{
		func() error { _, err := conn.Client.Sync(c, &agentv1.SyncRequest{}); return err },
		func() error {
			_, err := conn.Client.RenewAgent(c, &agentv1.RenewAgentRequest{Csr: []byte{1}})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("call with a revoked agent svid = %v, want PermissionDenied", err)
		}
	}
}

func TestRevokeSVIDsBadInput(t *testing.T) {
	env := testenv.New(t)
	for _, tt := range []struct {
		name  string
		req   *adminv1.RevokeSVIDsRequest
		code  codes.Code
		field string
	}{
		{"no target", &adminv1.RevokeSVIDsRequest{}, codes.InvalidArgument, "serial or spiffe_id"},
		{"unknown serial", &adminv1.RevokeSVIDsRequest{Target: &adminv1.RevokeSVIDsRequest_Serial{Serial: "0a:bc:de"}}, codes.NotFound, "serial"},
		{"malformed serial", &adminv1.RevokeSVIDsRequest{Target: &adminv1.RevokeSVIDsRequest_Serial{Serial: "xyz"}}, codes.InvalidArgument, "serial"},
		{"malformed id", &adminv1.RevokeSVIDsRequest{Target: &adminv1.RevokeSVIDsRequest_SpiffeId{SpiffeId: "web"}}, codes.InvalidArgument, "spiffe_id"},
		{"other trust domain", &adminv1.RevokeSVIDsRequest{Target: &adminv1.RevokeSVIDsRequest_SpiffeId{SpiffeId: "spiffe://other.org/web"}}, codes.InvalidArgument, "spiffe_id"},
		{"id never issued", &adminv1.RevokeSVIDsRequest{Target: &adminv1.RevokeSVIDsRequest_SpiffeId{SpiffeId: "spiffe://example.org/nobody"}}, codes.NotFound, "spiffe_id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.Admin.RevokeSVIDs(env.Ctx(), tt.req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.field) {
				t.Fatalf("RevokeSVIDs(%v) = %v, want %s naming %q", tt.req, err, tt.code, tt.field)
			}
		})
	}
	list, err := env.Admin.ListSVIDRevocations(env.Ctx(), &adminv1.ListSVIDRevocationsRequest{})
	if err != nil || len(list.GetRevocations()) != 0 {
		t.Fatalf("ListSVIDRevocations after refused requests = %v, %v; want none", list, err)
	}
}
