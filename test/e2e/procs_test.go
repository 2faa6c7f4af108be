package e2e

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// TestAgentServesOnOneP: once it has signed nothing for 5 s, the agent
// runs on one P (signet_agent_gomaxprocs 1); a new entry brings back
// every CPU while its SVID is signed, and one P 5 s later.
func TestAgentServesOnOneP(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: the agent's default is one P already")
	}
	t.Parallel()
	d := deploy(t)
	nodeID := "spiffe://example.org/node/procs"
	create := func(name string) {
		t.Helper()
		if _, errOut, err := signetRun("entry", "create", "--admin-socket", d.adminSock, "--parent-id", nodeID,
			"--spiffe-id", "spiffe://example.org/"+name, "--selector", "unix:uid:"+strconv.Itoa(os.Getuid())); err != nil {
			t.Fatalf("entry create: %v %s", err, errOut)
		}
	}
	create("procs-a")
	_, health := d.startAgent(t, "agent", nodeID)
	gauge := func(want func(float64) bool, what string) func() error {
		return func() error {
			v, err := metric(health, "signet_agent_gomaxprocs")
			if err == nil && !want(v) {
				err = fmt.Errorf("signet_agent_gomaxprocs %v, want %s", v, what)
			}
			return err
		}
	}
	one := gauge(func(v float64) bool { return v == 1 }, "1")
	waitFor(t, time.Minute, one)

	create("procs-b")
	// Signed within the sync the push starts; the default stays for the
	// 5 s grace after it, which is what makes it observable here.
	waitFor(t, 30*time.Second, gauge(func(v float64) bool { return v >= 2 }, "every CPU"))
	waitFor(t, 30*time.Second, func() error {
		v, err := metric(health, "signet_agent_cached_x509_svids")
		if err == nil && v < 2 {
			err = fmt.Errorf("%v SVIDs cached, want 2", v)
		}
		return err
	})
	waitFor(t, time.Minute, one)
}
