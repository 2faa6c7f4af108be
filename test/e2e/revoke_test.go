package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// svidSetWatcher reports, at every push of the Workload API, the serial
// (lowercase hex) of each SVID by SPIFFE ID.
type svidSetWatcher struct{ updates chan map[string]string }

func (w *svidSetWatcher) OnX509ContextUpdate(x *workloadapi.X509Context) {
	m := map[string]string{}
	for _, s := range x.SVIDs {
		m[s.ID.String()] = strings.ToLower(s.Certificates[0].SerialNumber.Text(16))
	}
	w.updates <- m
}

func (w *svidSetWatcher) OnX509ContextWatchError(error) {}

// await reads pushes until cond holds for one, within timeout.
func (w *svidSetWatcher) await(t *testing.T, timeout time.Duration, what string, cond func(map[string]string) bool) map[string]string {
	t.Helper()
	deadline := time.After(timeout)
	var last map[string]string
	for {
		select {
		case m := <-w.updates:
			last = m
			if cond(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("%s: not seen within %s (last push %v)", what, timeout, last)
		}
	}
}

// TestRevocationEndToEnd runs a server and an agent whose Sync poll is an
// hour apart, so everything the agent learns during the test comes over
// its Watch push stream: entry delete, svid revoke by serial and by SPIFFE
// ID, and the revocation of the agent's own SVID.
func TestRevocationEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	dir := t.TempDir()
	serverDir := filepath.Join(dir, "server")
	adminSock := filepath.Join(serverDir, "admin.sock")
	admin := []string{"--admin-socket", adminSock}
	socket := filepath.Join(dir, "agent.sock")
	nodeID := "spiffe://example.org/node/revoke"
	keepID, goneID := "spiffe://example.org/e2e/keep", "spiffe://example.org/e2e/gone"
	uidSel := "unix:uid:" + strconv.Itoa(os.Getuid())

	server := start(t, "server", "server", "run", "--trust-domain", "example.org", "--data-dir", serverDir,
		"--bind-address", "127.0.0.1:0", "--log-level", "debug", "--log-format", "text")
	eventually(t, 30*time.Second, "server healthcheck", func() error {
		_, errOut, err := signetRun("healthcheck", "--admin-socket", adminSock)
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})
	addr, _ := serverAddrs(t, server)
	bundlePath := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundlePath, []byte(signet(t, append([]string{"bundle", "show"}, admin...)...)), 0o644); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(signet(t, append([]string{"token", "create", "--spiffe-id", nodeID}, admin...)...))
	entryIDs := map[string]string{}
	for _, id := range []string{keepID, goneID} {
		var res struct {
			Results []struct {
				Entry struct {
					ID string `json:"id"`
				} `json:"entry"`
			} `json:"results"`
		}
		out := signet(t, append([]string{"entry", "create", "--parent-id", nodeID, "--spiffe-id", id, "--selector", uidSel, "--json"}, admin...)...)
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Results) != 1 {
			t.Fatalf("entry create --json = %q: %v", out, err)
		}
		entryIDs[id] = res.Results[0].Entry.ID
	}

	agent := start(t, "agent", "agent", "run", "--server-address", addr, "--trust-bundle", bundlePath, "--join-token", token,
		"--socket", socket, "--data-dir", filepath.Join(dir, "agent"), "--sync-interval", "1h", "--log-level", "debug", "--log-format", "text")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		t.Fatalf("workloadapi.New: %v", err)
	}
	defer client.Close()
	w := &svidSetWatcher{updates: make(chan map[string]string, 64)}
	go func() { _ = client.WatchX509Context(ctx, w) }()
	first := w.await(t, 30*time.Second, "both SVIDs", func(m map[string]string) bool { return m[keepID] != "" && m[goneID] != "" })

	t.Run("entry delete: the SVID disappears", func(t *testing.T) {
		signet(t, append([]string{"entry", "delete", entryIDs[goneID]}, admin...)...)
		w.await(t, 10*time.Second, goneID+" gone", func(m map[string]string) bool { return m[goneID] == "" && m[keepID] != "" })
	})

	var revokedSerial string
	t.Run("svid revoke --serial: the SVID is replaced by a fresh one", func(t *testing.T) {
		revokedSerial = first[keepID]
		// As openssl prints it: colon-separated, upper case.
		var colon []string
		s := revokedSerial
		if len(s)%2 == 1 {
			s = "0" + s
		}
		for i := 0; i < len(s); i += 2 {
			colon = append(colon, strings.ToUpper(s[i:i+2]))
		}
		out := signet(t, append([]string{"svid", "revoke", "--serial", strings.Join(colon, ":")}, admin...)...)
		if !strings.Contains(out, revokedSerial) || !strings.Contains(out, keepID) {
			t.Errorf("svid revoke printed %q, want the serial and its SPIFFE ID", out)
		}
		w.await(t, 10*time.Second, keepID+" with a fresh serial", func(m map[string]string) bool {
			return m[keepID] != "" && m[keepID] != revokedSerial
		})
		list := signet(t, append([]string{"svid", "revocations", "--json"}, admin...)...)
		if !strings.Contains(list, revokedSerial) {
			t.Errorf("svid revocations = %q, want %s", list, revokedSerial)
		}
	})

	t.Run("ValidateJWTSVID refuses a revoked JWT-SVID", func(t *testing.T) {
		tok, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "e2e"})
		if err != nil {
			t.Fatalf("FetchJWTSVID: %v", err)
		}
		if _, err := client.ValidateJWTSVID(ctx, tok.Marshal(), "e2e"); err != nil {
			t.Fatalf("ValidateJWTSVID before revocation: %v", err)
		}
		signet(t, append([]string{"svid", "revoke", "--spiffe-id", keepID}, admin...)...)
		eventually(t, 10*time.Second, "ValidateJWTSVID refuses", func() error {
			if _, err := client.ValidateJWTSVID(ctx, tok.Marshal(), "e2e"); err == nil || !strings.Contains(err.Error(), "revoked") {
				return fmt.Errorf("ValidateJWTSVID = %v, want a revocation error", err)
			}
			return nil
		})
	})

	t.Run("bad input: clear errors naming the field", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"--serial", "0a0b0c0d0e"}, "serial: no unexpired SVID with serial a0b0c0d0e"},
			{[]string{"--serial", "not-hex"}, "not a hex digit"},
			{[]string{"--spiffe-id", "web"}, "spiffe_id"},
			{nil, "--serial or --spiffe-id is required"},
		} {
			_, errOut, err := signetRun(append(append([]string{"svid", "revoke"}, tt.args...), admin...)...)
			if err == nil || !strings.Contains(errOut, tt.want) {
				t.Errorf("svid revoke %v: %v, stderr %q; want an error containing %q", tt.args, err, errOut, tt.want)
			}
		}
	})

	t.Run("revocations are audited", func(t *testing.T) {
		out := signet(t, append([]string{"audit", "list", "--action", "svid.revoke", "--json"}, admin...)...)
		if !strings.Contains(out, revokedSerial) || !strings.Contains(out, keepID) {
			t.Errorf("audit list --action svid.revoke = %q, want the revocations of %s and %s", out, revokedSerial, keepID)
		}
	})

	t.Run("the server refuses a revoked agent SVID", func(t *testing.T) {
		var node struct {
			SerialNumber string `json:"serial_number"`
		}
		out := signet(t, append([]string{"agent", "show", nodeID, "--json"}, admin...)...)
		if err := json.Unmarshal([]byte(out), &node); err != nil || node.SerialNumber == "" {
			t.Fatalf("agent show --json = %q: %v", out, err)
		}
		signet(t, append([]string{"svid", "revoke", "--serial", node.SerialNumber}, admin...)...)
		// The agent stops serving at once and, its renewal refused, exits.
		done := make(chan error, 1)
		go func() { done <- agent.cmd.Wait() }()
		select {
		case err := <-done:
			if err == nil {
				t.Error("agent exited 0 after its SVID was revoked")
			}
		case <-time.After(20 * time.Second):
			t.Fatal("agent kept running with a revoked SVID")
		}
		if !strings.Contains(server.out.String(), "agent svid was revoked") {
			t.Errorf("server log does not show the revoked agent SVID refused:\n%s", server.out.String())
		}
	})
}
