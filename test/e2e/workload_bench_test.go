package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// loadClientEnv makes the test binary act as an external Workload API load
// client (see TestMain): "<method> <clients> <duration>", method x509 or
// jwt. It connects each client (one go-spiffe workloadapi.Client, one
// connection each), warms up with one call per client, prints "ready", runs
// calls back to back for the duration and prints one loadResult as JSON.
const loadClientEnv = "SIGNET_E2E_LOAD_CLIENT"

// loadResult is what a load client reports.
type loadResult struct {
	Calls  int           `json:"calls"`
	Wall   time.Duration `json:"wall"`
	P50    time.Duration `json:"p50"`
	P99    time.Duration `json:"p99"`
	CPU    time.Duration `json:"cpu"` // the client process's user+system time over the measured run
	Errors int           `json:"errors"`
}

func loadClientMain() int {
	f := strings.Fields(os.Getenv(loadClientEnv))
	if len(f) != 3 {
		fmt.Fprintln(os.Stderr, "load client: want \"<x509|jwt> <clients> <duration>\"")
		return 2
	}
	n, err1 := strconv.Atoi(f[1])
	dur, err2 := time.ParseDuration(f[2])
	if err1 != nil || err2 != nil || n < 1 {
		fmt.Fprintln(os.Stderr, "load client: bad clients or duration")
		return 2
	}
	var call func(context.Context, *workloadapi.Client) error
	switch f[0] {
	case "x509":
		call = func(ctx context.Context, c *workloadapi.Client) error { _, err := c.FetchX509SVID(ctx); return err }
	case "jwt":
		call = func(ctx context.Context, c *workloadapi.Client) error {
			_, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "bench"})
			return err
		}
	default:
		fmt.Fprintln(os.Stderr, "load client: method must be x509 or jwt")
		return 2
	}
	ctx := context.Background()
	clients := make([]*workloadapi.Client, n)
	for i := range clients {
		c, err := workloadapi.New(ctx) // SPIFFE_ENDPOINT_SOCKET
		if err != nil {
			fmt.Fprintln(os.Stderr, "load client:", err)
			return 3
		}
		defer c.Close()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = call(wctx, c)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "load client: warm-up call:", err)
			return 3
		}
		clients[i] = c
	}
	fmt.Println("ready")
	cpu0 := selfCPU()
	start := time.Now()
	stop := start.Add(dur)
	durs := make([][]time.Duration, n)
	errs := make([]int, n)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				t0 := time.Now()
				if err := call(ctx, c); err != nil {
					errs[i]++
					continue
				}
				durs[i] = append(durs[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	res := loadResult{Wall: time.Since(start), CPU: selfCPU() - cpu0}
	all := slices.Concat(durs...)
	slices.Sort(all)
	res.Calls = len(all)
	for _, e := range errs {
		res.Errors += e
	}
	if len(all) > 0 {
		res.P50, res.P99 = all[len(all)/2], all[len(all)*99/100]
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	return 0
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the user+system CPU time of process pid, all threads, from
// /proc/<pid>/stat (clock ticks of 10 ms: measure over seconds).
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
	rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
	f := strings.Fields(rest)
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("parse /proc/%d/stat: %q", pid, rest)
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(ut+st) * tick
}

// procSwitches is the number of context switches (voluntary and not) of
// the threads process pid has now, from /proc/<pid>/task/*/status: each
// time one of them slept or was preempted. Threads that exited are not
// counted; the agent's threads live as long as it does.
func procSwitches(tb testing.TB, pid int) int64 {
	tb.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread exited since ReadDir
		}
		for line := range strings.Lines(string(data)) {
			k, v, ok := strings.Cut(line, ":")
			if !ok || (k != "voluntary_ctxt_switches" && k != "nonvoluntary_ctxt_switches") {
				continue
			}
			c, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				tb.Fatalf("parse /proc/%d/task/%s/status %s: %q", pid, t.Name(), k, v)
			}
			n += c
		}
	}
	return n
}

// BenchmarkWorkloadAPIProcesses drives the agent process's Workload API
// from an external go-spiffe client process (1 and 16 clients, each with its
// own connection; FetchX509SVID and FetchJWTSVID with a cached token) and
// reports calls/s, p50/p99, the CPU per call of the agent and of the
// client, each from its own process accounting over the measured run, and
// the agent's context switches per call (its threads going to sleep and
// being woken: what a call costs beyond its own work when the agent is
// otherwise idle). Run with -benchtime 1x; SIGNET_BENCH_SECONDS sets the
// run length (default 5). SIGNET_BENCH_AGENT_GOMAXPROCS sets the agent's
// GOMAXPROCS (default: the agent's own, one P once it has signed nothing for
// 5 s, which the benchmark waits for; set it to the number of CPUs to
// measure the agent on every CPU).
func BenchmarkWorkloadAPIProcesses(b *testing.B) {
	secs := benchSeconds()
	d := deploy(b)
	nodeID := "spiffe://example.org/node/bench"
	if _, errOut, err := signetRun("entry", "create", "--admin-socket", d.adminSock, "--parent-id", nodeID,
		"--spiffe-id", "spiffe://example.org/bench", "--selector", "unix:uid:"+strconv.Itoa(os.Getuid())); err != nil {
		b.Fatalf("entry create: %v %s", err, errOut)
	}
	// SIGNET_BENCH_AGENT_CPU_PROFILE=<file>: the agent writes a CPU profile
	// of the whole run there (cmd/signet's SIGNET_CPU_PROFILE).
	if prof := os.Getenv("SIGNET_BENCH_AGENT_CPU_PROFILE"); prof != "" {
		agentEnv = append(agentEnv, "SIGNET_CPU_PROFILE="+prof)
	}
	if procs := os.Getenv("SIGNET_BENCH_AGENT_GOMAXPROCS"); procs != "" {
		if v, err := strconv.Atoi(procs); err != nil || v < 1 {
			b.Fatalf("SIGNET_BENCH_AGENT_GOMAXPROCS=%q: want a positive number of Ps", procs)
		}
		agentEnv = append(agentEnv, "GOMAXPROCS="+procs)
	}
	b.Cleanup(func() { agentEnv = nil })
	agent, health := d.startAgent(b, "agent", nodeID)
	waitFor(b, time.Minute, func() error {
		v, err := metric(health, "signet_agent_cached_x509_svids")
		if err == nil && v < 1 {
			err = fmt.Errorf("no SVID yet")
		}
		return err
	})
	// The agent drops to one P once it has signed nothing for 5 s
	// (agent.DefaultIdleProcsGrace): measure it serving as it then does.
	// A build without the gauge, or a GOMAXPROCS set above, is measured
	// as it is.
	procs := 0.0
	waitFor(b, time.Minute, func() error {
		v, err := metric(health, "signet_agent_gomaxprocs")
		switch {
		case err != nil && strings.Contains(err.Error(), "not found"):
			return nil
		case err == nil && v != 1 && os.Getenv("SIGNET_BENCH_AGENT_GOMAXPROCS") == "":
			return fmt.Errorf("agent GOMAXPROCS still %v", v)
		}
		procs = v
		return err
	})
	socket := filepath.Join(d.dir, "agent.sock")
	for _, method := range []string{"x509", "jwt"} {
		for _, n := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/clients=%d", method, n), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					res, agentCPU, agentSw := runLoadClient(b, socket, agent.cmd.Process.Pid, method, n, secs)
					reportLoad(b, res, agentCPU, agentSw)
					b.ReportMetric(procs, "agent-gomaxprocs") // 0: the agent did not report or change it
				}
			})
		}
	}
}

// benchSeconds is the length of one measured load run:
// SIGNET_BENCH_SECONDS, default 5 s.
func benchSeconds() time.Duration {
	if v, err := strconv.Atoi(os.Getenv("SIGNET_BENCH_SECONDS")); err == nil && v > 0 {
		return time.Duration(v) * time.Second
	}
	return 5 * time.Second
}

// reportLoad reports one load run: calls/s, p50/p99, the server's CPU and
// context switches per call (agent-…, whichever process served) and the
// client's CPU per call. A run with errors or no calls fails.
func reportLoad(b *testing.B, res loadResult, serverCPU time.Duration, serverSw int64) {
	b.Helper()
	if res.Errors > 0 || res.Calls == 0 {
		b.Fatalf("%d calls, %d errors", res.Calls, res.Errors)
	}
	calls := float64(res.Calls)
	b.ReportMetric(calls/res.Wall.Seconds(), "calls/s")
	b.ReportMetric(float64(res.P50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(res.P99.Microseconds()), "p99-µs")
	b.ReportMetric(float64(serverCPU.Nanoseconds())/1e3/calls, "agent-cpu-µs/call")
	b.ReportMetric(float64(res.CPU.Nanoseconds())/1e3/calls, "client-cpu-µs/call")
	b.ReportMetric(float64(serverSw)/calls, "agent-ctxsw/call")
}

// agentEnv is added to the environment of agents that startAgent starts.
var agentEnv []string

// runLoadClient runs one load client process against socket and returns its
// result with the agent's CPU time and context switches over the client's
// measured run.
func runLoadClient(tb testing.TB, socket string, agentPID int, method string, n int, dur time.Duration) (loadResult, time.Duration, int64) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), loadClientEnv+"="+fmt.Sprintf("%s %d %s", method, n, dur),
		"SPIFFE_ENDPOINT_SOCKET=unix://"+socket)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	var res loadResult
	var cpu0, cpu1 time.Duration
	var sw0, sw1 int64
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "ready":
			cpu0, sw0 = procCPU(tb, agentPID), procSwitches(tb, agentPID)
		case strings.HasPrefix(line, "{"):
			cpu1, sw1 = procCPU(tb, agentPID), procSwitches(tb, agentPID)
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				tb.Fatalf("load client output %q: %v", line, err)
			}
			return res, cpu1 - cpu0, sw1 - sw0
		}
	}
	tb.Fatalf("load client ended without a result: %v", cmd.Wait())
	return res, 0, 0
}
