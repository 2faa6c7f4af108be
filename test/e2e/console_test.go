package e2e

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/console"
)

// consoleAddr reads the console's bound address from a server's log.
func consoleAddr(tb testing.TB, p *proc) string {
	tb.Helper()
	var addr string
	waitFor(tb, 30*time.Second, func() error {
		var err error
		addr, err = listenAddr(p.out.String(), console.LogMsgListening, console.LogKeyAddr)
		return err
	})
	return addr
}

// TestConsoleFromTheBinary starts the built server with --ui-address and
// reads the console's pages over its loopback listener; a non-loopback
// --ui-address without --ui-mtls is refused at start.
func TestConsoleFromTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	dir := t.TempDir()
	out, errOut, err := signetRun("server", "run", "--trust-domain", "example.org", "--data-dir", filepath.Join(dir, "refused"),
		"--bind-address", "127.0.0.1:0", "--ui-address", "0.0.0.0:0")
	if err == nil || !strings.Contains(errOut+out, "ui_address") || !strings.Contains(errOut+out, "ui_mtls") {
		t.Fatalf("server run --ui-address 0.0.0.0:0 = %v, %q; want a refusal naming ui_address and ui_mtls", err, errOut)
	}

	p := start(t, "server", "server", "run", "--trust-domain", "example.org", "--data-dir", filepath.Join(dir, "server"),
		"--bind-address", "127.0.0.1:0", "--ui-address", "127.0.0.1:0", "--log-level", "info")
	base := "http://" + consoleAddr(t, p)
	for _, path := range []string{"/", "/agents", "/entries", "/inventory", "/findings", "/leases", "/audit", "/?format=json"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") != console.CSP {
			t.Errorf("GET %s = %d (CSP %q); want 200 with the console's CSP", path, resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
		}
		if path == "/" && !strings.Contains(string(body), "example.org") {
			t.Errorf("GET / does not show the trust domain")
		}
	}
}
