package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runningAgent is an agent whose Run executes in the background.
type runningAgent struct {
	*Agent
	cancel context.CancelFunc
	errc   chan error
}

func startAgent(t *testing.T, cfg Config) *runningAgent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{Agent: a, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and returns its result (once; later calls return nil).
func (r *runningAgent) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.errc:
		if ok {
			close(r.errc)
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return within 10s of cancellation")
		return nil
	}
}

// waitRun waits for Run to return by itself.
func (r *runningAgent) waitRun(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-r.errc:
		close(r.errc)
		return err
	case <-time.After(timeout):
		t.Fatalf("Run did not return within %s", timeout)
		return nil
	}
}

// gaugeValue reads a gauge from a registry.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("gauge %s not registered", name)
	return 0
}

func testAgentConfig(t *testing.T, srv *fakeServer, token string, logs *syncBuffer) Config {
	dir := t.TempDir()
	return Config{
		ServerAddress: srv.addr,
		TrustBundle:   []*x509.Certificate{srv.ca.cert},
		JoinToken:     token,
		DataDir:       filepath.Join(dir, "data"),
		SocketPath:    filepath.Join(dir, "api.sock"),
		SyncInterval:  50 * time.Millisecond,
		MaxBackoff:    200 * time.Millisecond,
		RPCTimeout:    2 * time.Second,
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func TestAgentEndToEnd(t *testing.T) {
	ca := newTestCA(t, "example.org")
	const token = "join-me-please-0123456789"
	srv := newFakeServer(t, ca, token)
	uid := fmt.Sprintf("unix:uid:%d", os.Getuid())
	srv.put(pe("web", "/web", uid))
	srv.put(pe("other", "/other", "unix:uid:999999"))
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	cfg := testAgentConfig(t, srv, token, logs)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	ra := startAgent(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ra.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady() = %v", err)
	}
	if ra.ID() != srv.agentID {
		t.Errorf("ID() = %s, want %s", ra.ID(), srv.agentID)
	}
	addr := workloadapi.WithAddr("unix://" + cfg.SocketPath)

	// The Workload API serves what the agent synced and had signed.
	svids, err := workloadapi.FetchX509SVIDs(ctx, addr)
	if err != nil {
		t.Fatalf("FetchX509SVIDs() = %v", err)
	}
	if len(svids) != 1 || svids[0].ID.String() != "spiffe://example.org/web" {
		t.Fatalf("FetchX509SVIDs() = %v, want spiffe://example.org/web only", svids)
	}
	jwt, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"}, addr)
	if err != nil || jwt.ID.String() != "spiffe://example.org/web" {
		t.Fatalf("FetchJWTSVID() = %v, %v; want spiffe://example.org/web", jwt, err)
	}
	bundles, err := workloadapi.FetchX509Bundles(ctx, addr)
	if err != nil || !bundles.Has(ca.td) {
		t.Fatalf("FetchX509Bundles() = %v, %v; want the example.org bundle", bundles, err)
	}
	for _, name := range []string{agentSVIDFile, agentKeyFile, bundleFile} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, name)); err != nil {
			t.Errorf("persisted %s: %v", name, err)
		}
	}
	if got := gaugeValue(t, reg, "signet_agent_cached_x509_svids"); got != 2 {
		t.Errorf("cached_x509_svids = %v, want 2 (every entry of the node)", got)
	}
	if got := gaugeValue(t, reg, "signet_agent_agent_svid_expiry_timestamp_seconds"); got < float64(time.Now().Unix()) {
		t.Errorf("agent_svid_expiry_timestamp_seconds = %v, want in the future", got)
	}

	// Changes propagate: an added entry, then its deletion.
	mine := func() int { return len(ra.cache.X509SVIDs(sels(uid))) }
	srv.put(pe("web2", "/web2", uid))
	waitFor(t, "the new entry's SVID", 5*time.Second, func() bool { return mine() == 2 })
	srv.remove("web2")
	waitFor(t, "the deleted entry's SVID to go", 5*time.Second, func() bool { return mine() == 1 })

	// Outage: the cached SVIDs keep being served; one warning per outage.
	srv.stop()
	time.Sleep(600 * time.Millisecond) // a dozen sync intervals
	svids, err = workloadapi.FetchX509SVIDs(ctx, addr)
	if err != nil || len(svids) != 1 {
		t.Fatalf("FetchX509SVIDs() during outage = %v, %v; want the cached SVID", svids, err)
	}
	if _, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "db"}, addr); err != nil {
		t.Errorf("FetchJWTSVID() during outage = %v, want the cached token", err)
	}
	if !ra.Ready() {
		t.Errorf("Ready() during outage = false, want true")
	}
	if n := strings.Count(logs.String(), "sync with server failed: serving cached"); n != 1 {
		t.Errorf("outage warnings = %d, want 1", n)
	}
	srv.start()
	srv.put(pe("web3", "/web3", uid))
	waitFor(t, "recovery after the outage", 10*time.Second, func() bool { return mine() == 2 })
	if !strings.Contains(logs.String(), "server reachable again") {
		t.Errorf("no recovery log line")
	}
	if err := ra.stop(t); err != nil {
		t.Fatalf("Run() after cancel = %v, want nil", err)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the join token appears in the logs")
	}

	// Restart without a token: the persisted SVID is used.
	cfg.JoinToken = ""
	cfg.Registerer = nil
	ra = startAgent(t, cfg)
	if err := ra.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady() after restart = %v", err)
	}
	if ra.ID() != srv.agentID {
		t.Errorf("ID() after restart = %s, want %s", ra.ID(), srv.agentID)
	}
	waitFor(t, "SVIDs after restart", 5*time.Second, func() bool { return mine() == 2 })

	// A second agent on the same data dir fails clearly.
	second, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Run(ctx); !errContains(err, "in use by another agent") {
		t.Errorf("second agent Run() = %v, want data dir in use", err)
	}

	// Eviction: Run ends with ErrEvicted and forgets the agent SVID.
	srv.mu.Lock()
	srv.evicted = true
	srv.mu.Unlock()
	err = ra.waitRun(t, 10*time.Second)
	if !errors.Is(err, ErrEvicted) {
		t.Fatalf("Run() after eviction = %v, want ErrEvicted", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, agentSVIDFile)); !os.IsNotExist(err) {
		t.Errorf("agent SVID still persisted after eviction: %v", err)
	}
	again, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = again.Run(ctx)
	if want := fmt.Sprintf("no valid agent SVID in %s and no --join-token given", cfg.DataDir); !errContains(err, want) {
		t.Errorf("Run() after eviction without token = %v, want %q", err, want)
	}
}

func TestAgentRenewsItsSVID(t *testing.T) {
	ca := newTestCA(t, "example.org")
	srv := newFakeServer(t, ca, "tok")
	srv.agentTTL = 2 * time.Second // lifetime 3s with the 1s backdating: renewal every 1.5s
	srv.put(pe("web", "/web", "unix:uid:1"))
	logs := &syncBuffer{}
	cfg := testAgentConfig(t, srv, "tok", logs)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	ra := startAgent(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ra.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady() = %v", err)
	}
	waitFor(t, "two renewals", 10*time.Second, func() bool { r, _, _ := srv.counts(); return r >= 2 })
	_, _, syncs := srv.counts()
	waitFor(t, "syncs on the renewed SVID", 5*time.Second, func() bool { _, _, s := srv.counts(); return s > syncs+3 })

	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("warnings during routine renewals:\n%s", logs)
	}
	d := &dataDir{path: cfg.DataDir}
	svid, err := d.loadAgentSVID(ca.td, time.Now())
	if err != nil || svid == nil {
		t.Fatalf("persisted agent SVID after renewal: %v, %v", svid, err)
	}
	select {
	case err := <-ra.errc:
		t.Fatalf("Run() returned %v during renewals", err)
	default:
	}
}

func TestAgentRejectedToken(t *testing.T) {
	ca := newTestCA(t, "example.org")
	srv := newFakeServer(t, ca, "right")
	a, err := New(testAgentConfig(t, srv, "wrong", &syncBuffer{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if !errContains(err, "attest node") || !errContains(err, "node attestation failed") {
		t.Errorf("Run() with a rejected token = %v, want an attestation failure", err)
	}
	if err := a.WaitReady(ctx); err == nil {
		t.Errorf("WaitReady() after failed Run = nil, want an error")
	}
}

func TestAgentAttestRetriesUntilServerUp(t *testing.T) {
	ca := newTestCA(t, "example.org")
	srv := newFakeServer(t, ca, "tok")
	srv.stop()
	logs := &syncBuffer{}
	ra := startAgent(t, testAgentConfig(t, srv, "tok", logs))
	time.Sleep(300 * time.Millisecond)
	srv.start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ra.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady() = %v", err)
	}
	if !strings.Contains(logs.String(), "cannot reach the server to attest") {
		t.Errorf("no warning while the server was down")
	}
}

func TestAgentTrustsPersistedBundle(t *testing.T) {
	// After a CA rotation the bootstrap bundle is stale: the persisted
	// bundle must be used instead.
	oldCA := newTestCA(t, "example.org")
	ca := newTestCA(t, "example.org")
	srv := newFakeServer(t, ca, "tok")
	cfg := testAgentConfig(t, srv, "tok", &syncBuffer{})
	d, err := openDataDir(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.saveBundle(ca.bundle(1)); err != nil {
		t.Fatal(err)
	}
	d.Close()
	cfg.TrustBundle = []*x509.Certificate{oldCA.cert}
	ra := startAgent(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ra.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady() with a stale bootstrap bundle and a good persisted one = %v", err)
	}
}
