package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// deployment is a server process plus what an agent needs to join it.
type deployment struct {
	dir, addr, adminSock, bundlePath string
	server                           *proc
}

func deploy(tb testing.TB) *deployment { tb.Helper(); return deployEnv(tb, nil) }

// deployEnv is deploy with env added to the server process's environment
// and args to its command line.
func deployEnv(tb testing.TB, env []string, args ...string) *deployment {
	tb.Helper()
	d := &deployment{dir: tb.TempDir()}
	serverDir := filepath.Join(d.dir, "server")
	d.adminSock = filepath.Join(serverDir, "admin.sock")
	args = append([]string{"server", "run", "--trust-domain", "example.org", "--data-dir", serverDir,
		"--bind-address", "127.0.0.1:0", "--log-level", "info"}, args...) // info: the "server started" line
	d.server = startEnvTB(tb, "server", signetBin, env, args...)
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
	return d.startAgentBin(tb, oneBinary(), name, nodeID)
}

// agentBinary is how an agent process is started: signet's `agent run`,
// or the slim signet-agent's `run`.
type agentBinary struct {
	name string   // in metric names: "signet" or "signet-agent"
	path string   // the executable
	run  []string // the arguments before the flags
}

func oneBinary() agentBinary {
	return agentBinary{name: "signet", path: signetBin, run: []string{"agent", "run"}}
}

var slimBuild struct {
	once sync.Once
	path string
	err  error
}

// slimAgent builds cmd/signet-agent once, the way signetBin is built, with
// the Makefile's AGENT_TAGS.
func slimAgent(tb testing.TB) agentBinary {
	tb.Helper()
	if b := os.Getenv("SIGNET_BENCH_SLIM_AGENT_BIN"); b != "" {
		// another build of the slim agent, for before/after comparisons
		return agentBinary{name: "signet-agent", path: b, run: []string{"run"}}
	}
	slimBuild.once.Do(func() {
		slimBuild.path = filepath.Join(filepath.Dir(signetBin), "signet-agent")
		out, err := goBuild(slimBuild.path, "-tags", "grpcnotrace", "../../cmd/signet-agent")
		if err != nil {
			slimBuild.err = fmt.Errorf("build signet-agent: %v\n%s", err, out)
		}
	})
	if slimBuild.err != nil {
		tb.Fatal(slimBuild.err)
	}
	return agentBinary{name: "signet-agent", path: slimBuild.path, run: []string{"run"}}
}

// startAgentBin starts an agent with bin, as startAgent does.
func (d *deployment) startAgentBin(tb testing.TB, bin agentBinary, name, nodeID string) (*proc, string) {
	tb.Helper()
	return d.startAgentBinEnv(tb, bin, name, nodeID, agentEnv)
}

// startAgentBinEnv is startAgentBin with env added to the agent's
// environment.
func (d *deployment) startAgentBinEnv(tb testing.TB, bin agentBinary, name, nodeID string, env []string) (*proc, string) {
	tb.Helper()
	tok, errOut, err := signetRun("token", "create", "--admin-socket", d.adminSock, "--spiffe-id", nodeID)
	if err != nil {
		tb.Fatalf("token create: %v %s", err, errOut)
	}
	args := append(append([]string{}, bin.run...), "--server-address", d.addr, "--trust-bundle", d.bundlePath,
		"--join-token", strings.TrimSpace(tok), "--socket", filepath.Join(d.dir, name+".sock"),
		"--data-dir", filepath.Join(d.dir, name), "--health-address", "127.0.0.1:0", "--log-level", "info")
	path := bin.path
	if b := os.Getenv("SIGNET_BENCH_AGENT_BIN"); b != "" && bin.name == "signet" {
		path = b // another build of the one-binary agent, for before/after comparisons
	}
	p := startEnvTB(tb, name, path, env, args...)
	return p, healthAddr(tb, p)
}

// BenchmarkAgent10kEntries measures a fresh agent whose node has 10,000
// entries, for the one signet binary and the slim signet-agent: time from
// process start until it holds every X509-SVID, its peak resident memory
// (VmHWM) and the CPU it used (user+system, from /proc/PID/stat: the
// machine may be loaded, CPU time is what the agent itself spent), and
// where the time went, from the agent's log lines of the first sync
// ("initial sync timings": attestation, the sync pages, key and CSR
// generation, signing round trips, cache inserts). Run with -benchtime 1x.
//
// With SIGNET_BENCH_GCTRACE=1 the agent runs with GODEBUG=gctrace=1 and the
// benchmark also reports, from its GC trace, the largest live heap a GC
// marked (gc-live-max-MB), the largest heap a GC started at
// (gc-heap-max-MB) and the number of GCs until the agent was ready (gcs):
// what the peak RSS is made of, beside the binary's own pages. It also
// samples the agent's /proc/PID/status every 5 ms and reports the split of
// the largest VmRSS it saw into anonymous and file-backed pages
// (sampled-peak-anon-MB, sampled-peak-file-MB: the binary's own pages).
// SIGNET_BENCH_AGENT_LOG=DIR keeps each agent's output (its log and GC
// trace) in DIR.
//
// It also reports cpu-utilisation, (agent-cpu-s + server-cpu-s) / (2 ×
// s-to-all-svids): how much of the machine's two cores the pair kept busy.
// SIGNET_BENCH_SERVER_CPU_PROFILE=FILE has the server write a CPU profile
// of its whole run to FILE (at its exit, when the benchmark ends), and
// SIGNET_BENCH_AGENT_CPU_PROFILE=FILE each one-binary agent one of its run
// to FILE.signet.<run> (cmd/signet's SIGNET_CPU_PROFILE; the slim agent
// has no such hook).
func BenchmarkAgent10kEntries(b *testing.B) {
	d := deployFresh(b)
	benchFreshAgent(b, d, 10000, slimAgent(b), oneBinary())
}

// BenchmarkAgent100kEntries is BenchmarkAgent10kEntries for a node with
// 100,000 entries (the slim agent only): the sync comes in pages (a single
// message would pass the agent API's 4 MiB limit), so it measures a paged
// sync from scratch, and the server's own CPU is reported beside the
// agent's (server-cpu-s: it signs the 100,000 SVIDs).
func BenchmarkAgent100kEntries(b *testing.B) {
	d := deployFresh(b)
	benchFreshAgent(b, d, 100000, slimAgent(b))
}

// deployFresh is deploy for benchFreshAgent, with the server's CPU
// profile when SIGNET_BENCH_SERVER_CPU_PROFILE asks for one.
func deployFresh(b *testing.B) *deployment {
	b.Helper()
	if prof := os.Getenv("SIGNET_BENCH_SERVER_CPU_PROFILE"); prof != "" {
		return deployEnv(b, []string{"SIGNET_CPU_PROFILE=" + prof})
	}
	return deploy(b)
}

// freshRuns numbers benchFreshAgent's runs in this process.
var freshRuns atomic.Int64

// benchFreshAgent runs BenchmarkAgent10kEntries's measurement with n
// entries for each of bins.
func benchFreshAgent(b *testing.B, d *deployment, n int, bins ...agentBinary) {
	for _, bin := range bins {
		b.Run(bin.name, func(b *testing.B) {
			var total time.Duration
			var peak, cpu, serverCPU int64
			phases := map[string]float64{}
			for i := 0; i < b.N; i++ {
				// -count runs this function again against the same server:
				// every run gets a node and entries of its own.
				run := freshRuns.Add(1)
				nodeID := fmt.Sprintf("spiffe://example.org/node/big-%s-%d-%d", bin.name, n, run)
				d.createEntries(b, nodeID, n)
				serverStart := procCPUms(b, d.server.cmd.Process.Pid)
				start := time.Now()
				env := agentEnv
				if os.Getenv("SIGNET_BENCH_GCTRACE") == "1" {
					env = append(slices.Clip(env), "GODEBUG=gctrace=1")
				}
				if prof := os.Getenv("SIGNET_BENCH_AGENT_CPU_PROFILE"); prof != "" {
					env = append(slices.Clip(env), fmt.Sprintf("SIGNET_CPU_PROFILE=%s.%s.%d", prof, bin.name, run))
				}
				name := fmt.Sprintf("agent-%s-%d-%d", bin.name, n, run)
				p, health := d.startAgentBinEnv(b, bin, name, nodeID, env)
				sampler := sampleRSS(p.cmd.Process.Pid, 5*time.Millisecond)
				waitFor(b, 10*time.Minute, func() error {
					v, err := metric(health, "signet_agent_cached_x509_svids")
					if err != nil {
						return err
					}
					if v < float64(n) {
						return fmt.Errorf("%v of %d SVIDs", v, n)
					}
					return nil
				})
				total += time.Since(start)
				sampled := sampler()
				phases["sampled-peak-anon-MB"] += float64(sampled.anon) / 1024
				phases["sampled-peak-file-MB"] += float64(sampled.file) / 1024
				serverCPU += procCPUms(b, d.server.cmd.Process.Pid) - serverStart
				if hwm := procStatusKB(b, p.cmd.Process.Pid, "VmHWM"); hwm > peak {
					peak = hwm
				}
				cpu += procCPUms(b, p.cmd.Process.Pid)
				for k, v := range initialSyncTimings(b, p) {
					phases[k] += v
				}
				if os.Getenv("SIGNET_BENCH_GCTRACE") == "1" {
					for k, v := range gcTrace(b, p.out.String()) {
						phases[k] += v
					}
				}
				if dir := os.Getenv("SIGNET_BENCH_AGENT_LOG"); dir != "" {
					if err := os.WriteFile(filepath.Join(dir, name+".log"), []byte(p.out.String()), 0o644); err != nil {
						b.Fatal(err)
					}
				}
				p.stop()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s-to-all-svids")
			b.ReportMetric(float64(cpu)/1000/float64(b.N), "agent-cpu-s")
			b.ReportMetric(float64(serverCPU)/1000/float64(b.N), "server-cpu-s")
			b.ReportMetric(float64(peak)/1024, "peak-rss-MB")
			b.ReportMetric(float64(cpu+serverCPU)/1000/(2*total.Seconds()), "cpu-utilisation")
			for k, v := range phases {
				b.ReportMetric(v/float64(b.N), k)
			}
		})
	}
}

// initialSyncTimings reads the agent's "initial sync timings" log line:
// each *_ms field of it (as NAME-ms) and its counts (sign_batches, sync_pages).
func initialSyncTimings(tb testing.TB, p *proc) map[string]float64 {
	tb.Helper()
	var out map[string]float64
	waitFor(tb, 10*time.Second, func() error {
		rec, ok := findRecord(p.out.String(), "initial sync timings")
		if !ok {
			return fmt.Errorf("no \"initial sync timings\" line in the agent's log")
		}
		out = map[string]float64{}
		for k, v := range rec {
			f, ok := v.(float64)
			switch {
			case !ok:
			case strings.HasSuffix(k, "_ms"):
				out[strings.TrimSuffix(k, "_ms")+"-ms"] = f
			case k == "sign_batches" || k == "sync_pages":
				out[k] = f
			}
		}
		return nil
	})
	return out
}

// gcTrace reads the lines GODEBUG=gctrace=1 writes ("gc 7 @0.512s 3%: …,
// 12->13->6 MB, 14 MB goal, …"): the largest heap at a GC's start and
// live heap it marked, in MB (as the runtime rounds them), and how many
// GCs there were.
func gcTrace(tb testing.TB, out string) map[string]float64 {
	tb.Helper()
	var gcs, heapMax, liveMax float64
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "gc ") {
			continue
		}
		for _, f := range strings.Split(line, ", ") {
			heaps, ok := strings.CutSuffix(f, " MB")
			parts := strings.Split(heaps, "->")
			if !ok || len(parts) != 3 {
				continue
			}
			start, err1 := strconv.ParseFloat(parts[0], 64)
			live, err2 := strconv.ParseFloat(parts[2], 64)
			if err1 != nil || err2 != nil {
				tb.Fatalf("gctrace line %q: heap sizes %q", line, f)
			}
			gcs++
			heapMax, liveMax = max(heapMax, start), max(liveMax, live)
		}
	}
	if gcs == 0 {
		tb.Fatal("SIGNET_BENCH_GCTRACE=1 but no gctrace line in the agent's output")
	}
	return map[string]float64{"gcs": gcs, "gc-heap-max-MB": heapMax, "gc-live-max-MB": liveMax}
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

// BenchmarkIdleRSS measures the resident memory of an idle server and of
// an idle agent holding one SVID, 50 seconds after the agent is ready
// (by then it has paged out what ran once after start-up: 30 s quiet):
// all of it (VmRSS) and the private part (RssAnon), for the one signet
// binary's agent and the slim signet-agent, with each binary's size; then
// each agent's VmRSS again right after one FetchX509SVID
// (-rss-after-fetch-MB): what serving a call reads back in of the code
// the agent paged out once ready (internal/memtrim); then once the agent
// has paged it out again after 30 s without calls (-rss-quiet-MB), with
// what the next call takes (-fetch-after-quiet-ms) beside a warm one.
func BenchmarkIdleRSS(b *testing.B) { idleRSS(b, 50*time.Second, b.ReportMetric) }

// TestIdleRSSReported runs BenchmarkIdleRSS's measurement without its
// waits and checks that it reports each figure (binary sizes, idle,
// after-fetch and quiet RSS, fetch times); their values depend on the
// machine and are not asserted.
func TestIdleRSSReported(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	got := map[string]float64{}
	idleRSS(t, 0, func(v float64, name string) { got[name] = v })
	for _, agent := range []string{"slim-agent", "one-binary-agent"} {
		for _, m := range []string{"-rss-MB", "-anon-MB", "-rss-after-fetch-MB", "-anon-after-fetch-MB", "-rss-quiet-MB", "-anon-quiet-MB", "-fetch-after-quiet-ms", "-fetch-warm-ms"} {
			if got[agent+m] <= 0 {
				t.Errorf("%s%s not reported (or not positive): %v", agent, m, got)
			}
		}
	}
	for _, m := range []string{"signet-agent-binary-MB", "signet-binary-MB", "server-rss-MB", "server-anon-MB"} {
		if got[m] <= 0 {
			t.Errorf("%s not reported (or not positive): %v", m, got)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("reported: %v", got)
}

// idleRSS is BenchmarkIdleRSS's measurement, waiting settle after the
// agents are ready and again after the fetch, reporting each figure as
// report(value, name) does b.ReportMetric.
func idleRSS(tb testing.TB, settle time.Duration, report func(float64, string)) {
	tb.Helper()
	d := deploy(tb)
	slim := slimAgent(tb)
	for _, bin := range []agentBinary{slim, oneBinary()} {
		fi, err := os.Stat(bin.path)
		if err != nil {
			tb.Fatal(err)
		}
		report(float64(fi.Size())/(1<<20), bin.name+"-binary-MB")
	}
	type agentProc struct {
		name   string
		pid    int
		socket string // agents only
	}
	procs := []agentProc{{name: "server", pid: d.server.cmd.Process.Pid}}
	for _, bin := range []agentBinary{slim, oneBinary()} {
		nodeID := "spiffe://example.org/node/idle-" + bin.name
		if _, errOut, err := signetRun("entry", "create", "--admin-socket", d.adminSock, "--parent-id", nodeID,
			"--spiffe-id", "spiffe://example.org/idle-"+bin.name, "--selector", "unix:uid:"+strconv.Itoa(os.Getuid())); err != nil {
			tb.Fatalf("entry create: %v %s", err, errOut)
		}
		agent, health := d.startAgentBin(tb, bin, "agent-"+bin.name, nodeID)
		waitFor(tb, time.Minute, func() error {
			v, err := metric(health, "signet_agent_cached_x509_svids")
			if err == nil && v < 1 {
				err = fmt.Errorf("no SVID yet")
			}
			return err
		})
		procs = append(procs, agentProc{map[string]string{"signet": "one-binary-agent", "signet-agent": "slim-agent"}[bin.name],
			agent.cmd.Process.Pid, filepath.Join(d.dir, "agent-"+bin.name+".sock")})
	}
	time.Sleep(settle)
	// VmRSS counts the binary's file-backed pages too (shared, reclaimable);
	// RssAnon is the process's private memory.
	for _, p := range procs {
		report(float64(procStatusKB(tb, p.pid, "VmRSS"))/1024, p.name+"-rss-MB")
		report(float64(procStatusKB(tb, p.pid, "RssAnon"))/1024, p.name+"-anon-MB")
	}
	// Then what a Workload API call brings back in: an agent that paged
	// out start-up's code reads the serving path's pages in again.
	for _, p := range procs {
		if p.socket == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+p.socket))
		cancel()
		if err != nil {
			tb.Fatalf("%s: fetch: %v", p.name, err)
		}
		report(float64(procStatusKB(tb, p.pid, "VmRSS"))/1024, p.name+"-rss-after-fetch-MB")
		report(float64(procStatusKB(tb, p.pid, "RssAnon"))/1024, p.name+"-anon-after-fetch-MB")
	}
	// Once the Workload API has been quiet for 30 s, the agent pages out
	// again what serving read back in; then what the next call costs for
	// reading it back, and what a call costs once it is resident.
	time.Sleep(settle)
	for _, p := range procs {
		if p.socket == "" {
			continue
		}
		report(float64(procStatusKB(tb, p.pid, "VmRSS"))/1024, p.name+"-rss-quiet-MB")
		report(float64(procStatusKB(tb, p.pid, "RssAnon"))/1024, p.name+"-anon-quiet-MB")
		for _, metric := range []string{"-fetch-after-quiet-ms", "-fetch-warm-ms"} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			start := time.Now()
			_, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+p.socket))
			took := time.Since(start)
			cancel()
			if err != nil {
				tb.Fatalf("%s: fetch: %v", p.name, err)
			}
			report(float64(took.Microseconds())/1000, p.name+metric)
		}
	}
}

// metricsClient scrapes without asking for gzip: the benchmarks poll an
// agent's /metrics every 10 ms, and a gzip scrape costs the agent a fresh
// compressor (about 1 MB) whenever the GC has emptied promhttp's pool, so
// scraping with gzip at that rate would add its own garbage to the agent's
// heap and peak RSS being measured. Prometheus, scraping every 15 s or
// more, costs nothing comparable.
var metricsClient = &http.Client{Transport: &http.Transport{DisableCompression: true}}

// metric reads one unlabelled sample from a Prometheus endpoint.
func metric(addr, name string) (float64, error) {
	resp, err := metricsClient.Get("http://" + addr + "/metrics")
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

// rssSample is one reading of /proc/PID/status, in kB.
type rssSample struct{ rss, anon, file int64 }

// sampleRSS reads pid's VmRSS, RssAnon and RssFile every interval until
// the returned function is called, which returns the sample with the
// largest VmRSS. The peak itself (VmHWM) may fall between two samples.
func sampleRSS(pid int, interval time.Duration) func() rssSample {
	stop := make(chan struct{})
	done := make(chan rssSample)
	go func() {
		var best rssSample
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if s, ok := readRSS(pid); ok && s.rss > best.rss {
				best = s
			}
			select {
			case <-stop:
				done <- best
				return
			case <-t.C:
			}
		}
	}()
	return func() rssSample { close(stop); return <-done }
}

// readRSS reads one rssSample; ok is false when the process is gone.
func readRSS(pid int) (s rssSample, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			s.rss = kb
		case "RssAnon":
			s.anon = kb
		case "RssFile":
			s.file = kb
		}
	}
	return s, s.rss > 0
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

// procCPUms is the user+system CPU time of a process so far, in
// milliseconds (/proc/PID/stat utime and stime, in clock ticks of 1/100 s
// on Linux).
func procCPUms(tb testing.TB, pid int) int64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// The command name (field 2) may hold spaces; count from after it.
	_, rest, ok := strings.Cut(string(data), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		tb.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	return (utime + stime) * 10
}
