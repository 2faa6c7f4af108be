package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/console"
)

var textConsole = regexp.MustCompile(`msg="` + regexp.QuoteMeta(console.LogMsgListening) + `" (?:.* )?` + console.LogKeyAddr + `=(\S+)`)

// consoleAddr reads the console's bound address from a server's log.
func consoleAddr(tb testing.TB, p *proc) string {
	tb.Helper()
	var addr string
	waitFor(tb, 30*time.Second, func() error {
		sc := bufio.NewScanner(strings.NewReader(p.out.String()))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil {
				if a, ok := rec[console.LogKeyAddr].(string); ok && rec["msg"] == console.LogMsgListening {
					addr = a
					return nil
				}
			} else if m := textConsole.FindStringSubmatch(sc.Text()); m != nil {
				addr = m[1]
				return nil
			}
		}
		return fmt.Errorf("no %q line in the log yet", console.LogMsgListening)
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
