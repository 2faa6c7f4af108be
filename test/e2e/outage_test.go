package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// TestAgentOutlivesServerOutage stops the server for longer than the
// agent SVID's lifetime (60s TTL, 90s outage). The agent process keeps
// running and serving its workload SVID, and says what it waits for; once
// the server is back it re-establishes itself with its key (agent_reauth),
// and the same process serves a new entry's SVID without a new token.
// It takes about two to three minutes, so it runs in parallel with the
// other end-to-end tests.
func TestAgentOutlivesServerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes and takes minutes")
	}
	t.Parallel()
	const (
		agentTTL = 60 * time.Second
		outage   = 90 * time.Second
	)
	dir := t.TempDir()
	serverDir := filepath.Join(dir, "server")
	adminSock := filepath.Join(serverDir, "admin.sock")
	socket := filepath.Join(dir, "agent.sock")
	nodeID := "spiffe://example.org/node/outage"
	uidSel := "unix:uid:" + strconv.Itoa(os.Getuid())

	// The first server binds port 0; the restarted one binds the address
	// the first bound, which the agent keeps dialling.
	startServer := func(name, addr string) *proc {
		p := start(t, name, "server", "run", "--trust-domain", "example.org", "--data-dir", serverDir,
			"--bind-address", addr, "--agent-ttl", agentTTL.String(), "--ca-ttl", "10m", "--default-x509-ttl", "5m",
			"--log-level", "debug", "--log-format", "text")
		eventually(t, 30*time.Second, name+" healthcheck", func() error {
			_, errOut, err := signetRun("healthcheck", "--admin-socket", adminSock)
			if err != nil {
				return fmt.Errorf("%v: %s", err, errOut)
			}
			return nil
		})
		return p
	}
	server := startServer("server", "127.0.0.1:0")
	addr, _ := serverAddrs(t, server)
	bundlePath := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundlePath, []byte(signet(t, "bundle", "show", "--admin-socket", adminSock)), 0o644); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(signet(t, "token", "create", "--admin-socket", adminSock, "--spiffe-id", nodeID))
	signet(t, "entry", "create", "--admin-socket", adminSock, "--parent-id", nodeID,
		"--spiffe-id", "spiffe://example.org/outage/old", "--selector", uidSel, "--x509-ttl", "5m")
	agent := start(t, "agent", "agent", "run", "--server-address", addr, "--trust-bundle", bundlePath,
		"--join-token", token, "--socket", socket, "--data-dir", filepath.Join(dir, "agent"),
		"--sync-interval", "1s", "--log-level", "debug", "--log-format", "text")

	servedIDs := func() ([]string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr("unix://"+socket))
		if err != nil {
			return nil, err
		}
		var ids []string
		for _, s := range svids {
			ids = append(ids, s.ID.String())
		}
		slices.Sort(ids)
		return ids, nil
	}
	serves := func(want ...string) func() error {
		return func() error {
			got, err := servedIDs()
			if err == nil && !slices.Equal(got, want) {
				err = fmt.Errorf("serving %v, want %v", got, want)
			}
			return err
		}
	}
	eventually(t, 30*time.Second, "the agent serving the first SVID", serves("spiffe://example.org/outage/old"))

	server.stop()
	stopped := time.Now()
	eventually(t, outage, "the agent to report its SVID expired", func() error {
		_, errOut, err := signetRun("healthcheck", "--agent-socket", socket)
		if err == nil || !strings.Contains(errOut, "waiting for the server") {
			return fmt.Errorf("healthcheck: %v, stderr %q; want it waiting for the server", err, errOut)
		}
		return nil
	})
	if err := serves("spiffe://example.org/outage/old")(); err != nil {
		t.Errorf("with its own SVID expired the agent must keep serving the workload SVID: %v", err)
	}
	time.Sleep(time.Until(stopped.Add(outage))) // the outage the test is about, not a wait for a result
	if !strings.Contains(agent.out.String(), "agent svid expired before the server could renew it") {
		t.Errorf("after a %s outage the agent has not logged that its SVID expired", outage)
	}

	restarted := startServer("server (restarted)", addr)
	if again, _ := serverAddrs(t, restarted); again != addr {
		t.Fatalf("restarted server bound %s, want %s", again, addr)
	}
	signet(t, "entry", "create", "--admin-socket", adminSock, "--parent-id", nodeID,
		"--spiffe-id", "spiffe://example.org/outage/new", "--selector", uidSel, "--x509-ttl", "5m")
	// The agent retries with backoff capped at a minute. Its socket
	// answering proves the process that started before the outage still
	// runs: nothing restarts it.
	eventually(t, 3*time.Minute, "the same agent serving the new entry's SVID",
		serves("spiffe://example.org/outage/new", "spiffe://example.org/outage/old"))
	if !strings.Contains(agent.out.String(), "node re-established after the agent svid expired") {
		t.Errorf("the agent did not log its re-establishment")
	}
	if out, errOut, err := signetRun("healthcheck", "--agent-socket", socket); err != nil {
		t.Errorf("healthcheck after recovery: %v, %s %s", err, out, errOut)
	}
}
