package server_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	brokerexchange "github.com/signet-id/signet/internal/broker/exchange"
	"github.com/signet-id/signet/internal/broker/provider/ssh/sshdtest"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/tokenapi"
)

const sshNodePolicy = `
rules:
  - name: deployer-on-a-node
    credentials: [prod-ssh]
    when: subject.id == "spiffe://example.org/deployer"
    ssh:
      principals: [deploy]
      extensions: [permit-pty]
      force_command: id -un
  - name: ci-deployer
    credentials: [prod-ssh]
    when: subject.id == "spiffe://example.org/ci-deployer"
`

const sshCredentials = `
prod-ssh: {provider: ssh, ca_key_file: %s, principals: [deploy, ops], extensions: [permit-pty, permit-port-forwarding],
           source_address_from_node: true, default_ttl: 5m}
static-key: {provider: static}
`

// TestSSHSourceAddressFromNode: a workload on an attested node gets an
// SSH certificate bound to the address its agent calls the server from
// (127.0.0.1) and narrowed by the allowing rule's ssh key; a real sshd
// lets it in from 127.0.0.1. A workload with no node (a CI job) is
// refused, and a policy reload that would widen the credential is
// refused naming the rule, the old policy staying in force.
func TestSSHSourceAddressFromNode(t *testing.T) {
	dir := t.TempDir()
	policyFile := writeFile(t, dir, "policy.yaml", sshNodePolicy, 0o600)
	caFile := filepath.Join(dir, "ssh-user-ca")
	env := testenv.New(t, func(c *server.Config) {
		c.HTTPAddress = "127.0.0.1:0"
		c.TokenVerifiers = []tokenapi.SubjectVerifier{jobVerifier{ttl: 10 * time.Minute}}
		c.Broker = server.BrokerConfig{KEKFile: kek(t, dir), PolicyFile: policyFile, Credentials: creds(t, fmt.Sprintf(sshCredentials, caFile))}
	})
	agent := env.Attest(nodeA)
	e := createEntry(t, env, entry("spiffe://example.org/deployer", nodeA, false))
	wkey, csr := testenv.NewCSR(t)
	resp, err := agent.Client.SignX509SVIDs(env.Ctx(), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: e.GetId(), Csr: csr}}})
	if err != nil {
		t.Fatal(err)
	}
	deployer := env.HTTPClient(testenv.SVIDFromChain(t, resp.GetResults()[0].GetCertChain(), wkey))

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := gossh.NewSignerFromKey(priv)
	form := func() url.Values {
		return url.Values{"requested_token_type": {brokerexchange.TokenTypeCredential}, "resource": {"prod-ssh"},
			"public_key": {string(gossh.MarshalAuthorizedKey(key.PublicKey()))}}
	}
	status, body := exchange(t, deployer, env, form())
	if status != 200 {
		t.Fatalf("ssh credential: %d %v", status, body)
	}
	line := body["data"].(map[string]any)["certificate"].(string)
	pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	cert := pub.(*gossh.Certificate)
	if got := cert.CriticalOptions["source-address"]; got != "127.0.0.1/32" {
		t.Errorf("source-address = %q, want the agent's address 127.0.0.1/32", got)
	}
	if strings.Join(cert.ValidPrincipals, ",") != "deploy" || cert.CriticalOptions["force-command"] != "id -un" {
		t.Errorf("principals %v, critical options %v: want the rule's narrowing", cert.ValidPrincipals, cert.CriticalOptions)
	}
	if _, ok := cert.Extensions["permit-pty"]; !ok || len(cert.Extensions) != 1 {
		t.Errorf("extensions = %v, want only permit-pty", cert.Extensions)
	}
	caPub, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.ParsePrivateKey(caPub)
	if err != nil {
		t.Fatal(err)
	}
	srv := sshdtest.Start(t, string(gossh.MarshalAuthorizedKey(signer.PublicKey())), "deploy")
	if err := srv.Login(env.Ctx(), key, line); err != nil {
		t.Fatalf("login from 127.0.0.1 with a certificate bound to the node's address: %v", err)
	}

	t.Run("no node", func(t *testing.T) {
		ci := env.HTTPClient(workloadSVID(t, env, "spiffe://example.org/ci-deployer", "acme/deployer"))
		status, body := exchange(t, ci, env, form())
		desc, _ := body["error_description"].(string)
		if status != 400 || body["error"] != tokenapi.ErrInvalidRequest || !strings.Contains(desc, "source_address_from_node") || !strings.Contains(desc, "no attested node") {
			t.Errorf("status %d body %v, want invalid_request saying the caller has no node", status, body)
		}
	})

	t.Run("widening reload refused", func(t *testing.T) {
		widen := strings.Replace(sshNodePolicy, "principals: [deploy]", "principals: [deploy, root]", 1)
		if err := os.WriteFile(policyFile, []byte(widen), 0o600); err != nil {
			t.Fatal(err)
		}
		err := env.Server.ReloadPolicy()
		if err == nil || !strings.Contains(err.Error(), `rule "deployer-on-a-node": ssh.principals[1]: "root" is not a principal of the credential`) {
			t.Fatalf("ReloadPolicy(widening) = %v, want refused naming the rule", err)
		}
		if status, body := exchange(t, deployer, env, form()); status != 200 {
			t.Errorf("after a refused reload: %d %v, want the old policy in force", status, body)
		}
	})
}

// TestSSHPolicyRefusedAtStart: a rule whose ssh key widens a credential,
// or names a credential that is not an ssh one, keeps the server from
// starting, naming the rule.
func TestSSHPolicyRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ssh-user-ca")
	cases := map[string]struct{ rule, want string }{
		"principal": {"credentials: [prod-ssh]\n    ssh: {principals: [root]}", `rule "r": ssh.principals[0]: "root" is not a principal of the credential (configured: [deploy, ops])`},
		"extension": {"credentials: [prod-ssh]\n    ssh: {extensions: [permit-X11-forwarding]}", `rule "r": ssh.extensions[0]: "permit-X11-forwarding" is not an extension`},
		"not ssh":   {"credentials: [static-key]\n    ssh: {principals: [deploy]}", `rule "r": ssh: credential static-key is a static credential`},
		"unknown":   {"credentials: [nope]\n    ssh: {principals: [deploy]}", `rule "r": ssh: credential nope is not configured`},
		"any":       {"credentials: [\"*\"]\n    ssh: {principals: [deploy]}", `rule "r": ssh: the ssh key narrows ssh credentials`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := devServerConfig(t)
			pol := "rules:\n  - name: r\n    when: true\n    " + c.rule + "\n"
			cfg.Broker = server.BrokerConfig{KEKFile: kek(t, dir), PolicyFile: writeFile(t, t.TempDir(), "policy.yaml", pol, 0o600),
				Credentials: creds(t, fmt.Sprintf(sshCredentials, caFile))}
			srv, err := server.New(t.Context(), cfg)
			if err == nil {
				srvClose(srv)
				t.Fatal("server.New succeeded")
			}
			if !strings.Contains(err.Error(), "broker.policy_file") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error = %v\nwant it to contain broker.policy_file and %q", err, c.want)
			}
		})
	}
}
