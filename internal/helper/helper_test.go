package helper

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/signet-id/signet/internal/config"
)

// testSVID makes a self-signed SVID; the files do not care who signed it.
func testSVID(t *testing.T) (*x509svid.SVID, []*x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromString("spiffe://example.org/app")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{id.URL()}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}, []*x509.Certificate{cert}
}

func TestWriteX509(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	x := &X509{Dir: filepath.Join(dir, "tls"), Cert: "svid.pem", Key: "svid.key", Bundle: "bundle.pem", PKCS12: "app.p12", PKCS12PasswordFile: pw}
	var serials []*big.Int
	for range 3 {
		svid, bundle := testSVID(t)
		m, err := materialOf(svid, bundle)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.write(m); err != nil {
			t.Fatalf("write: %v", err)
		}
		serials = append(serials, svid.Certificates[0].SerialNumber)
		pair, err := tls.LoadX509KeyPair(filepath.Join(x.Dir, "svid.pem"), filepath.Join(x.Dir, "svid.key"))
		if err != nil {
			t.Fatalf("cert and key on disk do not match: %v", err)
		}
		if pair.Leaf.SerialNumber.Cmp(svid.Certificates[0].SerialNumber) != 0 {
			t.Fatalf("svid.pem holds serial %v, want the last written %v", pair.Leaf.SerialNumber, svid.Certificates[0].SerialNumber)
		}
		p12, _ := os.ReadFile(filepath.Join(x.Dir, "app.p12"))
		if _, c, _, err := pkcs12.DecodeChain(p12, "secret"); err != nil || c.SerialNumber.Cmp(pair.Leaf.SerialNumber) != 0 {
			t.Fatalf("app.p12: %v, or another certificate", err)
		}
	}
	if serials[0].Cmp(serials[2]) == 0 {
		t.Fatal("test SVIDs share a serial")
	}
	ents, err := os.ReadDir(x.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var gens []string
	for _, e := range ents {
		if e.IsDir() {
			gens = append(gens, e.Name())
		}
		fi, _ := os.Lstat(filepath.Join(x.Dir, e.Name()))
		if !e.IsDir() && fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is not a link through %s", e.Name(), dataLink)
		}
	}
	if len(gens) != 1 {
		t.Errorf("generation directories %v, want one", gens)
	}
	for name, want := range map[string]os.FileMode{"svid.pem": 0o644, "svid.key": 0o600, "bundle.pem": 0o644, "app.p12": 0o600} {
		fi, err := os.Stat(filepath.Join(x.Dir, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %v", name, fi.Mode().Perm(), err, want)
		}
	}
}

func TestWriteX509CombinedFile(t *testing.T) {
	x := &X509{Dir: t.TempDir(), Cert: "both.pem", Key: "both.pem"}
	svid, bundle := testSVID(t)
	m, _ := materialOf(svid, bundle)
	if err := x.write(m); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(x.Dir, "both.pem")
	if _, err := tls.LoadX509KeyPair(p, p); err != nil {
		t.Fatalf("combined file is not a key pair: %v", err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("combined file mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestWriteX509EmptyPassword(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	_ = os.WriteFile(pw, []byte("\n"), 0o600)
	x := &X509{Dir: filepath.Join(dir, "tls"), Cert: "c", Key: "k", PKCS12: "p", PKCS12PasswordFile: pw}
	svid, bundle := testSVID(t)
	m, _ := materialOf(svid, bundle)
	err := x.write(m)
	if err == nil || !strings.Contains(err.Error(), "x509.pkcs12_password_file") {
		t.Fatalf("write with an empty password = %v, want an error naming x509.pkcs12_password_file", err)
	}
	if _, err := os.Stat(filepath.Join(x.Dir, "c")); err == nil {
		t.Error("files written although the keystore failed")
	}
}

func newTestHelper(t *testing.T, o *OnChange) *Helper {
	t.Helper()
	h, err := New(&Config{JWT: []JWT{{Audience: "a", File: filepath.Join(t.TempDir(), "t")}}, OnChange: o}, Options{Addr: "unix:///nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestOnChangeCommand(t *testing.T) {
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "ran")
	if err := newTestHelper(t, &OnChange{Command: []string{"sh", "-c", "echo ran >> " + out}}).onChange(ctx); err != nil {
		t.Fatalf("on_change: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "ran\n" {
		t.Errorf("command output %q, want it run once", b)
	}
	err := newTestHelper(t, &OnChange{Command: []string{"sh", "-c", "exit 3"}}).onChange(ctx)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("failing command: %v, want exit status 3", err)
	}
	err = newTestHelper(t, &OnChange{Command: []string{"sleep", "10"}, Timeout: durationOf(100 * time.Millisecond)}).onChange(ctx)
	if err == nil || !strings.Contains(err.Error(), "on_change.timeout") {
		t.Errorf("slow command: %v, want it killed at on_change.timeout", err)
	}
}

func TestOnChangeSignal(t *testing.T) {
	dir := t.TempDir()
	got := filepath.Join(dir, "got")
	cmd := exec.Command("sh", "-c", `trap 'echo hup > `+got+`; exit 0' HUP; echo ready; while :; do sleep 0.05; done`)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	buf := make([]byte, 6)
	if _, err := stdout.Read(buf); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "app.pid")
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	if err := newTestHelper(t, &OnChange{Signal: "SIGHUP", PIDFile: pidFile}).onChange(context.Background()); err != nil {
		t.Fatalf("on_change signal: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("signalled process: %v", err)
	}
	if b, _ := os.ReadFile(got); string(b) != "hup\n" {
		t.Errorf("process saw %q, want SIGHUP", b)
	}
	_ = os.WriteFile(pidFile, []byte("not a pid"), 0o644)
	err := newTestHelper(t, &OnChange{Signal: "SIGHUP", PIDFile: pidFile}).onChange(context.Background())
	if err == nil || !strings.Contains(err.Error(), "on_change.pid_file") {
		t.Errorf("bad pid file: %v, want an error naming on_change.pid_file", err)
	}
}

func durationOf(d time.Duration) config.Duration { return config.Duration(d) }
