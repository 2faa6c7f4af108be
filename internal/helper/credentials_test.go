package helper

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/brokerclient"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/testenv"
)

const (
	testNodeID = "spiffe://example.org/node/helper"
	secretV1   = "s3cret-v1"
	secretV2   = "s3cret-v2"
)

// brokerDeployment is an in-process server with an HTTPS listener and a
// broker offering the static credential orders-db (to
// spiffe://example.org/app with context purpose nightly-report), and an
// agent whose Workload API serves the test process /app.
type brokerDeployment struct {
	env    *testenv.Env
	agent  *testenv.Agent
	dir    string
	broker string // the broker's base URL
}

func deployBroker(t *testing.T) *brokerDeployment {
	t.Helper()
	env := testenv.New(t, testenv.WithBroker(t, testenv.Broker{
		Credentials: "orders-db: {provider: static, default_ttl: 10m, max_ttl: 1h}",
		Policy: `
rules:
  - name: app-reads-orders
    credentials: [orders-db]
    when: subject.id == "spiffe://example.org/app" && context.purpose == "nightly-report"
`}))
	dir := t.TempDir()
	if _, err := env.Server.Broker().PutSecret(env.Ctx(), "orders-db", []byte(secretV1)); err != nil {
		t.Fatal(err)
	}
	env.CreateEntry(&commonv1.Entry{SpiffeId: "spiffe://example.org/app", ParentId: testNodeID,
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}}})
	a := env.StartAgent(testNodeID)
	a.AwaitReady()
	// No broker URL from the environment: the helper learns it from the agent.
	t.Setenv(brokerclient.EnvURL, "")
	return &brokerDeployment{env: env, agent: a, dir: dir, broker: "https://" + env.Server.HTTPAddr().String()}
}

// helperYAML writes a helper.yaml for the agent of d with the given body
// (after agent_socket) and the template text, and returns its path.
func (d *brokerDeployment) helperYAML(t *testing.T, name, tmpl, body string) string {
	t.Helper()
	tp := filepath.Join(d.dir, name+".tmpl")
	if err := os.WriteFile(tp, []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(d.dir, name+".yaml")
	text := fmt.Sprintf("agent_socket: %s\n%s", d.agent.SocketPath(), strings.ReplaceAll(body, "TEMPLATE", tp))
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (d *brokerDeployment) helper(t *testing.T, cfgPath string, logs *testenv.LogBuffer) *Helper {
	t.Helper()
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	h, err := New(cfg, Options{Addr: "unix://" + d.agent.SocketPath(), Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Retry: 50 * time.Millisecond, Settle: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

func once(t *testing.T, h *Helper, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return h.Once(ctx)
}

// TestCredentialsOnce: --once writes the SVID files and the rendered
// credential (0600), with the broker found through the agent, and runs
// on_change once after all of them.
func TestCredentialsOnce(t *testing.T) {
	d := deployBroker(t)
	out := filepath.Join(d.dir, "db.properties")
	ran := filepath.Join(d.dir, "ran")
	tls := filepath.Join(d.dir, "tls")
	cfg := d.helperYAML(t, "once", "password={{.value}}\ncredential={{.credential}}\n", fmt.Sprintf(`x509: {dir: %s, cert: svid.pem, key: svid.key}
credentials:
  - name: orders-db
    context: {purpose: nightly-report}
    ttl: 15m
    template: TEMPLATE
    file: %s
on_change: {command: [sh, -c, 'cat %s > %s; ls %s >> %s']}
`, tls, out, out, ran, tls, ran))
	logs := &testenv.LogBuffer{}
	if err := once(t, d.helper(t, cfg, logs), 30*time.Second); err != nil {
		t.Fatalf("Once: %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil || string(b) != "password="+secretV1+"\ncredential=orders-db\n" {
		t.Fatalf("credential file = %q, %v", b, err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Errorf("credential file mode %v, want 0600", fi.Mode().Perm())
	}
	// on_change saw the credential and the X.509 files in place.
	if r, _ := os.ReadFile(ran); !strings.Contains(string(r), "password="+secretV1) || !strings.Contains(string(r), "svid.key") {
		t.Errorf("on_change saw %q, want the credential and the x509 files", r)
	}
	if strings.Contains(logs.String(), secretV1) {
		t.Errorf("the log holds the credential:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "credential file written") {
		t.Errorf("no log line for the credential file:\n%s", logs)
	}
}

// TestCredentialsOnceFailures: every failure of --once names its reason,
// and fails at once when trying again cannot help.
func TestCredentialsOnceFailures(t *testing.T) {
	d := deployBroker(t)
	cred := func(context, file string) string {
		return fmt.Sprintf("credentials: [{name: orders-db, context: {purpose: %s}, template: TEMPLATE, file: %s}]\n", context, file)
	}
	for _, tc := range []struct {
		name, tmpl, body string
		env              string // SIGNET_BROKER_URL
		timeout          time.Duration
		want             []string // substrings of the error; "" for success
	}{
		{name: "denied", tmpl: "{{.value}}", body: cred("other", "FILE"), timeout: 30 * time.Second,
			want: []string{"credentials[0] orders-db", "refused", "unauthorized_client", "policy denies"}},
		{name: "missing field", tmpl: "user={{.username}}", body: cred("nightly-report", "FILE"), timeout: 30 * time.Second,
			want: []string{"credential orders-db", "credentials[0].template", `no field "username"`, "it has credential, expires_at, lease_id, value"}},
		{name: "broker unreachable", tmpl: "{{.value}}", body: "broker_url: https://127.0.0.1:1\n" + cred("nightly-report", "FILE"), timeout: 2 * time.Second,
			want: []string{"credentials[0] orders-db", "broker 127.0.0.1:1"}},
		{name: "bad url in the environment", tmpl: "{{.value}}", body: cred("nightly-report", "FILE"), env: "http://x", timeout: 2 * time.Second,
			want: []string{brokerclient.EnvURL, "want https://HOST:PORT"}},
		{name: "broker_url wins over the environment", tmpl: "{{.value}}", body: "broker_url: BROKER\n" + cred("nightly-report", "FILE"),
			env: "https://127.0.0.1:1", timeout: 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(brokerclient.EnvURL, tc.env)
			file := filepath.Join(d.dir, strings.ReplaceAll(tc.name, " ", "-")+".out")
			body := strings.ReplaceAll(strings.ReplaceAll(tc.body, "FILE", file), "BROKER", d.broker)
			h := d.helper(t, d.helperYAML(t, strings.ReplaceAll(tc.name, " ", "-"), tc.tmpl, body), &testenv.LogBuffer{})
			err := once(t, h, tc.timeout)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Once = %v, want success", err)
				}
				if b, _ := os.ReadFile(file); string(b) != secretV1 {
					t.Errorf("credential file %q, want the secret", b)
				}
				return
			}
			if err == nil {
				t.Fatalf("Once = nil, want an error with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Once = %v, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secretV1) {
				t.Errorf("the error holds the secret: %v", err)
			}
			if _, err := os.Stat(file); err == nil {
				t.Error("the credential file was written")
			}
		})
	}
}

// TestCredentialsRenewed: the daemon replaces a 3s lease before it
// expires, so the file follows a rotated secret, and on_change runs after
// every rewrite; the old lease is left to expire.
func TestCredentialsRenewed(t *testing.T) {
	d := deployBroker(t)
	out := filepath.Join(d.dir, "db.properties")
	ran := filepath.Join(d.dir, "ran")
	cfg := d.helperYAML(t, "daemon", "password={{.value}}\nlease={{.lease_id}}\n", fmt.Sprintf(`credentials:
  - {name: orders-db, context: {purpose: nightly-report}, ttl: 3s, template: TEMPLATE, file: %s}
on_change: {command: [sh, -c, 'cat %s >> %s']}
`, out, out, ran))
	logs := &testenv.LogBuffer{}
	h := d.helper(t, cfg, logs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	}()
	var first string
	testenv.WaitFor(t, 30*time.Second, "the first credential file", func() error {
		b, err := os.ReadFile(out)
		first = string(b)
		return err
	})
	if !strings.HasPrefix(first, "password="+secretV1+"\n") {
		t.Fatalf("first file %q", first)
	}
	if _, _, err := d.env.Server.Broker().RotateSecret(d.env.Ctx(), "orders-db", []byte(secretV2)); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the file rewritten with a new lease of the rotated secret", func() error {
		b, _ := os.ReadFile(out)
		if !strings.HasPrefix(string(b), "password="+secretV2+"\n") {
			return fmt.Errorf("file %q", b)
		}
		return nil
	})
	testenv.WaitFor(t, 30*time.Second, "on_change after the rewrite", func() error {
		b, _ := os.ReadFile(ran)
		if !strings.Contains(string(b), "password="+secretV2) {
			return fmt.Errorf("on_change saw %q", b)
		}
		return nil
	})
	b, _ := os.ReadFile(ran)
	if !strings.HasPrefix(string(b), first) {
		t.Errorf("the first on_change saw %q, want the first file %q", b, first)
	}
	leases, err := d.env.Server.Broker().ListLeases(d.env.Ctx(), store.LeaseFilter{Credential: "orders-db"})
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) < 2 {
		t.Errorf("%d leases of orders-db, want one per renewal", len(leases))
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Errorf("credential file mode %v, want 0600", fi.Mode().Perm())
	}
	if strings.Contains(logs.String(), secretV1) || strings.Contains(logs.String(), secretV2) {
		t.Errorf("the log holds the credential:\n%s", logs)
	}
}

// TestDaemonTemplateError: a template that does not fit its credential
// ends the daemon at the first render, naming the field and the
// credential.
func TestDaemonTemplateError(t *testing.T) {
	d := deployBroker(t)
	out := filepath.Join(d.dir, "db.properties")
	cfg := d.helperYAML(t, "bad", "{{.password}}", fmt.Sprintf(
		"credentials: [{name: orders-db, context: {purpose: nightly-report}, template: TEMPLATE, file: %s}]\n", out))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := d.helper(t, cfg, &testenv.LogBuffer{}).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), `credential orders-db: credentials[0].template: the credential has no field "password"`) {
		t.Fatalf("Run = %v, want the template error", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run ended only at the deadline")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("the credential file was written")
	}
}

func TestNewParsesTemplates(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.tmpl")
	if err := os.WriteFile(bad, []byte("{{.value"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Credentials: []Credential{
		{Name: "a", Template: bad, File: filepath.Join(dir, "a")},
		{Name: "b", Template: filepath.Join(dir, "missing.tmpl"), File: filepath.Join(dir, "b")},
	}}
	_, err := New(cfg, Options{Addr: "unix:///nonexistent"})
	if err == nil {
		t.Fatal("New with bad templates = nil error")
	}
	for _, w := range []string{"credentials[0].template:1:", bad, "read credentials[1].template", "missing.tmpl"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("New = %v, want it to contain %q", err, w)
		}
	}
}

func TestRenewAfter(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		exp  time.Time
		want time.Duration
	}{
		{"15m lease", now.Add(15 * time.Minute), 10 * time.Minute},
		{"3s lease", now.Add(3 * time.Second), 2 * time.Second},
		{"nearly expired: the floor", now.Add(100 * time.Millisecond), time.Second},
		{"expired: the floor", now.Add(-time.Minute), time.Second},
		{"no expiry stated", time.Time{}, 10 * time.Minute},
	} {
		if got := renewAfter(now, tc.exp, time.Second); got != tc.want {
			t.Errorf("renewAfter(%s) = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestOneOnChangePerChange: writes that overlap (an SVID rotation while a
// credential is being renewed) get one on_change, run after the last of
// them is in place.
func TestOneOnChangePerChange(t *testing.T) {
	dir := t.TempDir()
	a, b, ran := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "ran")
	const settle = 20 * time.Millisecond
	h, err := New(&Config{
		JWT:      []JWT{{Audience: "x", File: a}, {Audience: "y", File: b}},
		OnChange: &OnChange{Command: []string{"sh", "-c", fmt.Sprintf("echo $(cat %s) $(cat %s) >> %s", a, b, ran)}},
	}, Options{Addr: "unix:///nonexistent", Settle: settle})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	loop := make(chan struct{})
	go func() { h.onChangeLoop(ctx); close(loop) }()
	defer func() { cancel(); <-loop }()
	write := func(p, v string) {
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	runs := func() []string {
		r, _ := os.ReadFile(ran)
		return strings.Split(strings.TrimSpace(string(r)), "\n")
	}
	// Round 1: b is being fetched while a is written and long settled.
	h.begin()
	h.begin()
	write(a, "a1")
	h.done("jwt:"+a, true)
	time.Sleep(20 * settle) // room for a wrong on_change between the two
	write(b, "b1")
	h.done("jwt:"+b, true)
	testenv.WaitFor(t, 10*time.Second, "on_change after round 1", func() error {
		if r := runs(); r[0] == "" {
			return fmt.Errorf("no run yet")
		}
		return nil
	})
	// Round 2: b starts before a is done.
	h.begin()
	write(a, "a2")
	h.begin()
	h.done("jwt:"+a, true)
	time.Sleep(20 * settle)
	write(b, "b2")
	h.done("jwt:"+b, true)
	testenv.WaitFor(t, 10*time.Second, "on_change after round 2", func() error {
		if r := runs(); len(r) < 2 {
			return fmt.Errorf("runs %q", r)
		}
		return nil
	})
	// A failed attempt writes nothing and runs nothing.
	h.begin()
	h.done("jwt:"+a, false)
	time.Sleep(20 * settle)
	if r := runs(); len(r) != 2 || r[0] != "a1 b1" || r[1] != "a2 b2" {
		t.Errorf("on_change runs saw %q, want [a1 b1] then [a2 b2], once each", r)
	}
}
