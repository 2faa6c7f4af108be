package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-id/signet/internal/testenv"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/doctor")

// runDoctor runs `signet doctor args...` in-process and returns its output
// with the run's temporary paths and addresses replaced by placeholders.
func runDoctor(t *testing.T, repl *strings.Replacer, args ...string) (string, error) {
	t.Helper()
	out, errOut, err := execCLI(t, append([]string{"doctor"}, args...)...)
	if errOut != "" {
		t.Errorf("doctor wrote to stderr: %q", errOut)
	}
	return repl.Replace(out), err
}

// checkGolden compares got with testdata/doctor/name, or rewrites it with
// -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "doctor", name)
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("doctor output differs from %s (-want +got):\n%s", path, diff)
	}
}

// wantExit checks doctor's exit status: 0 (nil) when healthy, else 1.
func wantExit(t *testing.T, err error, code int) {
	t.Helper()
	var ee *exitError
	switch {
	case code == 0 && err != nil:
		t.Errorf("doctor error = %v, want exit 0", err)
	case code != 0 && (!errors.As(err, &ee) || ee.code != code):
		t.Errorf("doctor error = %v, want exit %d", err, code)
	}
}

func writeDoctorFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// TestDoctorServerGolden: a server's data dir as a real server left it is
// healthy; the same with a data dir others may write and key files others
// may read has one problem line per file, each with its chmod.
func TestDoctorServerGolden(t *testing.T) {
	env := testenv.New(t)
	env.StopServer()
	dataDir := filepath.Join(env.DataDir, "server")
	cfg := filepath.Join(env.DataDir, "server.yaml")
	writeDoctorFile(t, cfg, "trust_domain: example.org\ndata_dir: "+dataDir+"\nbind_address: 127.0.0.1:0\n", 0o600)
	// Key file names are authority IDs; the schema version grows with
	// every migration.
	keyName := regexp.MustCompile(`keys/[^ ]+\.pem`)
	schema := regexp.MustCompile(`schema version \d+`)
	repl := strings.NewReplacer(env.DataDir, "$TMP")
	norm := func(s string) string {
		return schema.ReplaceAllString(keyName.ReplaceAllString(s, "keys/KEY.pem"), "schema version N")
	}

	out, err := runDoctor(t, repl, "--server", "--config", cfg)
	wantExit(t, err, 0)
	checkGolden(t, "server_healthy.golden", norm(out))

	if err := os.Chmod(dataDir, 0o777); err != nil {
		t.Fatal(err)
	}
	keys, _ := filepath.Glob(filepath.Join(dataDir, "keys", "*.pem"))
	if len(keys) == 0 {
		t.Fatal("the server wrote no key files")
	}
	for _, k := range append(keys, filepath.Join(dataDir, "signet.db")) {
		if err := os.Chmod(k, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err = runDoctor(t, repl, "--server", "--config", cfg)
	wantExit(t, err, 1)
	checkGolden(t, "server_bad_modes.golden", norm(out))

	// --json carries the same checks.
	jout, err := runDoctor(t, repl, "--server", "--config", cfg, "--json")
	wantExit(t, err, 1)
	var rep doctorReport
	if err := json.Unmarshal([]byte(jout), &rep); err != nil {
		t.Fatalf("doctor --json is not JSON: %v\n%s", err, jout)
	}
	if rep.Healthy || rep.Problems != 2+len(keys) || rep.Role != "server" {
		t.Errorf("doctor --json = healthy %v, %d problems, role %q; want unhealthy, %d problems, server", rep.Healthy, rep.Problems, rep.Role, 2+len(keys))
	}
	for _, c := range rep.Checks {
		if !c.OK && c.Fix == "" {
			t.Errorf("problem %q has no fix", c.Detail)
		}
	}
}

// testCA is a self-signed CA of example.org made for one test.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org"}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key}
}

// writeSVID writes an agent SVID for id, valid from nb to na and signed by
// ca, with its key, as the agent persists them.
func (ca testCA) writeSVID(t *testing.T, dir, id string, nb, na time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: nb, NotAfter: na, URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := x509.MarshalPKCS8PrivateKey(key)
	writeDoctorFile(t, filepath.Join(dir, "agent_svid.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o600)
	writeDoctorFile(t, filepath.Join(dir, "agent_key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})), 0o600)
}

// agentSetup is an agent's directories and config for the doctor tests:
// a data dir, a socket in a directory workloads can reach, and the server
// of env.
func agentSetup(t *testing.T, env *testenv.Env, root, extra string) (cfg, dataDir string, repl *strings.Replacer) {
	t.Helper()
	dataDir = filepath.Join(root, "agent")
	run := filepath.Join(root, "run")
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{dataDir, 0o700}, {run, 0o755}} {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	addr := env.Server.Addr().String()
	cfg = filepath.Join(root, "agent.yaml")
	writeDoctorFile(t, cfg, "server_address: "+addr+"\ntrust_domain: example.org\ndata_dir: "+dataDir+
		"\nsocket: "+filepath.Join(run, "agent.sock")+"\n"+extra, 0o600)
	return cfg, dataDir, strings.NewReplacer(root, "$TMP", addr, "$SERVER")
}

// TestDoctorAgentExpiredSVID: an agent whose persisted SVID has expired is
// told so, with how it comes back; the server it trusts checks out.
func TestDoctorAgentExpiredSVID(t *testing.T) {
	env := testenv.New(t)
	cfg, dataDir, repl := agentSetup(t, env, t.TempDir(), "")
	b, err := env.Server.Bundle().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeDoctorFile(t, filepath.Join(dataDir, "bundle.json"), string(b), 0o600)
	newTestCA(t).writeSVID(t, dataDir, "spiffe://example.org/signet/agent/join_token/n1",
		time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC))

	out, err := runDoctor(t, repl, "--agent", "--config", cfg)
	wantExit(t, err, 1)
	checkGolden(t, "agent_expired_svid.golden", out)
}

// TestDoctorAgentUntrustedServer: an agent bootstrapped with another CA's
// bundle gets the exact TLS failure, unknown authority, and the command
// that fetches the right bundle; with the server's own bundle it is healthy.
func TestDoctorAgentUntrustedServer(t *testing.T) {
	env := testenv.New(t)
	other := newTestCA(t)
	root := t.TempDir()
	wrong := filepath.Join(root, "bundle.pem")
	writeDoctorFile(t, wrong, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.cert.Raw})), 0o644)
	tokenFile := filepath.Join(root, "token")
	writeDoctorFile(t, tokenFile, env.JoinToken("spiffe://example.org/node/doctor")+"\n", 0o600)
	cfg, _, repl := agentSetup(t, env, root, "trust_bundle: "+wrong+"\njoin_token_file: "+tokenFile+"\n")

	out, err := runDoctor(t, repl, "--agent", "--config", cfg)
	wantExit(t, err, 1)
	checkGolden(t, "agent_untrusted_server.golden", out)

	var pemBundle []byte
	for _, c := range env.Server.Bundle().X509Authorities() {
		pemBundle = append(pemBundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	writeDoctorFile(t, wrong, string(pemBundle), 0o644)
	out, err = runDoctor(t, repl, "--agent", "--config", cfg)
	wantExit(t, err, 0)
	checkGolden(t, "agent_healthy.golden", out)
}

// TestDoctorConfigProblems: each configuration problem is its own line
// naming the key; flags that contradict each other are refused.
func TestDoctorConfigProblems(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "server.yaml")
	writeDoctorFile(t, cfg, "trust_domain: example.org\ndata_dir: "+dir+"/s\nbind_address: nope\nstore:\n  driver: mysql\n", 0o600)
	out, err := runDoctor(t, strings.NewReplacer(dir, "$TMP"), "--server", "--config", cfg)
	wantExit(t, err, 1)
	for _, want := range []string{
		`PROBLEM  config     bind_address "nope" is not host:port`,
		`PROBLEM  config     store.driver "mysql" is not supported: use sqlite or postgres -- fix: edit $TMP/server.yaml`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	// Without --server or --agent the file says which role it is.
	for file, want := range map[string]string{
		"trust_domain: example.org\ndata_dir: " + dir + "/s\n":     "signet doctor: server",
		"server_address: 127.0.0.1:1\ntrust_domain: example.org\n": "signet doctor: agent",
	} {
		writeDoctorFile(t, cfg, file, 0o600)
		if out, _ := runDoctor(t, strings.NewReplacer(), "--config", cfg); !strings.HasPrefix(out, want) {
			t.Errorf("doctor --config with %q:\n%s\nwant it to start with %q", file, out, want)
		}
	}
	// A --config that names no file: the fix is to create it, not to edit it.
	missing := filepath.Join(dir, "missing.yaml")
	out, err = runDoctor(t, strings.NewReplacer(dir, "$TMP"), "--server", "--config", missing)
	wantExit(t, err, 1)
	if want := "fix: create $TMP/missing.yaml or give --config the file that exists"; !strings.Contains(out, want) {
		t.Errorf("doctor --config missing.yaml lacks %q:\n%s", want, out)
	}
	if _, _, err := execCLI(t, "doctor", "--server", "--agent"); err == nil || !strings.Contains(err.Error(), "one role at a time") {
		t.Errorf("doctor --server --agent = %v", err)
	}
	// A configured workload attestor whose service is not there.
	writeDoctorFile(t, cfg, "server_address: 127.0.0.1:1\ntrust_domain: example.org\ndata_dir: "+dir+"/a\nsocket: "+dir+"/a.sock\n"+
		"workload_attestors:\n  docker: {socket: "+dir+"/docker.sock}\n", 0o600)
	out, err = runDoctor(t, strings.NewReplacer(dir, "$TMP"), "--agent", "--config", cfg)
	wantExit(t, err, 1)
	if want := "PROBLEM  attestor   docker: cannot connect to the Docker API socket $TMP/docker.sock: connect: no such file or directory -- fix: start dockerd"; !strings.Contains(out, want) {
		t.Errorf("doctor with docker configured lacks %q:\n%s", want, out)
	}
	writeDoctorFile(t, cfg, "server_address: [\n", 0o600)
	out, err = runDoctor(t, strings.NewReplacer(dir, "$TMP"), "--agent", "--config", cfg)
	wantExit(t, err, 1)
	if !strings.Contains(out, "PROBLEM  config") {
		t.Errorf("doctor on a malformed file:\n%s", out)
	}
}

// TestDoctorAuthorityTimes: with the clock past the authorities' 5/6 the
// rotation is behind, past their end they are expired, and before what the
// store recorded the clock is wrong.
func TestDoctorAuthorityTimes(t *testing.T) {
	env := testenv.New(t)
	env.StopServer()
	cfg := filepath.Join(env.DataDir, "server.yaml")
	writeDoctorFile(t, cfg, "trust_domain: example.org\ndata_dir: "+filepath.Join(env.DataDir, "server")+"\nbind_address: 127.0.0.1:0\n", 0o600)
	cmd := newDoctorCmd()
	cmd.SetContext(t.Context())
	// The test server's authorities live a day (testenv) from about now.
	for _, tt := range []struct {
		name  string
		now   time.Time
		wants []string
	}{
		{"rotation behind", time.Now().Add(22 * time.Hour), []string{
			"the active x509 authority", "is past 5/6 of its lifetime and has no prepared successor: rotation is behind",
			"fix: check that a server is running, or run: signet authority prepare jwt"}},
		{"expired", time.Now().Add(48 * time.Hour), []string{
			"the active x509 authority", "expired at", "signet authority prepare x509 && signet authority activate x509"}},
		{"clock behind", time.Now().Add(-24 * time.Hour), []string{
			"PROBLEM  clock", "fix: fix the system clock"}},
	} {
		d := &doctor{now: func() time.Time { return tt.now }, timeout: 5 * time.Second}
		rep := d.server(cmd, cfg)
		rep.finish()
		var b strings.Builder
		if err := writeDoctorText(&b, rep); err != nil {
			t.Fatal(err)
		}
		if rep.Healthy {
			t.Errorf("%s: healthy:\n%s", tt.name, b.String())
		}
		for _, w := range tt.wants {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: report lacks %q:\n%s", tt.name, w, b.String())
			}
		}
	}
}
