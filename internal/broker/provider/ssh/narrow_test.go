package ssh

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/ssh/sshdtest"
	"github.com/signet-id/signet/internal/errkind"
)

var testNode = spiffeid.RequireFromString("spiffe://example.org/agent/join_token/n1")

func nodeRequest(id, pub string, addrs ...string) provider.Request {
	r := request(id, pub, time.Hour)
	r.Node = testNode
	for _, a := range addrs {
		r.NodeAddresses = append(r.NodeAddresses, netip.MustParseAddr(a))
	}
	return r
}

// TestSourceAddressFromNode: the certificate's source-address is the
// node's recorded addresses as /32 and /128; without a recorded address,
// or without a node, nothing is issued and the error names why.
func TestSourceAddressFromNode(t *testing.T) {
	p := newProvider(t, Config{SourceAddressFromNode: true, CriticalOptions: map[string]string{"force-command": "/bin/true"}})
	_, pub := clientKey(t)
	c, err := p.Issue(t.Context(), nodeRequest("lease-1", pub, "192.0.2.7", "::ffff:198.51.100.1", "2001:db8::1", "192.0.2.7"))
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, c.Data["certificate"])
	if got, want := cert.CriticalOptions["source-address"], "192.0.2.7/32,198.51.100.1/32,2001:db8::1/128"; got != want {
		t.Errorf("source-address = %q, want %q", got, want)
	}
	if cert.CriticalOptions["force-command"] != "/bin/true" {
		t.Errorf("critical options = %v, want the configured force-command kept", cert.CriticalOptions)
	}

	cases := map[string]struct {
		r    provider.Request
		want string
	}{
		"no address": {nodeRequest("lease-2", pub), "node spiffe://example.org/agent/join_token/n1 has no recorded address"},
		"no node":    {request("lease-3", pub, time.Hour), "runs on no attested node"},
	}
	for name, tc := range cases {
		_, err := p.Issue(t.Context(), tc.r)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "ssh credential prod-ssh: source_address_from_node") ||
			!errkind.Is(err, errkind.FailedPrecondition) {
			t.Errorf("%s: Issue() = %v, want a FailedPrecondition error containing %q", name, err, tc.want)
		}
	}

	// Without source_address_from_node the node's addresses are not used.
	plain := newProvider(t, Config{})
	c, err = plain.Issue(t.Context(), nodeRequest("lease-4", pub, "192.0.2.7"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := parseCert(t, c.Data["certificate"]).CriticalOptions["source-address"]; ok {
		t.Error("source-address set without source_address_from_node")
	}
}

// TestSourceAddressWithRealSSHD: sshd accepts a certificate bound to the
// address the client connects from (127.0.0.1) and refuses one bound to
// another node's address.
func TestSourceAddressWithRealSSHD(t *testing.T) {
	p := newProvider(t, Config{SourceAddressFromNode: true})
	srv := sshdtest.Start(t, p.CAPublicKey(), "deploy")
	key, pub := clientKey(t)
	here, err := p.Issue(t.Context(), nodeRequest("lease-here", pub, "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Login(t.Context(), key, here.Data["certificate"]); err != nil {
		t.Fatalf("login with source-address 127.0.0.1/32 from 127.0.0.1: %v", err)
	}
	elsewhere, err := p.Issue(t.Context(), nodeRequest("lease-elsewhere", pub, "192.0.2.7", "2001:db8::7"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Login(t.Context(), key, elsewhere.Data["certificate"]); err == nil {
		t.Fatal("a certificate bound to 192.0.2.7/32,2001:db8::7/128 logged in from 127.0.0.1")
	}
	// It is the source-address check that refused it (sshd logs it as the
	// connection is refused; the log may trail the client's error).
	const refusal = "not from a permitted source address (127.0.0.1)"
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(srv.Log(), refusal) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(srv.Log(), refusal) {
		t.Errorf("sshd log does not say %q", refusal)
	}
}

// TestIssueNarrowed: a policy's ssh options narrow the certificate's
// principals and extensions and add force-command; options that would
// widen are refused.
func TestIssueNarrowed(t *testing.T) {
	p := newProvider(t, Config{Principals: []string{"deploy", "ops"}, Extensions: []string{"permit-pty", "permit-port-forwarding"}})
	_, pub := clientKey(t)
	r := request("lease-n", pub, time.Hour)
	r.SSH = &provider.SSHOptions{Principals: []string{"deploy"}, Extensions: []string{"permit-pty"}, ForceCommand: "/usr/local/bin/deploy --prod"}
	c, err := p.Issue(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, c.Data["certificate"])
	if strings.Join(cert.ValidPrincipals, ",") != "deploy" || c.Data["principals"] != "deploy" {
		t.Errorf("principals = %v (data %q), want [deploy]", cert.ValidPrincipals, c.Data["principals"])
	}
	if _, ok := cert.Extensions["permit-pty"]; !ok || len(cert.Extensions) != 1 {
		t.Errorf("extensions = %v, want only permit-pty", cert.Extensions)
	}
	if cert.CriticalOptions["force-command"] != "/usr/local/bin/deploy --prod" {
		t.Errorf("critical options = %v, want force-command", cert.CriticalOptions)
	}
	// extensions: [] grants none; principals left out keeps the configured ones.
	r = request("lease-none", pub, time.Hour)
	r.SSH = &provider.SSHOptions{Extensions: []string{}}
	c, err = p.Issue(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	cert = parseCert(t, c.Data["certificate"])
	if len(cert.Extensions) != 0 || strings.Join(cert.ValidPrincipals, ",") != "deploy,ops" {
		t.Errorf("extensions = %v principals = %v, want none and [deploy ops]", cert.Extensions, cert.ValidPrincipals)
	}
	// Widening is refused at issue too (the server checks at policy load).
	r = request("lease-wide", pub, time.Hour)
	r.SSH = &provider.SSHOptions{Principals: []string{"root"}}
	if _, err := p.Issue(t.Context(), r); err == nil || !strings.Contains(err.Error(), `"root" is not a principal`) || !errkind.Is(err, errkind.FailedPrecondition) {
		t.Errorf("Issue(principal root) = %v, want refused", err)
	}
}

func TestCheckOptions(t *testing.T) {
	p := newProvider(t, Config{Principals: []string{"deploy", "ops"}, Extensions: []string{"permit-pty"},
		CriticalOptions: map[string]string{"force-command": "/bin/deploy"}})
	cases := map[string]struct {
		o    provider.SSHOptions
		want string // "" for accepted
	}{
		"subset":             {provider.SSHOptions{Principals: []string{"ops"}, Extensions: []string{"permit-pty"}}, ""},
		"all":                {provider.SSHOptions{Principals: []string{"deploy", "ops"}}, ""},
		"no extensions":      {provider.SSHOptions{Extensions: []string{}}, ""},
		"same command":       {provider.SSHOptions{ForceCommand: "/bin/deploy"}, ""},
		"other principal":    {provider.SSHOptions{Principals: []string{"deploy", "root"}}, `principals[1]: "root" is not a principal of the credential (configured: [deploy, ops])`},
		"no principal":       {provider.SSHOptions{Principals: []string{}}, "principals: empty would allow no login"},
		"other extension":    {provider.SSHOptions{Extensions: []string{"permit-agent-forwarding"}}, `extensions[0]: "permit-agent-forwarding" is not an extension of the credential (configured: [permit-pty])`},
		"other command":      {provider.SSHOptions{ForceCommand: "/bin/sh"}, `force_command: "/bin/sh" differs from the credential's critical_options.force-command "/bin/deploy"`},
		"newline in command": {provider.SSHOptions{ForceCommand: "/bin/deploy\n"}, "force_command: contains a NUL or a newline"},
	}
	for name, tc := range cases {
		err := p.CheckOptions(tc.o)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: CheckOptions(%+v) = %v, want nil", name, tc.o, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: CheckOptions(%+v) = %v, want %q", name, tc.o, err, tc.want)
		}
	}
}
