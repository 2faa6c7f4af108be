package tpm_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/nodeattest/tpm"
	"github.com/signet-id/signet/internal/nodeattest/tpm/tpmtest"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
)

// TestThroughTheServer attests an agent on swtpm to a real server over the
// AttestAgent stream, as configured by node_attestors.tpm, and checks the
// node it records; then that a replayed answer is refused and that the
// node re-attests on its own.
func TestThroughTheServer(t *testing.T) {
	t.Run("static allow list", func(t *testing.T) {
		sim := tpmtest.Start(t)
		h := ekHash(t, sim)
		env := testenv.New(t, func(c *server.Config) {
			c.NodeAttestors = map[string]yaml.Node{tpm.Name: *yamlNode(t, "{allowed_ek_hashes: ["+h+"]}")}
		})
		throughTheServer(t, env, sim, h)
	})
	t.Run("allowed by an operator", func(t *testing.T) {
		sim := tpmtest.Start(t)
		h := ekHash(t, sim)
		env := testenv.New(t, func(c *server.Config) {
			c.NodeAttestors = map[string]yaml.Node{tpm.Name: *yamlNode(t, "{}")}
		})
		_, csr := testenv.NewCSR(t)
		a := newAttestor(t, sim)
		p, err := a.Payload(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		stream, err := env.Dial(nil).Client.AttestAgent(env.Ctx())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params{Params: &agentv1.AttestParams{
			AttestationType: tpm.Name, Payload: p, Csr: csr}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("attest before the operator allowed the EK: %v, want PermissionDenied", err)
		}
		if _, err := env.Admin.AllowNode(env.Ctx(), &adminv1.NodeAllowance{AttestationType: tpm.Name, Value: h}); err != nil {
			t.Fatalf("AllowNode: %v", err)
		}
		throughTheServer(t, env, sim, h)
	})
}

// throughTheServer attests sim's TPM through env's AttestAgent stream, whose
// server must admit its EK (hash h).
func throughTheServer(t *testing.T, env *testenv.Env, sim *tpmtest.Sim, h string) {
	a := newAttestor(t, sim)
	want := "spiffe://example.org/signet/agent/tpm/" + h

	// run attests, answering the challenge with answer (nil: the TPM's)
	// and returning what the agent sent.
	run := func(answer []byte) (*agentv1.AgentSVID, []byte, error) {
		_, csr := testenv.NewCSR(t)
		p, err := a.Payload(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		stream, err := env.Dial(nil).Client.AttestAgent(env.Ctx())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params{Params: &agentv1.AttestParams{
			AttestationType: tpm.Name, Payload: p, Csr: csr}}}); err != nil {
			t.Fatal(err)
		}
		var sent []byte
		for {
			resp, err := stream.Recv()
			if err != nil {
				return nil, sent, err
			}
			ch := resp.GetChallenge()
			if ch == nil {
				_ = stream.CloseSend()
				return resp.GetResult(), sent, nil
			}
			sent = answer
			if sent == nil {
				if sent, err = a.Respond(t.Context(), ch); err != nil {
					t.Fatal(err)
				}
			}
			if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_ChallengeResponse{ChallengeResponse: sent}}); err != nil {
				t.Fatal(err)
			}
		}
	}

	res, answer, err := run(nil)
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	if svid := res.GetSpiffeId(); svid != want {
		t.Errorf("agent SVID for %s, want %s", svid, want)
	}
	node, err := env.Admin.GetNode(env.Ctx(), &adminv1.GetNodeRequest{SpiffeId: want})
	if err != nil {
		t.Fatalf("GetNode(%s): %v", want, err)
	}
	if node.GetAttestationType() != tpm.Name || len(node.GetSelectors()) != 1 ||
		node.GetSelectors()[0].GetType() != "tpm" || node.GetSelectors()[0].GetValue() != "ek_hash:"+h {
		t.Errorf("stored node = %v, want method tpm with selector tpm:ek_hash:%s", node, h)
	}
	if _, _, err := run(answer); status.Code(err) != codes.PermissionDenied {
		t.Errorf("attest with a replayed answer: %v, want PermissionDenied", err)
	}
	if _, _, err := run(nil); err != nil {
		t.Errorf("re-attest: %v", err)
	}
}
