package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkEntryCreate100k runs `signet entry create --file` with 100,000
// entries against a fresh server process, as an operator would: the CLI
// is its own process and talks to the server over the admin socket. It
// reports entries/s end to end (CLI start to exit) and the server's peak
// resident memory (VmHWM) across start-up and the batch, and the server's
// CPU time for the batch, for the default mode (each entry on its own, in
// batches) and for --atomic (one call). Run with -benchtime 1x.
func BenchmarkEntryCreate100k(b *testing.B) {
	const n = 100000
	file := filepath.Join(b.TempDir(), "100k.json")
	entries := make([]map[string]any, n)
	for i := range entries {
		entries[i] = map[string]any{
			"spiffe_id": fmt.Sprintf("spiffe://example.org/ns/team-%03d/sa/svc-%06d", i%1000, i),
			"parent_id": fmt.Sprintf("spiffe://example.org/node/agent-%03d", i%500),
			"selectors": []string{fmt.Sprintf("k8s:ns:team-%03d", i%1000), "k8s:sa:svc-" + strconv.Itoa(i)},
			"labels":    map[string]string{"team": fmt.Sprintf("team-%03d", i%1000)},
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
	for _, mode := range []string{"default", "atomic"} {
		b.Run(mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				// SIGNET_BENCH_SERVER_PROFILE=DIR: CPU and heap profiles of
				// the server (cmd/signet's SIGNET_CPU_PROFILE, SIGNET_HEAP_PROFILE).
				var env []string
				if dir := os.Getenv("SIGNET_BENCH_SERVER_PROFILE"); dir != "" {
					env = []string{"SIGNET_CPU_PROFILE=" + filepath.Join(dir, mode+".cpu"),
						"SIGNET_HEAP_PROFILE=" + filepath.Join(dir, mode+".heap")}
				}
				d := deployEnv(b, env)
				args := []string{"entry", "create", "--admin-socket", d.adminSock, "--file", file}
				if mode == "atomic" {
					args = append(args, "--atomic")
				}
				cpu0 := procCPU(b, d.server.cmd.Process.Pid)
				start := time.Now()
				if _, errOut, err := signetRun(args...); err != nil {
					b.Fatalf("entry create: %v %s", err, errOut)
				}
				wall := time.Since(start)
				cpu := procCPU(b, d.server.cmd.Process.Pid) - cpu0
				b.ReportMetric(n/wall.Seconds(), "entries/s")
				b.ReportMetric(cpu.Seconds(), "server-cpu-s")
				b.ReportMetric(float64(procStatusKB(b, d.server.cmd.Process.Pid, "VmHWM"))/1024, "server-peak-rss-MB")
				d.server.stop()
			}
		})
	}
}
