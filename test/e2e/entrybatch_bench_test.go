package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/cputime"
	"github.com/signet-id/signet/internal/store"
)

// BenchmarkEntryCreate100k runs `signet entry create --file` with 100,000
// entries against a fresh server process, as an operator would: the CLI
// is its own process and talks to the server over the admin socket. It
// reports entries/s end to end (CLI start to exit), the server's peak
// resident memory (VmHWM) across start-up and the batch, and the CPU time
// of the server and of the CLI for the batch, for the default mode (each
// entry on its own) and for --atomic. Right before each run it measures
// the store's own rate (the same entries, one atomic store.CreateEntries
// on a fresh SQLite store in this process, as internal/store's
// BenchmarkCreateEntries100k does; also alone as sub-benchmark store),
// and reports the run's rate as a share of it (of-store-%), so that each
// comparison is made in one window of a shared machine. Run with
// -benchtime 1x.
func BenchmarkEntryCreate100k(b *testing.B) {
	const n = 100000
	file := filepath.Join(b.TempDir(), "100k.json")
	entries := make([]map[string]any, n)
	stored := make([]store.Entry, n)
	for i := range entries {
		id, parent := fmt.Sprintf("spiffe://example.org/ns/team-%03d/sa/svc-%06d", i%1000, i), fmt.Sprintf("spiffe://example.org/node/agent-%03d", i%500)
		ns, sa := fmt.Sprintf("ns:team-%03d", i%1000), "sa:svc-"+strconv.Itoa(i)
		team := fmt.Sprintf("team-%03d", i%1000)
		entries[i] = map[string]any{
			"spiffe_id": id,
			"parent_id": parent,
			"selectors": []string{"k8s:" + ns, "k8s:" + sa},
			"labels":    map[string]string{"team": team},
		}
		stored[i] = store.Entry{
			SPIFFEID:  spiffeid.RequireFromString(id),
			ParentID:  spiffeid.RequireFromString(parent),
			Selectors: []store.Selector{{Type: "k8s", Value: ns}, {Type: "k8s", Value: sa}},
			Labels:    map[string]string{"team": team},
		}
	}
	data, err := json.Marshal(map[string]any{"entries": entries})
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		b.Fatal(err)
	}
	entries, data = nil, nil
	// storeRun creates the entries with one atomic store.CreateEntries on
	// a fresh SQLite store in this process and returns entries/s and the
	// CPU it took.
	storeRun := func(b *testing.B) (float64, time.Duration) {
		s, err := store.Open(b.Context(), store.Config{DSN: filepath.Join(b.TempDir(), "signet.db")})
		if err != nil {
			b.Fatal(err)
		}
		c0 := cputime.Now()
		start := time.Now()
		res, err := s.CreateEntries(store.WithActor(b.Context(), "bench"), stored, true)
		wall := time.Since(start)
		cpu := cputime.Now() - c0
		s.Close()
		if err != nil || len(res) != n {
			b.Fatalf("CreateEntries = %d results, %v", len(res), err)
		}
		return n / wall.Seconds(), cpu
	}
	b.Run("store", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			rate, cpu := storeRun(b)
			b.ReportMetric(rate, "entries/s")
			b.ReportMetric(cpu.Seconds(), "cpu-s")
		}
	})
	for _, mode := range []string{"default", "atomic"} {
		b.Run(mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				// SIGNET_BENCH_SERVER_PROFILE=DIR: CPU and heap profiles of
				// the server (cmd/signet's SIGNET_CPU_PROFILE, SIGNET_HEAP_PROFILE),
				// and the CLI's CPU profile (MODE.cli.cpu).
				var env, cliEnv []string
				if dir := os.Getenv("SIGNET_BENCH_SERVER_PROFILE"); dir != "" {
					env = []string{"SIGNET_CPU_PROFILE=" + filepath.Join(dir, mode+".cpu"),
						"SIGNET_HEAP_PROFILE=" + filepath.Join(dir, mode+".heap")}
					cliEnv = []string{"SIGNET_CPU_PROFILE=" + filepath.Join(dir, mode+".cli.cpu")}
				}
				d := deployEnv(b, env)
				args := []string{"entry", "create", "--admin-socket", d.adminSock, "--file", file}
				if mode == "atomic" {
					args = append(args, "--atomic")
				}
				// The store's own rate, measured again right before: on a
				// shared machine it moves by a quarter from one minute to
				// the next, so each run is compared with its own.
				storeRate, _ := storeRun(b)
				cpu0 := procCPU(b, d.server.cmd.Process.Pid)
				var stderr bytes.Buffer
				cli := exec.Command(signetBin, args...)
				cli.Stdout, cli.Stderr = io.Discard, &stderr
				cli.Env = append(os.Environ(), cliEnv...)
				start := time.Now()
				if err := cli.Run(); err != nil {
					b.Fatalf("entry create: %v %s", err, stderr.Bytes())
				}
				wall := time.Since(start)
				cpu := procCPU(b, d.server.cmd.Process.Pid) - cpu0
				rate := n / wall.Seconds()
				b.ReportMetric(rate, "entries/s")
				b.ReportMetric(storeRate, "store-entries/s")
				b.ReportMetric(100*rate/storeRate, "of-store-%")
				b.ReportMetric(cpu.Seconds(), "server-cpu-s")
				b.ReportMetric((cli.ProcessState.UserTime() + cli.ProcessState.SystemTime()).Seconds(), "cli-cpu-s")
				b.ReportMetric(float64(procStatusKB(b, d.server.cmd.Process.Pid, "VmHWM"))/1024, "server-peak-rss-MB")
				d.server.stop()
			}
		})
	}
}
