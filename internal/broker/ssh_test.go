package broker_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/signet-id/signet/internal/broker"
	"github.com/signet-id/signet/internal/broker/policy"
	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

// TestSSHNarrowingAndNodeAddresses: the allowing rule's ssh key and the
// node's addresses reach the ssh provider through the broker, and the
// decision's audit record carries the narrowing; a node without a
// recorded address is refused as FailedPrecondition and leaves no open
// lease.
func TestSSHNarrowingAndNodeAddresses(t *testing.T) {
	st, err := store.Open(t.Context(), store.Config{DSN: filepath.Join(t.TempDir(), "signet.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol, err := policy.Parse("policy.yaml", []byte(`
rules:
  - name: etl-ssh
    credentials: [prod-ssh]
    when: subject.id == "spiffe://example.org/etl"
    ssh: {principals: [ops], extensions: [], force_command: /usr/bin/backup}
`))
	if err != nil {
		t.Fatal(err)
	}
	c := buildCredential(t, provider.Deps{Credential: "prod-ssh"}, fmt.Sprintf(
		"provider: ssh\nca_key_file: %s\nprincipals: [deploy, ops]\nextensions: [permit-pty]\nsource_address_from_node: true\n",
		filepath.Join(t.TempDir(), "ca")))
	b, err := broker.New(t.Context(), broker.Config{Store: st, Sealer: newSealer(t), Policy: pol, Credentials: []broker.Credential{c}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, _ := gossh.NewPublicKey(pub)
	req := broker.Request{Credential: "prod-ssh", Subject: etl, PublicKey: string(gossh.MarshalAuthorizedKey(sshPub)),
		Node: broker.Node{ID: node, AttestationMethod: "join_token", Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.7")}}}

	g, err := b.Request(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := gossh.ParseAuthorizedKey([]byte(g.Data["certificate"]))
	if err != nil {
		t.Fatal(err)
	}
	cert := k.(*gossh.Certificate)
	if strings.Join(cert.ValidPrincipals, ",") != "ops" || len(cert.Extensions) != 0 ||
		cert.CriticalOptions["force-command"] != "/usr/bin/backup" || cert.CriticalOptions["source-address"] != "192.0.2.7/32" {
		t.Errorf("certificate principals %v extensions %v options %v, want [ops], none, force-command and 192.0.2.7/32",
			cert.ValidPrincipals, cert.Extensions, cert.CriticalOptions)
	}
	recs, err := st.ListAudit(t.Context(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var allow store.AuditRecord
	for _, r := range recs {
		if r.Action == "broker.allow" {
			allow = r
		}
	}
	if got, want := allow.Detail["ssh"], "principals [ops]; extensions []; force_command /usr/bin/backup"; got != want {
		t.Errorf("audit detail ssh = %q, want %q", got, want)
	}

	req.Node.Addresses = nil
	_, err = b.Request(t.Context(), req)
	if !errkind.Is(err, errkind.FailedPrecondition) || !strings.Contains(err.Error(), "node "+node.String()+" has no recorded address") {
		t.Fatalf("Request(node without address) = %v, want FailedPrecondition naming the node", err)
	}
	open, err := st.ListLeases(t.Context(), store.LeaseFilter{Credential: "prod-ssh", States: []store.LeaseState{store.LeasePending, store.LeaseActive}})
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 || open[0].ID != g.Lease.ID {
		t.Errorf("open leases = %v, want only the first one", open)
	}
}
