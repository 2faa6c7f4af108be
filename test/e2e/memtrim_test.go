package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// TestAgentReleasesStartupMemory: once its first sync is complete, an
// agent pages out what start-up alone touched of its binary (logged as
// "released start-up memory") and goes on serving; what a call read back
// in goes out again once the Workload API has been quiet for 30 s;
// --keep-startup-memory turns both off. The agent runs from a copy of
// signet of its own: the kernel pages out only pages no other process
// maps, and the server maps signetBin.
func TestAgentReleasesStartupMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	d := deploy(t)
	bin := oneBinary()
	bin.path = filepath.Join(d.dir, "signet-agent-copy")
	if err := copyExecutable(signetBin, bin.path); err != nil {
		t.Fatal(err)
	}
	for _, keep := range []bool{false, true} {
		name := "trim"
		b := bin
		if keep {
			name = "keep"
			b.run = append(append([]string{}, b.run...), "--keep-startup-memory")
		}
		b.run = append(b.run, "--log-format", "json")
		t.Run(name, func(t *testing.T) {
			nodeID := "spiffe://example.org/node/memtrim-" + name
			if _, errOut, err := signetRun("entry", "create", "--admin-socket", d.adminSock, "--parent-id", nodeID,
				"--spiffe-id", "spiffe://example.org/memtrim-"+name, "--selector", "unix:uid:"+strconv.Itoa(os.Getuid())); err != nil {
				t.Fatalf("entry create: %v %s", err, errOut)
			}
			agent, _ := d.startAgentBin(t, b, "agent-"+name, nodeID)
			socket := filepath.Join(d.dir, "agent-"+name+".sock")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			waitFor(t, time.Minute, func() error { // the socket exists once the agent holds its SVID
				fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
				defer fcancel()
				_, err := workloadapi.FetchX509SVID(fctx, workloadapi.WithAddr("unix://"+socket))
				return err
			})
			if keep {
				if agent.logs("start-up memory", 2*time.Second) {
					t.Fatalf("agent with --keep-startup-memory released it:\n%s", agent.out.String())
				}
				return
			}
			if !agent.logs("start-up memory", 30*time.Second) {
				t.Fatalf("no \"released start-up memory\" line:\n%s", agent.out.String())
			}
			if strings.Contains(agent.out.String(), "kept start-up memory") {
				t.Skipf("this kernel cannot page out the binary:\n%s", agent.out.String())
			}
			rec := logRecord(t, agent.out.String(), "released start-up memory")
			before, after := rec["file_kb_before"].(float64), rec["file_kb_after"].(float64)
			if before == 0 || after >= before {
				t.Errorf("file-backed memory %v kB before, %v kB after: want less after", before, after)
			}
			t.Logf("file-backed %v → %v kB, resident %v → %v kB", before, after, rec["rss_kb_before"], rec["rss_kb_after"])
			// The code paths a call needs come back in from the file, and
			// go out again once the Workload API has been quiet for 30 s.
			if _, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+socket)); err != nil {
				t.Fatalf("fetch after: %v", err)
			}
			served := procStatusKB(t, agent.cmd.Process.Pid, "RssFile")
			waitFor(t, 90*time.Second, func() error {
				if now := procStatusKB(t, agent.cmd.Process.Pid, "RssFile"); now > served-512 {
					return fmt.Errorf("file-backed memory %d kB right after a call, %d kB now: want 512 kB less once quiet", served, now)
				}
				return nil
			})
			if _, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+socket)); err != nil {
				t.Fatalf("fetch once quiet: %v", err)
			}
		})
	}
}
