package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// deployment is a server process plus what an agent needs to join it.
type deployment struct {
	dir, addr, adminSock, bundlePath string
	server                           *proc
}

func deploy(tb testing.TB) *deployment {
	tb.Helper()
	d := &deployment{dir: tb.TempDir()}
	serverDir := filepath.Join(d.dir, "server")
	d.adminSock = filepath.Join(serverDir, "admin.sock")
	d.server = startTB(tb, "server", "server", "run", "--trust-domain", "example.org", "--data-dir", serverDir,
		"--bind-address", "127.0.0.1:0", "--log-level", "info") // info: the "server started" line
	d.addr, _ = serverAddrs(tb, d.server)
	waitFor(tb, 30*time.Second, func() error {
		_, errOut, err := signetRun("healthcheck", "--admin-socket", d.adminSock)
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})
	d.bundlePath = filepath.Join(d.dir, "bundle.pem")
	out, errOut, err := signetRun("bundle", "show", "--admin-socket", d.adminSock)
	if err != nil {
		tb.Fatalf("bundle show: %v %s", err, errOut)
	}
	if err := os.WriteFile(d.bundlePath, []byte(out), 0o644); err != nil {
		tb.Fatal(err)
	}
	return d
}

// startAgent starts an agent for nodeID with a health endpoint, returning
// the process and the health address.
func (d *deployment) startAgent(tb testing.TB, name, nodeID string) (*proc, string) {
	tb.Helper()
	tok, errOut, err := signetRun("token", "create", "--admin-socket", d.adminSock, "--spiffe-id", nodeID)
	if err != nil {
		tb.Fatalf("token create: %v %s", err, errOut)
	}
	bin := signetBin
	if b := os.Getenv("SIGNET_BENCH_AGENT_BIN"); b != "" {
		bin = b // another build of the agent, for before/after comparisons
	}
	p := startEnvTB(tb, name, bin, agentEnv, "agent", "run", "--server-address", d.addr, "--trust-bundle", d.bundlePath,
		"--join-token", strings.TrimSpace(tok), "--socket", filepath.Join(d.dir, name+".sock"),
		"--data-dir", filepath.Join(d.dir, name), "--health-address", "127.0.0.1:0", "--log-level", "info")
	return p, healthAddr(tb, p)
}

// BenchmarkAgent10kEntries measures a fresh agent whose node has 10,000
// entries: time from process start until it holds every X509-SVID, and its
// peak resident memory. Run with -benchtime 1x.
func BenchmarkAgent10kEntries(b *testing.B) {
	const n = 10000
	d := deploy(b)
	var total time.Duration
	var peak int64
	for i := 0; i < b.N; i++ {
		nodeID := fmt.Sprintf("spiffe://example.org/node/big-%d", i)
		d.createEntries(b, nodeID, n)
		start := time.Now()
		p, health := d.startAgent(b, fmt.Sprintf("agent%d", i), nodeID)
		waitFor(b, 5*time.Minute, func() error {
			v, err := metric(health, "signet_agent_cached_x509_svids")
			if err != nil {
				return err
			}
			if v < n {
				return fmt.Errorf("%v of %d SVIDs", v, n)
			}
			return nil
		})
		total += time.Since(start)
		if hwm := procStatusKB(b, p.cmd.Process.Pid, "VmHWM"); hwm > peak {
			peak = hwm
		}
		p.stop()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s-to-all-svids")
	b.ReportMetric(float64(peak)/1024, "peak-rss-MB")
}

// createEntries registers n entries under nodeID with one atomic
// `entry create --file`, as an operator would.
func (d *deployment) createEntries(tb testing.TB, nodeID string, n int) {
	tb.Helper()
	entries := make([]map[string]any, n)
	for i := range entries {
		entries[i] = map[string]any{
			"spiffe_id": fmt.Sprintf("%s/svc/%05d", strings.Replace(nodeID, "/node/", "/w/", 1), i), "parent_id": nodeID,
			"selectors": []string{"unix:uid:" + strconv.Itoa(100000+i)},
		}
	}
	file := filepath.Join(d.dir, "entries.json")
	data, _ := json.Marshal(map[string]any{"entries": entries})
	if err := os.WriteFile(file, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	if _, errOut, err := signetRun("entry", "create", "--admin-socket", d.adminSock, "--file", file, "--atomic"); err != nil {
		tb.Fatalf("entry create: %v %s", err, errOut)
	}
}

// BenchmarkIdleRSS measures the resident memory of an idle server and an
// idle agent holding one SVID, ten seconds after the agent is ready: all of
// it (VmRSS) and the private part (RssAnon).
func BenchmarkIdleRSS(b *testing.B) {
	d := deploy(b)
	nodeID := "spiffe://example.org/node/idle"
	if _, errOut, err := signetRun("entry", "create", "--admin-socket", d.adminSock, "--parent-id", nodeID,
		"--spiffe-id", "spiffe://example.org/idle", "--selector", "unix:uid:"+strconv.Itoa(os.Getuid())); err != nil {
		b.Fatalf("entry create: %v %s", err, errOut)
	}
	agent, health := d.startAgent(b, "agent", nodeID)
	waitFor(b, time.Minute, func() error {
		v, err := metric(health, "signet_agent_cached_x509_svids")
		if err == nil && v < 1 {
			err = fmt.Errorf("no SVID yet")
		}
		return err
	})
	time.Sleep(10 * time.Second)
	// VmRSS counts the binary's file-backed pages too (shared, reclaimable);
	// RssAnon is the process's private memory.
	for _, p := range []struct {
		name string
		pid  int
	}{{"server", d.server.cmd.Process.Pid}, {"agent", agent.cmd.Process.Pid}} {
		b.ReportMetric(float64(procStatusKB(b, p.pid, "VmRSS"))/1024, p.name+"-rss-MB")
		b.ReportMetric(float64(procStatusKB(b, p.pid, "RssAnon"))/1024, p.name+"-anon-MB")
	}
}

// metric reads one unlabelled sample from a Prometheus endpoint.
func metric(addr, name string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, name)), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// procStatusKB reads a kB field of /proc/<pid>/status.
func procStatusKB(tb testing.TB, pid int, field string) int64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			v, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return v
		}
	}
	tb.Fatalf("%s not in /proc/%d/status", field, pid)
	return 0
}
