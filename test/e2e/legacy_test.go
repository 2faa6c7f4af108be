package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/signet-id/signet/internal/testenv"
)

// The legacy-app companions run as separate processes under their own
// group IDs, so that the agent tells them apart (unix:gid selectors) from
// the test process, which plays the clients.
const (
	helperGID  = 4243
	gatewayGID = 4242
)

// legacyDeployment is a server and an agent process with entries for the
// helper, the gateway and two client identities of the test process.
type legacyDeployment struct {
	*deployment
	socket string
}

func deployLegacy(t testing.TB) *legacyDeployment {
	t.Helper()
	d := deploy(t)
	nodeID := "spiffe://example.org/node/legacy"
	d.startAgent(t, "agent", nodeID)
	ld := &legacyDeployment{deployment: d, socket: filepath.Join(d.dir, "agent.sock")}
	for _, e := range []struct {
		id, gid, ttl string
	}{
		{"/helper", strconv.Itoa(helperGID), "30s"}, // JWT-SVIDs live 10m: refreshed after the rotations
		{"/gateway", strconv.Itoa(gatewayGID), "1h"},
		{"/web", strconv.Itoa(os.Getgid()), "1h"},
		{"/intruder", strconv.Itoa(os.Getgid()), "1h"},
	} {
		if _, errOut, err := signetRun("entry", "create", "--admin-socket", d.adminSock, "--parent-id", nodeID,
			"--spiffe-id", "spiffe://example.org"+e.id, "--selector", "unix:gid:"+e.gid, "--x509-ttl", e.ttl, "--jwt-ttl", "10m"); err != nil {
			t.Fatalf("entry create %s: %v %s", e.id, err, errOut)
		}
	}
	return ld
}

// startAs starts signet with args as a process of group gid.
func startAs(t testing.TB, name string, gid int, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(signetBin, args...), out: &testenv.LogBuffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(gid), Groups: []uint32{}}}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, p.out.String())
		}
	})
	return p
}

func TestHelper(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root to run the helper under its own group ID")
	}
	t.Parallel()
	d := deployLegacy(t)
	dir := filepath.Join(d.dir, "app")
	pwFile := filepath.Join(d.dir, "p12pass")
	writeFile(t, pwFile, "changeit\n")
	changes := filepath.Join(d.dir, "changes.log")
	script := filepath.Join(d.dir, "on-change.sh")
	// Records, for every on_change run, the certificate's serial and
	// whether the key on disk is the certificate's key at that moment.
	writeFile(t, script, `#!/bin/sh
c=$(openssl x509 -in "$1/svid.pem" -noout -pubkey)
k=$(openssl pkey -in "$1/svid.key" -pubout)
s=$(openssl x509 -in "$1/svid.pem" -noout -serial)
if [ "$c" = "$k" ]; then echo "$s match" >> "$2"; else echo "$s mismatch" >> "$2"; fi
`)
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	jwtFile := filepath.Join(d.dir, "partner.jwt")
	cfgPath := filepath.Join(d.dir, "helper.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`agent_socket: %s
x509: {dir: %s, cert: svid.pem, key: svid.key, bundle: bundle.pem, pkcs12: app.p12, pkcs12_password_file: %s}
jwt: [{audience: partner, file: %s}]
`, d.socket, dir, pwFile, jwtFile))

	t.Run("once writes every file and exits 0", func(t *testing.T) {
		once := exec.Command(signetBin, "helper", "run", "--once", "--config", cfgPath, "--log-format", "text")
		once.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: helperGID, Groups: []uint32{}}}
		if out, err := once.CombinedOutput(); err != nil {
			t.Fatalf("helper run --once: %v\n%s", err, out)
		}
		checkHelperFiles(t, d, dir, jwtFile)
	})

	t.Run("once without an agent fails with the reason", func(t *testing.T) {
		bad := filepath.Join(d.dir, "bad.yaml")
		writeFile(t, bad, fmt.Sprintf("agent_socket: %s\nx509: {dir: %s, cert: c.pem, key: k.pem}\n", filepath.Join(d.dir, "nope.sock"), filepath.Join(d.dir, "x")))
		_, errOut, err := signetRun("helper", "run", "--once", "--config", bad, "--timeout", "2s")
		if err == nil || !strings.Contains(errOut, "nope.sock") {
			t.Errorf("helper --once without an agent: %v, stderr %q; want a failure naming the socket", err, errOut)
		}
		if _, err := os.Stat(filepath.Join(d.dir, "x", "c.pem")); err == nil {
			t.Error("a file was written without an SVID")
		}
	})

	t.Run("daemon rewrites on rotation and runs on_change once per rotation", func(t *testing.T) {
		f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "on_change: {command: [%s, %s, %s], timeout: 10s}\n", script, dir, changes)
		f.Close()
		p := startAs(t, "helper", helperGID, "helper", "run", "--config", cfgPath, "--log-format", "text")
		// The first write and two rotations of the 30s SVID.
		var lines []string
		waitFor(t, 90*time.Second, func() error {
			b, _ := os.ReadFile(changes)
			lines = strings.Fields(strings.TrimSpace(strings.ReplaceAll(string(b), " match", "")))
			if len(lines) < 3 {
				return fmt.Errorf("on_change ran %d times: %q", len(lines), b)
			}
			return nil
		})
		b, _ := os.ReadFile(changes)
		if strings.Contains(string(b), "mismatch") {
			t.Errorf("on_change saw a certificate and key that disagree:\n%s", b)
		}
		seen := map[string]bool{}
		for _, l := range lines {
			if seen[l] {
				t.Errorf("on_change ran twice for %s (want once per rotation):\n%s", l, b)
			}
			seen[l] = true
		}
		checkHelperFiles(t, d, dir, jwtFile)
		if !strings.Contains(p.out.String(), "exit_status=0") {
			t.Errorf("on_change exit status not logged:\n%s", p.out.String())
		}
		// Old generations are removed.
		ents, _ := os.ReadDir(dir)
		gens := 0
		for _, e := range ents {
			if e.IsDir() {
				gens++
			}
		}
		if gens != 1 {
			t.Errorf("%d generation directories left in %s, want 1", gens, dir)
		}
	})
}

// checkHelperFiles checks what the helper wrote: a certificate and key that
// belong together and verify against the bundle, key files 0600, a
// keystore that opens with the password, and a JWT-SVID for the audience.
func checkHelperFiles(t *testing.T, d *legacyDeployment, dir, jwtFile string) {
	t.Helper()
	want := spiffeid.RequireFromString("spiffe://example.org/helper")
	svid, err := x509svid.Load(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "svid.key"))
	if err != nil {
		t.Fatalf("load the written SVID: %v", err)
	}
	if svid.ID != want {
		t.Errorf("written SVID is %s, want %s", svid.ID, want)
	}
	bundlePEM, err := os.ReadFile(filepath.Join(dir, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundlePEM) {
		t.Fatal("bundle.pem holds no certificate")
	}
	if _, err := svid.Certificates[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("SVID does not verify against bundle.pem: %v", err)
	}
	for _, name := range []string{"svid.key", "app.p12"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", name, fi.Mode().Perm(), err)
		}
	}
	p12, err := os.ReadFile(filepath.Join(dir, "app.p12"))
	if err != nil {
		t.Fatal(err)
	}
	_, cert, _, err := pkcs12.DecodeChain(p12, "changeit")
	if err != nil || cert.SerialNumber.Cmp(svid.Certificates[0].SerialNumber) != 0 {
		t.Errorf("app.p12: %v, or not the same certificate as svid.pem", err)
	}
	tok, err := os.ReadFile(jwtFile)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jwtsvid.ParseInsecure(strings.TrimSpace(string(tok)), []string{"partner"})
	if err != nil || js.ID != want {
		t.Errorf("jwt file: %v, %v; want a JWT-SVID of %s for partner", js, err, want)
	}
}

// backend is `python3 -m http.server`'s handler on 127.0.0.1:0, logging
// the X-Forwarded-Client-Spiffe-Id header of every request it serves.
func startBackend(t *testing.T, dir string) (string, *testenv.LogBuffer) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "index.html"), "hello from the legacy app\n")
	script := `
import http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("request %s header=%s\n" % (self.path, self.headers.get("X-Forwarded-Client-Spiffe-Id")))
        sys.stderr.flush()
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **k: H(*a, directory=sys.argv[1], **k))
print("port", srv.server_address[1], flush=True)
srv.serve_forever()
`
	cmd := exec.Command("python3", "-u", "-c", script, dir)
	logs := &testenv.LogBuffer{}
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("python3: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("backend did not start: %v %s", err, logs.String())
	}
	return "127.0.0.1:" + strings.TrimSpace(strings.TrimPrefix(line, "port")), logs
}

// routeAddrs returns the bound addresses of a gateway's routes, by route
// name, from its JSON log.
func routeAddrs(t testing.TB, p *proc, n int) map[string]string {
	t.Helper()
	addrs := map[string]string{}
	waitFor(t, 30*time.Second, func() error {
		for _, l := range strings.Split(p.out.String(), "\n") {
			var rec struct{ Msg, Route, Addr string }
			if json.Unmarshal([]byte(l), &rec) == nil && rec.Msg == "route listening" {
				addrs[rec.Route] = rec.Addr
			}
		}
		if len(addrs) < n {
			return fmt.Errorf("%d of %d routes listening: %s", len(addrs), n, p.out.String())
		}
		return nil
	})
	return addrs
}

// writeSVID writes an SVID's chain and key as PEM files for curl.
func writeSVID(t *testing.T, dir, name string, svid *x509svid.SVID) (cert, key string) {
	t.Helper()
	c, k, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	writeFile(t, cert, string(c))
	writeFile(t, key, string(k))
	return cert, key
}

// foreignSVID writes a self-signed CA of other.org and an SVID it signed.
func foreignSVID(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{{Scheme: "spiffe", Host: "other.org"}}}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{{Scheme: "spiffe", Host: "other.org", Path: "/web"}}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, key2.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key2)
	cert, key = filepath.Join(dir, "foreign.pem"), filepath.Join(dir, "foreign.key")
	writeFile(t, cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, key, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	return cert, key
}

func curl(args ...string) (string, error) {
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "10"}, args...)...).CombinedOutput()
	return string(out), err
}

func TestGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root to run the gateway under its own group ID")
	}
	t.Parallel()
	d := deployLegacy(t)
	backend, backendLogs := startBackend(t, filepath.Join(d.dir, "www"))

	// The test process's SVIDs: /web (allowed) and /intruder (not).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var x *workloadapi.X509Context
	waitFor(t, 30*time.Second, func() error {
		var err error
		x, err = workloadapi.FetchX509Context(ctx, workloadapi.WithAddr("unix://"+d.socket))
		if err == nil && len(x.SVIDs) < 2 {
			err = fmt.Errorf("%d SVIDs", len(x.SVIDs))
		}
		return err
	})
	files := map[string][2]string{}
	for _, s := range x.SVIDs {
		name := strings.TrimPrefix(s.ID.Path(), "/")
		c, k := writeSVID(t, d.dir, name, s)
		files[name] = [2]string{c, k}
	}
	fc, fk := foreignSVID(t, d.dir)
	files["foreign"] = [2]string{fc, fk}

	cfg := filepath.Join(d.dir, "gateway.yaml")
	writeFile(t, cfg, fmt.Sprintf(`agent_socket: %s
ingress:
  - listen: 127.0.0.1:0
    forward: %s
    protocol: http
    allow: ['subject.id == "spiffe://example.org/web"', 'subject.id.startsWith("spiffe://example.org/batch/")']
  - listen: 127.0.0.1:0
    forward: %s
    protocol: tcp
    allow: ['subject.id == "spiffe://example.org/gateway"']
  - listen: 127.0.0.1:0
    forward: 127.0.0.1:1
    protocol: http
    allow: ['subject.id == "spiffe://example.org/web"']
`, d.socket, backend, backend))
	gw := startAs(t, "gateway", gatewayGID, "gateway", "run", "--config", cfg, "--log-format", "json")
	addrs := routeAddrs(t, gw, 3)
	httpRoute, tcpRoute, deadRoute := addrs["ingress[0]"], addrs["ingress[1]"], addrs["ingress[2]"]

	bundle := filepath.Join(d.dir, "trust.pem")
	bb, _ := x.Bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("example.org"))
	bpem, _ := bb.Marshal()
	writeFile(t, bundle, string(bpem))
	// curl checks the gateway's certificate against the bundle; SPIFFE
	// SVIDs carry no DNS name, so the name is not checked (the gateway's
	// ID is checked in the egress test, by the gateway itself).
	curlAs := func(who, addr string, extra ...string) (string, error) {
		args := []string{"--cacert", bundle, "--tlsv1.3", "--noproxy", "*"}
		if who != "" {
			args = append(args, "--cert", files[who][0], "--key", files[who][1])
		}
		args = append(args, extra...)
		return curl(append(args, "-k", "https://"+addr+"/index.html")...)
	}

	t.Run("allowed SVID gets the page and the backend sees its ID", func(t *testing.T) {
		out, err := curlAs("web", httpRoute, "-H", "X-Forwarded-Client-Spiffe-Id: spiffe://example.org/admin")
		if err != nil || !strings.Contains(out, "hello from the legacy app") {
			t.Fatalf("curl as web: %v %s", err, out)
		}
		waitFor(t, 5*time.Second, func() error {
			if !strings.Contains(backendLogs.String(), "header=spiffe://example.org/web\n") {
				return fmt.Errorf("backend log: %s", backendLogs.String())
			}
			return nil
		})
		if strings.Contains(backendLogs.String(), "admin") {
			t.Errorf("the peer's own X-Forwarded-Client-Spiffe-Id reached the backend: %s", backendLogs.String())
		}
	})

	t.Run("refused before a byte reaches the app", func(t *testing.T) {
		before := strings.Count(backendLogs.String(), "request ")
		for _, who := range []string{"", "foreign", "intruder"} {
			out, err := curlAs(who, httpRoute)
			if err == nil || strings.Contains(out, "hello") {
				t.Errorf("curl as %q: %v %s; want the handshake refused", who, err, out)
			}
		}
		if after := strings.Count(backendLogs.String(), "request "); after != before {
			t.Errorf("backend served %d requests from refused peers", after-before)
		}
		// The gateway logs the refusal after the TLS alert has reached
		// curl, so the line may land a moment after curl exits.
		if err := testenv.Poll(5*time.Second, func() error {
			if !strings.Contains(gw.out.String(), "spiffe://example.org/intruder is not allowed") &&
				!strings.Contains(gw.out.String(), `"spiffe_id":"spiffe://example.org/intruder"`) {
				return errors.New("not logged")
			}
			return nil
		}); err != nil {
			t.Errorf("refusal of the intruder not logged:\n%s", gw.out.String())
		}
	})

	t.Run("a failing backend affects only its route", func(t *testing.T) {
		out, _ := curlAs("web", deadRoute, "-o", "/dev/null", "-w", "%{http_code}")
		if out != "502" {
			t.Errorf("dead backend route: %q, want 502", out)
		}
		if out, err := curlAs("web", httpRoute); err != nil || !strings.Contains(out, "hello") {
			t.Errorf("healthy route after a backend failure: %v %s", err, out)
		}
	})

	t.Run("egress tcp originates mTLS and checks the upstream's ID", func(t *testing.T) {
		ecfg := filepath.Join(d.dir, "egress.yaml")
		writeFile(t, ecfg, fmt.Sprintf(`agent_socket: %s
egress:
  - listen: 127.0.0.1:0
    protocol: tcp
    upstream: %s
    spiffe_id: spiffe://example.org/gateway
  - listen: 127.0.0.1:0
    protocol: tcp
    upstream: %s
    spiffe_id: spiffe://example.org/orders
`, d.socket, tcpRoute, tcpRoute))
		eg := startAs(t, "egress gateway", gatewayGID, "gateway", "run", "--config", ecfg, "--log-format", "json")
		ea := routeAddrs(t, eg, 2)
		out, err := curl("--noproxy", "*", "http://"+ea["egress[0]"]+"/index.html")
		if err != nil || !strings.Contains(out, "hello from the legacy app") {
			t.Fatalf("plain HTTP through egress → ingress tcp: %v %s", err, out)
		}
		c, err := net.Dial("tcp", ea["egress[1]"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprint(c, "GET /index.html HTTP/1.0\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		buf := make([]byte, 64)
		if n, err := c.Read(buf); err == nil {
			t.Errorf("egress to an upstream with the wrong SPIFFE ID answered %q", buf[:n])
		}
		waitFor(t, 5*time.Second, func() error {
			if !strings.Contains(eg.out.String(), "upstream refused or unreachable") {
				return fmt.Errorf("refusal not logged: %s", eg.out.String())
			}
			return nil
		})
	})
}

func TestGatewayWithoutAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	writeFile(t, cfg, "agent_socket: "+filepath.Join(dir, "none.sock")+
		"\ningress: [{listen: '127.0.0.1:0', forward: '127.0.0.1:1', protocol: tcp, allow: ['true']}]\n")
	_, errOut, err := signetRun("gateway", "run", "--config", cfg, "--timeout", "1s")
	if err == nil || !strings.Contains(errOut, "no X.509-SVID from the agent at unix://"+filepath.Join(dir, "none.sock")) {
		t.Errorf("gateway without an agent: %v, stderr %q; want an error naming the agent's socket", err, errOut)
	}
	writeFile(t, cfg, "ingress: [{listen: '127.0.0.1:0', forward: '127.0.0.1:1', protocol: tcp, allow: ['subject.id ==']}]\n")
	_, errOut, err = signetRun("gateway", "run", "--config", cfg)
	if err == nil || !strings.Contains(errOut, "ingress[0] (127.0.0.1:0).allow[0]") {
		t.Errorf("gateway with a rule that does not compile: %v, stderr %q; want an error naming the route", err, errOut)
	}
}
