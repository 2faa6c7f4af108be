package server_test

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/nodeattest/reauth"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/testenv/testclock"
)

// reauthWith runs agent_reauth with svid's chain and key.
func reauthWith(t *testing.T, env *testenv.Env, svid *x509svid.SVID) (*x509svid.SVID, error) {
	t.Helper()
	env.AwaitServerSVID()
	a, err := reauth.New(svid.Certificates, svid.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return env.TryAttestWith(a)
}

func TestAgentReauth(t *testing.T) {
	clock := testclock.New(time.Now())
	env := testenv.New(t, testenv.WithNow(clock.Now), func(c *server.Config) {
		c.AgentReauthWindow, c.CATTL = 24*time.Hour, 72*time.Hour // the CA outlives the test's jumps
	})
	first, err := env.TryAttest(env.JoinToken(nodeA))
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(2 * time.Hour) // the one-hour agent SVID expired

	// A lost reply strands nothing: the SVID proved stays the node's
	// current one until the new one is used.
	if _, err := reauthWith(t, env, first); err != nil {
		t.Fatalf("reauth with the expired SVID: %v", err)
	}
	second, err := reauthWith(t, env, first)
	if err != nil {
		t.Fatalf("reauth again with the same SVID (first reply lost): %v", err)
	}
	env.AwaitServerSVID()
	if _, err := env.Dial(second).Client.Sync(env.Ctx(), &agentv1.SyncRequest{}); err != nil {
		t.Fatalf("Sync with the re-established SVID: %v", err)
	}
	// Once the new SVID is used, the old one proves nothing any more.
	_, err = reauthWith(t, env, first)
	wantCode(t, "reauth with a superseded SVID", err, codes.PermissionDenied)
	node, err := env.Admin.GetNode(env.Ctx(), &adminv1.GetNodeRequest{SpiffeId: nodeA})
	if err != nil {
		t.Fatal(err)
	}
	if node.GetAttestationType() != "join_token" {
		t.Errorf("attestation type after reauth = %q, want join_token kept", node.GetAttestationType())
	}

	// Outside the window.
	clock.Add(26 * time.Hour)
	_, err = reauthWith(t, env, second)
	wantCode(t, "reauth past agent_reauth_window", err, codes.PermissionDenied)

	// Evicted and banned nodes do not come back, and are not re-created.
	for _, act := range []string{"evict", "ban"} {
		id := "spiffe://example.org/node/" + act
		env.AwaitServerSVID()
		svid, err := env.TryAttest(env.JoinToken(id))
		if err != nil {
			t.Fatal(err)
		}
		clock.Add(2 * time.Hour)
		if act == "evict" {
			_, err = env.Admin.EvictNode(env.Ctx(), &adminv1.NodeRequest{SpiffeId: id})
		} else {
			_, err = env.Admin.BanNode(env.Ctx(), &adminv1.NodeRequest{SpiffeId: id})
		}
		if err != nil {
			t.Fatal(err)
		}
		_, err = reauthWith(t, env, svid)
		wantCode(t, "reauth of a node to "+act, err, codes.PermissionDenied)
		n, err := env.Admin.GetNode(env.Ctx(), &adminv1.GetNodeRequest{SpiffeId: id})
		if act == "evict" {
			wantCode(t, "evicted node after a refused reauth", err, codes.NotFound)
		} else if err != nil || !n.GetBanned() {
			t.Errorf("banned node after a refused reauth = %v, %v; want still banned", n, err)
		}
	}
}

func TestAgentReauthCanBeSwitchedOff(t *testing.T) {
	clock := testclock.New(time.Now())
	env := testenv.New(t, testenv.WithNow(clock.Now), func(c *server.Config) { c.AgentReauthWindow = -1 })
	svid, err := env.TryAttest(env.JoinToken(nodeA))
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(2 * time.Hour)
	_, err = reauthWith(t, env, svid)
	wantCode(t, "agent_reauth switched off", err, codes.InvalidArgument)
}
