package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-id/signet/internal/ci/citest"
	"github.com/signet-id/signet/internal/keyfile"
	"github.com/signet-id/signet/internal/store/storetest"
)

// ciClientEnv makes the test binary act as a go-spiffe workload (see
// TestMain): it fetches its X509-SVID and a JWT-SVID from
// SPIFFE_ENDPOINT_SOCKET, validates the JWT-SVID against the Workload
// API's JWT bundles, and prints both IDs.
const ciClientEnv = "SIGNET_E2E_CI_CLIENT"

func ciClientMain() int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	x, err := workloadapi.FetchX509SVID(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fetch x509-svid:", err)
		return 3
	}
	j, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "spiffe://example.org/deployer"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fetch jwt-svid:", err)
		return 4
	}
	bundles, err := workloadapi.FetchJWTBundles(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fetch jwt bundles:", err)
		return 5
	}
	v, err := jwtsvid.ParseAndValidate(j.Marshal(), bundles, []string{"spiffe://example.org/deployer"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "validate jwt-svid:", err)
		return 6
	}
	fmt.Printf("x509=%s jwt=%s\n", x.ID, v.ID)
	return 7 // a distinctive exit code, passed through by signet ci run
}

type ciDeployment struct {
	dir, adminSock, https, bundlePath string
	gh                                *citest.Issuer
}

var httpsRE = regexp.MustCompile(`https=(127\.0\.0\.1:\d+)`)

func deployCI(t *testing.T, gh, gl *citest.Issuer, storeYAML string) *ciDeployment {
	t.Helper()
	d := &ciDeployment{dir: t.TempDir(), gh: gh}
	serverDir := filepath.Join(d.dir, "server")
	d.adminSock = filepath.Join(serverDir, "admin.sock")
	cfg := filepath.Join(d.dir, "server.yaml")
	writeFile(t, cfg, fmt.Sprintf(`trust_domain: example.org
data_dir: %s
bind_address: 127.0.0.1:0
http_address: 127.0.0.1:0
log: {level: info, format: text}
%s
oidc_issuers:
  github:
    issuer: %s
    kind: github
    ca_bundle_path: %s
`, serverDir, storeYAML, gh.URL, gh.CAFile))
	if gl != nil {
		f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "  gitlab:\n    issuer: %s\n    kind: gitlab\n    ca_bundle_path: %s\n", gl.URL, gl.CAFile)
		f.Close()
	}
	p := start(t, "server", "server", "run", "--config", cfg)
	eventually(t, 30*time.Second, "server start", func() error {
		m := httpsRE.FindStringSubmatch(p.out.String())
		if m == nil {
			return fmt.Errorf("no https address logged yet")
		}
		d.https = m[1]
		return nil
	})
	d.bundlePath = filepath.Join(d.dir, "bundle.pem")
	writeFile(t, d.bundlePath, signet(t, "bundle", "show", "--admin-socket", d.adminSock))
	return d
}

func (d *ciDeployment) tokenFile(t *testing.T, name, token string) string {
	path := filepath.Join(d.dir, name+".jwt")
	writeFile(t, path, token)
	return path
}

func TestCIRunAndExchange(t *testing.T) {
	gh := citest.New(t, func() map[string]any { return citest.GitHubClaims("acme/app", "refs/heads/main") })
	gh.Audience = "spiffe://example.org"
	d := deployCI(t, gh, nil, "")
	signet(t, "entry", "create", "--admin-socket", d.adminSock, "--parent-id", "spiffe://example.org/signet/ci/github",
		"--spiffe-id", "spiffe://example.org/ci/acme/app/deploy", "--selector", "github:repository:acme/app",
		"--selector", "github:ref:refs/heads/main", "--selector", "github:environment:production")
	aud := "spiffe://example.org"
	good := func() string {
		return gh.Mint(t, aud, time.Now(), 10*time.Minute, citest.GitHubClaims("acme/app", "refs/heads/main"))
	}
	base := []string{"--server", d.https, "--trust-bundle", d.bundlePath}

	t.Run("run with a go-spiffe client", func(t *testing.T) {
		self, _ := os.Executable()
		cmd := exec.Command(signetBin, append(append([]string{"ci", "run"}, base...), "--token-file", d.tokenFile(t, "run", good()), "--", self)...)
		cmd.Env = append(os.Environ(), ciClientEnv+"=1")
		out, err := cmd.Output()
		ee, _ := err.(*exec.ExitError)
		if ee == nil || ee.ExitCode() != 7 {
			t.Fatalf("signet ci run: %v (want the client's exit code 7)\n%s\n%s", err, out, stderrOf(err))
		}
		if got := strings.TrimSpace(string(out)); got != "x509=spiffe://example.org/ci/acme/app/deploy jwt=spiffe://example.org/ci/acme/app/deploy" {
			t.Errorf("client saw %q", got)
		}
	})
	t.Run("exchange with GitHub's request flow", func(t *testing.T) {
		dir := filepath.Join(d.dir, "svid")
		cmd := exec.Command(signetBin, append(append([]string{"ci", "exchange"}, base...), "--write", dir, "--jwt-audience", "https://vault.example.com")...)
		cmd.Env = append(os.Environ(), "ACTIONS_ID_TOKEN_REQUEST_URL="+gh.RequestURL(), "ACTIONS_ID_TOKEN_REQUEST_TOKEN="+gh.RequestToken,
			"SSL_CERT_FILE="+gh.CAFile)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("signet ci exchange: %v\n%s", err, out)
		}
		svid, err := x509svid.Load(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "svid.key"))
		if err != nil || svid.ID.String() != "spiffe://example.org/ci/acme/app/deploy" {
			t.Fatalf("svid files: %v %v", svid, err)
		}
		if fi, err := os.Stat(filepath.Join(dir, "svid.key")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("svid.key mode %v (%v), want 0600", fi.Mode().Perm(), err)
		}
		if _, err := keyfile.Read(filepath.Join(dir, "bundle.pem")); err != nil {
			t.Error(err)
		}
		jwt, err := os.ReadFile(filepath.Join(dir, "jwt-https_vault.example.com.token"))
		if err != nil || strings.Count(strings.TrimSpace(string(jwt)), ".") != 2 {
			t.Errorf("jwt file: %q %v", jwt, err)
		}
	})
	refused := func(t *testing.T, env []string, args []string, want string) {
		t.Helper()
		cmd := exec.Command(signetBin, append(append([]string{"ci", "exchange"}, base...), append([]string{"--write", t.TempDir()}, args...)...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
			t.Errorf("signet ci exchange %v: %v, output %q; want a one-line error with %q", args, err, out, want)
		}
	}
	t.Run("same token twice refused", func(t *testing.T) {
		f := d.tokenFile(t, "twice", good())
		signet(t, append(append([]string{"ci", "exchange"}, base...), "--token-file", f, "--write", t.TempDir())...)
		refused(t, nil, []string{"--token-file", f}, "invalid_grant")
	})
	t.Run("GitLab variable", func(t *testing.T) {
		// The GitLab path reads $SIGNET_ID_TOKEN; a GitHub job's token
		// stands in (the server checks the issuer, not the variable).
		refused(t, []string{"SIGNET_ID_TOKEN=" + gh.Mint(t, aud, time.Now(), time.Minute, citest.GitHubClaims("acme/app", "refs/heads/dev"))}, nil, "unauthorized_client")
	})
	for name, tc := range map[string]struct{ token, want string }{
		"other repository": {gh.Mint(t, aud, time.Now(), time.Minute, citest.GitHubClaims("evil/app", "refs/heads/main")), "unauthorized_client"},
		"other branch":     {gh.Mint(t, aud, time.Now(), time.Minute, citest.GitHubClaims("acme/app", "refs/heads/dev")), "unauthorized_client"},
		"expired":          {gh.Mint(t, aud, time.Now().Add(-time.Hour), 10*time.Minute, citest.GitHubClaims("acme/app", "refs/heads/main")), "expired"},
		"other audience":   {gh.Mint(t, "spiffe://other.org", time.Now(), time.Minute, citest.GitHubClaims("acme/app", "refs/heads/main")), "invalid_grant"},
		"alg none": {citest.Unsigned(map[string]any{"iss": gh.URL, "aud": aud, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(),
			"repository": "acme/app", "ref": "refs/heads/main", "environment": "production"}), "invalid_grant"},
	} {
		t.Run(name+" refused", func(t *testing.T) { refused(t, nil, []string{"--token-file", d.tokenFile(t, "x", tc.token)}, tc.want) })
	}
}

// TestCIReplayAcrossReplicas: two server processes on one PostgreSQL
// accept a CI token once between them.
func TestCIReplayAcrossReplicas(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	gh := citest.New(t, nil)
	store := fmt.Sprintf("store: {driver: postgres, dsn: %q}", dsn)
	a := deployCI(t, gh, nil, store)
	b := deployCI(t, gh, nil, store)
	signet(t, "entry", "create", "--admin-socket", a.adminSock, "--parent-id", "spiffe://example.org/signet/ci/github",
		"--spiffe-id", "spiffe://example.org/ci/acme/app", "--selector", "github:repository:acme/app")
	mint := func() string {
		return gh.Mint(t, "spiffe://example.org", time.Now(), 10*time.Minute, citest.GitHubClaims("acme/app", "refs/heads/main"))
	}
	// Replica b trusts both replicas' CAs once it has refreshed its bundle.
	eventually(t, 30*time.Second, "replica b serves the entry", func() error {
		_, errOut, err := signetRun("ci", "exchange", "--server", b.https, "--trust-bundle", b.bundlePath, "--write", t.TempDir(),
			"--token-file", a.tokenFile(t, "probe", mint()))
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})
	f := a.tokenFile(t, "shared", mint())
	signet(t, "ci", "exchange", "--server", a.https, "--trust-bundle", a.bundlePath, "--write", t.TempDir(), "--token-file", f)
	_, errOut, err := signetRun("ci", "exchange", "--server", b.https, "--trust-bundle", b.bundlePath, "--write", t.TempDir(), "--token-file", f)
	if err == nil || !strings.Contains(errOut, "already used") {
		t.Fatalf("same token at replica b: %v %q, want invalid_grant already used", err, errOut)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
