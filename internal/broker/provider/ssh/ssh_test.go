package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	gossh "golang.org/x/crypto/ssh"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/ssh/sshdtest"
	"github.com/signet-id/signet/internal/errkind"
)

func clientKey(t testing.TB) (gossh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, string(gossh.MarshalAuthorizedKey(s.PublicKey()))
}

func newProvider(t testing.TB, cfg Config) *Provider {
	t.Helper()
	if cfg.CAKeyFile == "" {
		cfg.CAKeyFile = filepath.Join(t.TempDir(), "ssh-user-ca")
	}
	if cfg.Principals == nil {
		cfg.Principals = []string{"deploy"}
	}
	p, err := New("prod-ssh", cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func request(id, pub string, ttl time.Duration) provider.Request {
	return provider.Request{LeaseID: id, Credential: "prod-ssh", Subject: spiffeid.RequireFromString("spiffe://example.org/deployer"),
		ExpiresAt: time.Now().Add(ttl), PublicKey: pub}
}

func parseCert(t *testing.T, line string) *gossh.Certificate {
	t.Helper()
	pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return pub.(*gossh.Certificate)
}

func TestIssueCertificate(t *testing.T) {
	p := newProvider(t, Config{Principals: []string{"deploy", "ops"}, Extensions: []string{"permit-pty"},
		CriticalOptions: map[string]string{"source-address": "127.0.0.1/32,10.0.0.0/8", "force-command": "/usr/bin/deploy"}})
	_, pub := clientKey(t)
	exp := time.Now().Add(5 * time.Minute)
	r := request("lease-1", pub, 5*time.Minute)
	r.ExpiresAt = exp
	c, err := p.Issue(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, c.Data["certificate"])
	if cert.CertType != gossh.UserCert || cert.Serial != Serial("lease-1") || cert.ValidBefore != uint64(exp.Unix()) {
		t.Errorf("cert type %d serial %d valid before %d", cert.CertType, cert.Serial, cert.ValidBefore)
	}
	if strings.Join(cert.ValidPrincipals, ",") != "deploy,ops" || c.Data["principals"] != "deploy,ops" {
		t.Errorf("principals = %v", cert.ValidPrincipals)
	}
	if _, ok := cert.Extensions["permit-pty"]; !ok || len(cert.Extensions) != 1 {
		t.Errorf("extensions = %v, want only permit-pty", cert.Extensions)
	}
	if cert.CriticalOptions["source-address"] != "127.0.0.1/32,10.0.0.0/8" || cert.CriticalOptions["force-command"] != "/usr/bin/deploy" {
		t.Errorf("critical options = %v", cert.CriticalOptions)
	}
	if !strings.Contains(cert.KeyId, "lease-1") || !strings.Contains(cert.KeyId, "spiffe://example.org/deployer") {
		t.Errorf("key id = %q, want the lease and the SPIFFE ID", cert.KeyId)
	}
	checker := gossh.CertChecker{SupportedCriticalOptions: []string{"force-command", "source-address"}, IsUserAuthority: func(k gossh.PublicKey) bool { return string(k.Marshal()) == string(p.CA().Marshal()) }}
	if _, err := checker.Authenticate(connMeta("deploy"), cert); err != nil {
		t.Errorf("CertChecker.Authenticate = %v", err)
	}
}

type connMeta string

func (c connMeta) User() string        { return string(c) }
func (connMeta) SessionID() []byte     { return nil }
func (connMeta) ClientVersion() []byte { return nil }
func (connMeta) ServerVersion() []byte { return nil }
func (connMeta) RemoteAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5} }
func (connMeta) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22} }

func TestIssueRefusesBadKeys(t *testing.T) {
	p := newProvider(t, Config{})
	cases := map[string]string{
		"":                                "carries no public key",
		"ssh-ed25519 AAAA":                "not an SSH public key",
		"ssh-dss AAAAB3NzaC1kc3MAAACBAP1": "not an SSH public key",
	}
	for in, want := range cases {
		_, err := p.Issue(t.Context(), request("lease-bad", in, time.Hour))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "ssh credential prod-ssh") || !errkind.Is(err, errkind.InvalidArgument) {
			t.Errorf("Issue(public key %q) = %v, want an InvalidArgument error containing %q", in, err, want)
		}
	}
	// A certificate is not a key to certify.
	_, pub := clientKey(t)
	c, err := p.Issue(t.Context(), request("lease-c", pub, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(t.Context(), request("lease-d", c.Data["certificate"], time.Hour)); err == nil || !strings.Contains(err.Error(), "not accepted") {
		t.Errorf("Issue(a certificate) = %v, want refused", err)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := map[string]struct {
		cfg  Config
		want string
	}{
		"no ca":         {Config{Principals: []string{"a"}}, "ca_key_file: required"},
		"no principal":  {Config{CAKeyFile: "x"}, "principals: at least one"},
		"bad principal": {Config{CAKeyFile: "x", Principals: []string{"a,b"}}, "principals[0]"},
		"extension":     {Config{CAKeyFile: "x", Principals: []string{"a"}, Extensions: []string{"permit-everything"}}, "extensions[0]: unknown extension \"permit-everything\""},
		"option":        {Config{CAKeyFile: "x", Principals: []string{"a"}, CriticalOptions: map[string]string{"no-pty": ""}}, "critical_options.no-pty: unknown option"},
		"source":        {Config{CAKeyFile: "x", Principals: []string{"a"}, CriticalOptions: map[string]string{"source-address": "10.0.0.0/8,host.example"}}, "\"host.example\" is not an address"},
		"from node and fixed": {Config{CAKeyFile: "x", Principals: []string{"a"}, SourceAddressFromNode: true,
			CriticalOptions: map[string]string{"source-address": "10.0.0.0/8"}}, "source_address_from_node: true conflicts with critical_options.source-address"},
	}
	for name, c := range cases {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want %q", name, err, c.want)
		}
	}
}

func TestCAKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ca")
	p1 := newProvider(t, Config{CAKeyFile: path})
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated CA key: %v mode %v, want 0600", err, fi.Mode().Perm())
	}
	p2 := newProvider(t, Config{CAKeyFile: path})
	if p1.CAPublicKey() != p2.CAPublicKey() || !strings.HasPrefix(p1.CAPublicKey(), "ssh-ed25519 ") {
		t.Errorf("CA public keys %q and %q, want the same ed25519 key after a restart", p1.CAPublicKey(), p2.CAPublicKey())
	}
	// ssh-keygen reads the generated key.
	if out, err := exec.Command("ssh-keygen", "-y", "-f", path).CombinedOutput(); err != nil || !strings.HasPrefix(string(out), strings.Join(strings.Fields(p1.CAPublicKey())[:2], " ")) {
		t.Errorf("ssh-keygen -y = %s, %v", out, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New("prod-ssh", Config{CAKeyFile: path, Principals: []string{"a"}}, nil); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("New with a 0644 CA key = %v, want refused", err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	if _, err := New("prod-ssh", Config{CAKeyFile: bad, Principals: []string{"a"}}, nil); err == nil || !strings.Contains(err.Error(), "not an SSH private key") {
		t.Errorf("New with garbage = %v", err)
	}
}

// TestKRLReadBySSHKeygen: ssh-keygen -Q finds a revoked certificate in
// Signet's KRL and not one that was never revoked.
func TestKRLReadBySSHKeygen(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	p := newProvider(t, Config{})
	dir := t.TempDir()
	_, pub := clientKey(t)
	certs := map[string]string{}
	for _, id := range []string{"lease-a", "lease-b"} {
		c, err := p.Issue(t.Context(), request(id, pub, time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		certs[id] = filepath.Join(dir, id+"-cert.pub")
		os.WriteFile(certs[id], []byte(c.Data["certificate"]+"\n"), 0o600)
		if id == "lease-a" {
			if err := p.Revoke(t.Context(), provider.Ref{LeaseID: id, RevokeData: c.RevokeData}); err != nil {
				t.Fatal(err)
			}
		}
	}
	krl := p.KRL()
	krlPath := filepath.Join(dir, "revoked.krl")
	os.WriteFile(krlPath, krl, 0o600)
	if out, err := exec.Command("ssh-keygen", "-Q", "-f", krlPath, certs["lease-a"]).CombinedOutput(); err == nil || !strings.Contains(string(out), "REVOKED") {
		t.Errorf("ssh-keygen -Q (revoked) = %s, %v; want REVOKED", out, err)
	}
	if out, err := exec.Command("ssh-keygen", "-Q", "-f", krlPath, certs["lease-b"]).CombinedOutput(); err != nil {
		t.Errorf("ssh-keygen -Q (not revoked) = %s, %v; want ok", out, err)
	}
	// The state survives a restart.
	p2, err := New("prod-ssh", p.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p2.Revoked("lease-a") || p2.Revoked("lease-b") {
		t.Error("the KRL state did not survive a restart")
	}
}

// TestLoginWithRealSSHD logs in to a real sshd with a certificate, then
// checks that revocation (once the KRL is refreshed) and expiry refuse it.
func TestLoginWithRealSSHD(t *testing.T) {
	p := newProvider(t, Config{Extensions: []string{"permit-pty"}})
	srv := sshdtest.Start(t, p.CAPublicKey(), "deploy")
	key, pub := clientKey(t)
	c, err := p.Issue(t.Context(), request("lease-login", pub, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Login(t.Context(), key, c.Data["certificate"]); err != nil {
		t.Fatalf("login with the certificate: %v", err)
	}
	// Another CA's certificate is refused.
	other := newProvider(t, Config{})
	oc, err := other.Issue(t.Context(), request("lease-other", pub, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Login(t.Context(), key, oc.Data["certificate"]); err == nil {
		t.Error("a certificate of another CA logged in")
	}
	// A principal sshd does not map is refused.
	np := newProvider(t, Config{CAKeyFile: p.cfg.CAKeyFile, Principals: []string{"nobody-here"}, KRLFile: filepath.Join(t.TempDir(), "k")})
	nc, err := np.Issue(t.Context(), request("lease-np", pub, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Login(t.Context(), key, nc.Data["certificate"]); err == nil {
		t.Error("a certificate without an authorized principal logged in")
	}

	if err := p.Revoke(t.Context(), provider.Ref{LeaseID: "lease-login", Credential: "prod-ssh", RevokeData: c.RevokeData}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Login(t.Context(), key, c.Data["certificate"]); err != nil {
		t.Fatalf("login before the KRL refresh: %v (sshd still has the old KRL)", err)
	}
	krl := p.KRL()
	if err := srv.SetKRL(krl); err != nil {
		t.Fatal(err)
	}
	if err := srv.Login(t.Context(), key, c.Data["certificate"]); err == nil {
		t.Fatal("login with a revoked certificate succeeded after the KRL refresh")
	}

	// Expiry: a 2 s lease stops working at its end without any revoke.
	short, err := p.Issue(t.Context(), request("lease-short", pub, 2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Login(t.Context(), key, short.Data["certificate"]); err != nil {
		t.Fatalf("login before expiry: %v", err)
	}
	time.Sleep(3 * time.Second)
	if err := srv.Login(t.Context(), key, short.Data["certificate"]); err == nil {
		t.Fatal("login with an expired certificate succeeded")
	}
}

func BenchmarkIssue(b *testing.B) {
	p := newProvider(b, Config{Extensions: []string{"permit-pty"}})
	_, pub := clientKey(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := p.Issue(b.Context(), request("lease-bench", pub, time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParsePublicKey: any public_key parameter is refused with an error
// or parsed as a key of an accepted type, never a certificate; no panic.
func FuzzParsePublicKey(f *testing.F) {
	_, pub := clientKey(f)
	f.Add(pub)
	f.Add("")
	f.Add("ssh-ed25519 AAAA")
	f.Add(pub + pub)
	f.Add("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParsePublicKey(s)
		if err != nil {
			return
		}
		if _, isCert := k.(*gossh.Certificate); isCert {
			t.Fatalf("ParsePublicKey(%q) accepted a certificate", s)
		}
	})
}
