// Package e2e tests Signet across real processes: it builds the signet
// binary, runs a server and an agent as separate processes on a temp dir,
// and talks to the agent's Workload API with go-spiffe's own client, the way
// any SPIFFE workload would.
package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
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

	"github.com/signet-id/signet/internal/testenv"
)

var signetBin string

func TestMain(m *testing.M) {
	if os.Getenv(ciClientEnv) != "" {
		os.Exit(ciClientMain())
	}
	if os.Getenv(loadClientEnv) != "" {
		os.Exit(loadClientMain())
	}
	if os.Getenv(floorServerEnv) != "" {
		os.Exit(floorServerMain())
	}
	dir, err := os.MkdirTemp("", "signet-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Readable by the unprivileged caller of the PermissionDenied check.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	signetBin = filepath.Join(dir, "signet")
	if bin := os.Getenv("SIGNET_E2E_BIN"); bin != "" {
		signetBin = bin // a prebuilt binary: benchmarks compare builds with it
	} else {
		if out, err := goBuild(signetBin, "../../cmd/signet"); err != nil {
			fmt.Fprintf(os.Stderr, "build signet: %v\n%s", err, out)
			os.Exit(2)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goBuild builds pkg with go build args into the executable out. The
// linker's output is copied to out with plain writes and removed: a binary
// the linker has just written maps more of itself on each page fault (its
// page cache came from the linker's own writes), which showed as 7–13 MB
// more RssFile for the server than the same bytes copied, enough to decide
// a peak-RSS comparison; a copy, like an installed binary, does not.
func goBuild(out string, args ...string) ([]byte, error) {
	linked := out + ".link"
	defer os.Remove(linked)
	msg, err := exec.Command("go", append([]string{"build", "-o", linked}, args...)...).CombinedOutput()
	if err != nil {
		return msg, err
	}
	return msg, copyExecutable(linked, out)
}

// copyExecutable copies the file src to a new executable dst.
func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	w, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(struct{ io.Writer }{w}, in); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// proc is a long-running signet process whose output is kept for failure
// reports.
type proc struct {
	cmd *exec.Cmd
	out *testenv.LogBuffer
}

func start(t *testing.T, name string, args ...string) *proc { return startTB(t, name, args...) }

func startTB(t testing.TB, name string, args ...string) *proc {
	return startEnvTB(t, name, signetBin, nil, args...)
}

// startEnvTB starts the signet binary bin with env added to this process's
// environment.
func startEnvTB(t testing.TB, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), out: &testenv.LogBuffer{}}
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
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

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// signet runs a short signet command and returns its stdout.
func signet(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := signetRun(args...)
	if err != nil {
		t.Fatalf("signet %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func signetRun(args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(signetBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	if err := testenv.Poll(timeout, f); err != nil {
		t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
	}
}

// logs reports whether the process's output holds s, waiting up to
// timeout for it.
func (p *proc) logs(s string, timeout time.Duration) bool {
	return testenv.Poll(timeout, func() error {
		if !strings.Contains(p.out.String(), s) {
			return fmt.Errorf("no %q in the output", s)
		}
		return nil
	}) == nil
}

func waitFor(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	if err := testenv.Poll(timeout, f); err != nil {
		tb.Fatalf("still failing after %s: %v", timeout, err)
	}
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel() // its own dirs and ports: runs beside TestAgentOutlivesServerOutage
	dir := t.TempDir()
	// The socket directory must be reachable by the unprivileged caller of
	// the PermissionDenied check.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	serverDir := filepath.Join(dir, "server")
	adminSock := filepath.Join(serverDir, "admin.sock")
	agentDir := filepath.Join(dir, "agent")
	sockDir := filepath.Join(dir, "run")
	socket := filepath.Join(sockDir, "agent.sock")
	td := spiffeid.RequireTrustDomainFromString("example.org")
	nodeID := "spiffe://example.org/node/e2e"
	myID := spiffeid.RequireFromPath(td, "/e2e/me")
	uid := os.Getuid()

	startServer := func() *proc {
		p := start(t, "server", "server", "run", "--trust-domain", td.Name(), "--data-dir", serverDir,
			"--bind-address", "127.0.0.1:0", "--log-level", "debug", "--log-format", "text")
		eventually(t, 30*time.Second, "server healthcheck", func() error {
			_, errOut, err := signetRun("healthcheck", "--admin-socket", adminSock)
			if err != nil {
				return fmt.Errorf("%v: %s", err, errOut)
			}
			return nil
		})
		return p
	}
	server := startServer()
	addr, _ := serverAddrs(t, server)

	bundlePath := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundlePath, []byte(signet(t, "bundle", "show", "--admin-socket", adminSock)), 0o644); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(signet(t, "token", "create", "--admin-socket", adminSock, "--spiffe-id", nodeID))
	if len(token) < 20 || strings.ContainsAny(token, " \n") {
		t.Fatalf("token create printed %q, want the token alone", token)
	}
	signet(t, "entry", "create", "--admin-socket", adminSock, "--parent-id", nodeID, "--spiffe-id", myID.String(),
		"--selector", "unix:uid:"+strconv.Itoa(uid), "--x509-ttl", "6s", "--jwt-ttl", "1m")

	t.Run("agent refuses an untrusted or unreachable server", func(t *testing.T) {
		other := filepath.Join(dir, "other-ca.pem")
		writeSelfSignedCA(t, other)
		_, errOut, err := signetRun("agent", "run", "--server-address", addr, "--trust-bundle", other, "--join-token", "x",
			"--socket", filepath.Join(dir, "x.sock"), "--data-dir", filepath.Join(dir, "x"), "--log-level", "error")
		if err == nil || !strings.Contains(errOut, "is not trusted") {
			t.Errorf("agent with a foreign trust bundle: %v, stderr %q; want a trust error", err, errOut)
		}
		// Port 1 (tcpmux) is below the ephemeral range and nothing here
		// serves it: the connection is refused.
		_, errOut, err = signetRun("agent", "run", "--server-address", "127.0.0.1:1", "--trust-bundle", bundlePath, "--join-token", "x",
			"--socket", filepath.Join(dir, "y.sock"), "--data-dir", filepath.Join(dir, "y"), "--attest-timeout", "1s", "--log-level", "error")
		if err == nil || !strings.Contains(errOut, "cannot reach the server") {
			t.Errorf("agent with an unreachable server: %v, stderr %q; want a reachability error", err, errOut)
		}
	})

	agentArgs := []string{"agent", "run", "--server-address", addr, "--trust-bundle", bundlePath,
		"--socket", socket, "--data-dir", agentDir, "--sync-interval", "200ms", "--log-level", "debug", "--log-format", "text"}
	agent := start(t, "agent", append(agentArgs, "--join-token", token)...)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		t.Fatalf("workloadapi.New: %v", err)
	}
	defer client.Close()

	var x *workloadapi.X509Context
	eventually(t, 30*time.Second, "fetch X509-SVID", func() error {
		fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
		defer fcancel()
		x, err = client.FetchX509Context(fctx)
		return err
	})

	signet(t, "healthcheck", "--agent-socket", socket)

	t.Run("x509 svid verifies against the fetched bundle", func(t *testing.T) {
		svid := x.DefaultSVID()
		if svid.ID != myID {
			t.Fatalf("SVID ID = %s, want %s", svid.ID, myID)
		}
		id, _, err := x509svid.Verify(svid.Certificates, x.Bundles)
		if err != nil || id != myID {
			t.Fatalf("x509svid.Verify = %v, %v; want %s", id, err, myID)
		}
		if ttl := svid.Certificates[0].NotAfter.Sub(svid.Certificates[0].NotBefore); ttl > 20*time.Second {
			t.Errorf("SVID lifetime = %s, want about 6s (+ backdating)", ttl)
		}
	})

	t.Run("jwt svid validates against the fetched jwt bundles", func(t *testing.T) {
		js, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "e2e"})
		if err != nil {
			t.Fatalf("FetchJWTSVID: %v", err)
		}
		bundles, err := client.FetchJWTBundles(ctx)
		if err != nil {
			t.Fatalf("FetchJWTBundles: %v", err)
		}
		parsed, err := jwtsvid.ParseAndValidate(js.Marshal(), bundles, []string{"e2e"})
		if err != nil || parsed.ID != myID {
			t.Fatalf("ParseAndValidate = %v, %v; want %s", parsed, err, myID)
		}
		if _, err := jwtsvid.ParseAndValidate(js.Marshal(), bundles, []string{"someone-else"}); err == nil {
			t.Error("token validated for another audience")
		}
		got, err := client.ValidateJWTSVID(ctx, js.Marshal(), "e2e")
		if err != nil || got.ID != myID {
			t.Errorf("ValidateJWTSVID = %v, %v", got, err)
		}
	})

	t.Run("rotated svid is pushed on the stream", func(t *testing.T) {
		first := x.DefaultSVID().Certificates[0].SerialNumber.String()
		w := &serialWatcher{updates: make(chan string, 16)}
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		defer wcancel()
		go func() { _ = client.WatchX509Context(wctx, w) }()
		for {
			select {
			case s := <-w.updates:
				if s != first {
					return
				}
			case <-wctx.Done():
				t.Fatalf("no rotated SVID within 20s (first serial %s)", first)
			}
		}
	})

	t.Run("caller without an entry gets PermissionDenied", func(t *testing.T) {
		if uid != 0 {
			t.Skip("needs root to run a caller under another uid")
		}
		if err := os.Chmod(sockDir, 0o755); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(signetBin, "svid", "fetch", "--socket", socket, "--timeout", "5s")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err == nil {
			t.Fatalf("svid fetch as uid 65534 succeeded: %s", stdout.String())
		}
		if !strings.Contains(stderr.String(), "no identity issued") {
			t.Fatalf("svid fetch as uid 65534: %v, stderr %q; want a PermissionDenied explanation", err, stderr.String())
		}
	})

	t.Run("admin socket refuses non-admin uids", func(t *testing.T) {
		if uid != 0 {
			t.Skip("needs root to run a caller under another uid")
		}
		// Loosen the file permissions to prove the server's own peer-uid
		// check holds on its own.
		for _, p := range []string{serverDir, adminSock} {
			if err := os.Chmod(p, 0o777); err != nil {
				t.Fatal(err)
			}
		}
		defer os.Chmod(serverDir, 0o700)
		defer os.Chmod(adminSock, 0o600)
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(signetBin, "entry", "list", "--admin-socket", adminSock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "permission denied: only root, the server's user and admin_uids may use the admin socket") {
			t.Fatalf("entry list as uid 65534: %v, stdout %q, stderr %q; want refusal", err, stdout.String(), stderr.String())
		}
	})

	t.Run("cli svid fetch writes files", func(t *testing.T) {
		out := filepath.Join(dir, "svids")
		signet(t, "svid", "fetch", "--socket", socket, "--write", out)
		fi, err := os.Stat(filepath.Join(out, "svid.0.key"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("svid.0.key: %v, mode %v; want 0600", err, fi.Mode())
		}
	})

	parent := t
	t.Run("agent restarts without a token", func(t *testing.T) {
		agent.stop()
		agent = start(parent, "agent (restarted)", agentArgs...)
		eventually(t, 30*time.Second, "fetch after agent restart", func() error {
			fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
			defer fcancel()
			_, err := client.FetchX509SVID(fctx)
			return err
		})
		// JWT-SVIDs are cached in memory only: fetch one so the next
		// subtest can check it is served while the server is down.
		if _, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "e2e"}); err != nil {
			t.Fatalf("FetchJWTSVID after restart: %v", err)
		}
	})

	t.Run("agent keeps serving while the server is stopped", func(t *testing.T) {
		// The workload SVIDs live 6 s: stop the server just after a
		// rotation, so the one the agent holds is still valid when it is
		// fetched below, however slow the machine (stopping at the end of
		// its life left nothing valid to serve, and no server to renew it).
		eventually(t, 30*time.Second, "a freshly rotated SVID before stopping the server", func() error {
			fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
			defer fcancel()
			svid, err := client.FetchX509SVID(fctx)
			if err != nil {
				return err
			}
			if left := time.Until(svid.Certificates[0].NotAfter); left < 5*time.Second {
				return fmt.Errorf("the SVID has %s left", left)
			}
			return nil
		})
		server.stop()
		time.Sleep(1 * time.Second) // several failed syncs
		fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
		defer fcancel()
		svid, err := client.FetchX509SVID(fctx)
		if err != nil {
			t.Fatalf("FetchX509SVID with the server down: %v", err)
		}
		if svid.ID != myID {
			t.Errorf("SVID ID = %s, want %s", svid.ID, myID)
		}
		if _, err := client.FetchJWTSVID(fctx, jwtsvid.Params{Audience: "e2e"}); err != nil {
			t.Errorf("cached JWT-SVID with the server down: %v", err)
		}
	})
}

// writeSelfSignedCA writes a CA certificate of another trust domain.
func writeSelfSignedCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"elsewhere"}},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org"}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// serialWatcher reports the serial of every default SVID pushed.
type serialWatcher struct{ updates chan string }

func (w *serialWatcher) OnX509ContextUpdate(x *workloadapi.X509Context) {
	w.updates <- x.DefaultSVID().Certificates[0].SerialNumber.String()
}

func (w *serialWatcher) OnX509ContextWatchError(error) {}
