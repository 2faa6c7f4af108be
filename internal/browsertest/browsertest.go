// Package browsertest drives Debian's headless Chromium through chromedp
// for tests of Signet's web pages (the console, the coverage report): a
// fresh browser per test with a private profile directory, and screenshots
// saved as test artefacts.
//
// New skips the test when Chromium is absent and CI is unset; under CI
// (the CI environment variable set) a missing browser fails the test, so
// the browser tests always run there.
package browsertest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Binary is the browser New starts: $SIGNET_CHROMIUM, else chromium on
// PATH (Debian's package), else /usr/bin/chromium.
func Binary() string {
	if p := os.Getenv("SIGNET_CHROMIUM"); p != "" {
		return p
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return "/usr/bin/chromium"
}

// Flags are the switches every test browser runs with: headless, without
// the sandbox (CI runs as root), and without anything that talks to the
// network on its own.
var Flags = []chromedp.ExecAllocatorOption{
	chromedp.Flag("headless", true),
	chromedp.Flag("no-sandbox", true),
	chromedp.Flag("disable-gpu", true),
	chromedp.Flag("disable-quic", true),
	chromedp.Flag("no-first-run", true),
	chromedp.Flag("disable-background-networking", true),
	chromedp.Flag("disable-component-update", true),
	chromedp.Flag("disable-sync", true),
	chromedp.Flag("disable-dev-shm-usage", true),
	chromedp.WindowSize(1280, 900),
}

// Text returns what a person reads in the first element matching the CSS
// selector sel (its innerText), failing the test when there is none.
func Text(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector(`+jsString(sel)+`).innerText`))
	if err != nil {
		t.Fatalf("browsertest: text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// Texts returns the innerText of every element matching the CSS selector
// sel (table rows, say), in document order.
func Texts(t testing.TB, ctx context.Context, sel string) []string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll(`+jsString(sel)+`)).map(e => (e.innerText ?? e.textContent).trim())`))
	if err != nil {
		t.Fatalf("browsertest: texts of %s: %v", sel, err)
	}
	return s
}

// Open navigates to url and waits until the CSS selector waitFor is
// visible.
func Open(t testing.TB, ctx context.Context, url, waitFor string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(waitFor))); err != nil {
		t.Fatalf("browsertest: open %s: %v", url, err)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Timeout bounds one test's whole browser session.
const Timeout = 90 * time.Second

// New starts a browser for t with a fresh user-data-dir under t.TempDir
// and returns a chromedp context for one tab; the browser is closed at
// cleanup. opts add allocator options (a client certificate, say).
func New(t testing.TB, opts ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("browsertest: %s: %v (CI installs Debian's chromium: see .ci/run)", bin, err)
		}
		t.Skipf("browsertest: no chromium (%v); CI is unset, so skipping", err)
	}
	all := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
	}, Flags...)
	all = append(all, opts...)
	ctx, cancelTimeout := context.WithTimeout(context.Background(), Timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, all...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
	})
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("browsertest: start %s: %v", bin, err)
	}
	return bctx
}

// ArtifactDir is where screenshots go: $SIGNET_TEST_ARTIFACTS/<test name>
// when set, else a directory under t.TempDir.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "artifacts")
	if base := os.Getenv("SIGNET_TEST_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, unsafeChars.ReplaceAllString(t.Name(), "_"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	return dir
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Screenshot captures the whole page in ctx as PNG, writes it to
// ArtifactDir(t)/name.png and returns the bytes.
func Screenshot(t testing.TB, ctx context.Context, name string) []byte {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("browsertest: screenshot %s: %v", name, err)
	}
	path := filepath.Join(ArtifactDir(t), unsafeChars.ReplaceAllString(name, "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	t.Logf("screenshot %s", path)
	return png
}
