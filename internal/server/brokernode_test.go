package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net/url"
	"testing"
	"time"

	brokerexchange "github.com/signet-id/signet/internal/broker/exchange"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/tokenapi"
)

// TestBrokerJudgesTheNodeTheSVIDWasSignedFor registers one SPIFFE ID on a
// prod node and on a dev node. The policy allows the credential only on
// the prod node to the prod entry's selectors: the workload on the prod
// node gets it, the workload on the dev node does not, over mTLS and with
// a JWT-SVID alike, and the audit record names the entry and node the
// SVID was signed for.
func TestBrokerJudgesTheNodeTheSVIDWasSignedFor(t *testing.T) {
	env := testenv.New(t, testenv.WithBroker(t, testenv.Broker{
		Credentials: "stripe: {provider: static, max_ttl: 30m}",
		Policy: `
rules:
  - name: prod-web
    credentials: [stripe]
    when: node.id == "spiffe://example.org/node/prod" && "unix:uid:1000" in subject.selectors
`}))
	if _, err := env.Server.Broker().PutSecret(env.Ctx(), "stripe", []byte("sk_live_abc")); err != nil {
		t.Fatal(err)
	}
	const web = "spiffe://example.org/web"
	nodes := map[string]*testenv.AgentConn{}
	entries := map[string]string{}
	for name, uid := range map[string]string{"prod": "1000", "dev": "2000"} {
		nodeID := "spiffe://example.org/node/" + name
		nodes[name] = env.Attest(nodeID)
		e := env.CreateEntry(&commonv1.Entry{SpiffeId: web, ParentId: nodeID,
			Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:" + uid}}})
		entries[name] = e.GetId()
	}
	serverID := server.ServerID(env.TrustDomain).String()
	credential := func(extra url.Values) url.Values {
		f := url.Values{"requested_token_type": {brokerexchange.TokenTypeCredential}, "resource": {"stripe"}}
		for k, v := range extra {
			f[k] = v
		}
		return f
	}
	for name, wantStatus := range map[string]int{"prod": 200, "dev": 400} {
		agent := nodes[name]
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		var chain [][]byte
		testenv.WaitFor(t, 10*time.Second, "x509-svid for the "+name+" entry", func() error {
			resp, err := agent.Client.SignX509SVIDs(env.Ctx(), &agentv1.SignX509SVIDsRequest{
				Requests: []*agentv1.X509SVIDRequest{{EntryId: entries[name], Csr: csr}}})
			if err != nil {
				return err
			}
			r := resp.GetResults()[0]
			if r.GetStatus().GetCode() != 0 {
				return fmt.Errorf("%s", r.GetStatus().GetMessage())
			}
			chain = r.GetCertChain()
			return nil
		})
		jwt, err := agent.Client.SignJWTSVID(env.Ctx(), &agentv1.SignJWTSVIDRequest{EntryId: entries[name], Audience: []string{serverID}})
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name+" over mTLS", func(t *testing.T) {
			status, body := exchange(t, env.HTTPClient(testenv.SVIDFromChain(t, chain, key)), env, credential(nil))
			if status != wantStatus {
				t.Fatalf("status %d, want %d: %v", status, wantStatus, body)
			}
			if wantStatus != 200 && body["error"] != tokenapi.ErrUnauthorizedClient {
				t.Fatalf("error %v, want %s", body["error"], tokenapi.ErrUnauthorizedClient)
			}
		})
		t.Run(name+" with a JWT-SVID", func(t *testing.T) {
			status, body := exchange(t, env.HTTPClient(nil), env, credential(url.Values{
				"subject_token": {jwt.GetToken()}, "subject_token_type": {tokenapi.TokenTypeJWT}}))
			if status != wantStatus {
				t.Fatalf("status %d, want %d: %v", status, wantStatus, body)
			}
		})
	}

	resp, err := inventoryv1.NewAuditClient(env.AdminConn()).ListAudit(env.Ctx(), &inventoryv1.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range resp.GetRecords() {
		if r.GetAction() != "broker.allow" && r.GetAction() != "broker.deny" {
			continue
		}
		d := r.GetDetail()
		want := map[string]string{"broker.allow": "prod", "broker.deny": "dev"}[r.GetAction()]
		if d["facts"] != brokerexchange.FactsSVID || d["entry"] != entries[want] || d["node"] != "spiffe://example.org/node/"+want {
			t.Errorf("%s record: facts %q entry %q node %q; want svid, %s, the %s node", r.GetAction(), d["facts"], d["entry"], d["node"], entries[want], want)
		}
		seen[r.GetAction()]++
	}
	if seen["broker.allow"] != 2 || seen["broker.deny"] != 2 {
		t.Errorf("decision records: %v, want 2 allows and 2 denials", seen)
	}
}
