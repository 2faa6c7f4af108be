package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/healthz"
)

// serverAddrs waits for a server process started with bind_address and
// http_address on port 0 to log "server started", and returns the
// addresses it bound: the agent API and the HTTPS listener ("" when it
// has none). Tests never pick a port for a process to bind.
func serverAddrs(tb testing.TB, p *proc) (agentAPI, https string) {
	tb.Helper()
	waitFor(tb, 30*time.Second, func() error {
		var err error
		agentAPI, https, err = startedLine(p.out.String())
		return err
	})
	return agentAPI, https
}

// startedLine finds the "server started" record in a server's log.
func startedLine(log string) (agentAPI, https string, err error) {
	rec, ok := findRecord(log, "server started")
	if !ok {
		return "", "", fmt.Errorf("no \"server started\" line in the server's log yet")
	}
	agentAPI, _ = rec["agent_api"].(string)
	https, _ = rec["https"].(string)
	if agentAPI == "" {
		return "", "", fmt.Errorf("server started without an agent_api address: %v", rec)
	}
	return agentAPI, https, nil
}

// healthAddr waits for a process started with a health address on port
// 0 to log healthz.LogMsgListening, and returns the address it bound
// (the record's healthz.LogKeyAddr).
func healthAddr(tb testing.TB, p *proc) string {
	tb.Helper()
	var addr string
	waitFor(tb, 30*time.Second, func() error {
		var err error
		addr, err = listeningLine(p.out.String())
		return err
	})
	return addr
}

// listeningLine finds the health listener's address in a process's log.
func listeningLine(log string) (string, error) {
	return listenAddr(log, healthz.LogMsgListening, healthz.LogKeyAddr)
}

func TestListeningLine(t *testing.T) {
	for _, tc := range []struct{ log, want string }{
		{`{"time":"x","level":"INFO","msg":"health listening","addr":"127.0.0.1:4003"}`, "127.0.0.1:4003"},
		{`{"msg":"route listening","addr":"127.0.0.1:9"}` + "\n" + `{"msg":"health listening","addr":"[::1]:4003"}`, "[::1]:4003"},
		{`time=2026-12-02T12:00:00Z level=INFO msg="health listening" addr=127.0.0.1:4003`, "127.0.0.1:4003"},
		{`time=x level=INFO msg="health listening" component=server addr=127.0.0.1:4003`, "127.0.0.1:4003"},
	} {
		if got, err := listeningLine(tc.log); err != nil || got != tc.want {
			t.Errorf("listeningLine(%q) = %q, %v; want %q", tc.log, got, err, tc.want)
		}
	}
	for _, log := range []string{`{"msg":"route listening","addr":"127.0.0.1:9"}`, `time=x level=INFO msg="route listening" addr=127.0.0.1:9`} {
		if got, err := listeningLine(log); err == nil {
			t.Errorf("listeningLine(%q) = %q, want an error", log, got)
		}
	}
}

func TestStartedLine(t *testing.T) {
	for _, tc := range []struct{ log, agent, https string }{
		{`{"time":"x","level":"INFO","msg":"server started","trust_domain":"example.org","agent_api":"127.0.0.1:4001","https":"127.0.0.1:4002"}`, "127.0.0.1:4001", "127.0.0.1:4002"},
		{`{"msg":"other"}` + "\n" + `{"msg":"server started","agent_api":"[::1]:9","https":""}`, "[::1]:9", ""},
		{`time=2026-12-02T12:00:00Z level=INFO msg="server started" trust_domain=example.org agent_api=127.0.0.1:4001 https=127.0.0.1:4002 admin_socket=/x`, "127.0.0.1:4001", "127.0.0.1:4002"},
		{`time=x level=INFO msg="server started" trust_domain=example.org agent_api=127.0.0.1:4001 https="" admin_socket=/x`, "127.0.0.1:4001", ""},
	} {
		a, h, err := startedLine(tc.log)
		if err != nil || a != tc.agent || h != tc.https {
			t.Errorf("startedLine(%q) = %q, %q, %v; want %q, %q", tc.log, a, h, err, tc.agent, tc.https)
		}
	}
	if _, _, err := startedLine(`{"msg":"server starting"}`); err == nil {
		t.Error("startedLine found an address in a log without \"server started\"")
	}
}
