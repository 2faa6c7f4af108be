package htmlreport_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromium returns Debian's headless Chromium. Without it the test skips
// on a developer's machine and fails in CI ($CI set), where .ci/run
// installs it.
func chromium(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium is not installed (CI installs it in .ci/run): %v", err)
		}
		t.Skipf("chromium is not installed: %v", err)
	}
	return p
}

// TestChromiumRendersChart opens the report in headless Chromium and checks
// that the chart's SVG lays out with visible bars, and that the page asks
// the network for nothing.
func TestChromiumRendersChart(t *testing.T) {
	bin := chromium(t)
	path := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(path, render(t, report(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	requests := make(chan string, 64)
	if err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			select {
			case requests <- e.Request.URL:
			default:
			}
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate("file://"+path), chromedp.WaitVisible(chromedp.CSS("#coverage-chart"))); err != nil {
		t.Fatalf("open the report in chromium: %v", err)
	}
	title, err := chromedp.Run(bctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	box, err := chromedp.Run(bctx, chromedp.Evaluate[[]float64](`(() => { const s = document.getElementById("coverage-chart"); const r = s.getBoundingClientRect(); return [r.width, s.getBBox().height]; })()`))
	if err != nil || len(box) != 2 {
		t.Fatalf("chart box: %v %v", box, err)
	}
	width, height := box[0], box[1]
	bars, err := chromedp.Run(bctx, chromedp.Evaluate[int](`[...document.querySelectorAll("#coverage-chart rect")].filter(r => r.getBBox().width > 0).length`))
	if err != nil {
		t.Fatal(err)
	}
	if title != "Signet coverage report" {
		t.Errorf("title = %q", title)
	}
	// Three groups: production (short, open, replaced), ci (short, open),
	// unknown (open): six non-empty bars.
	if width < 100 || height < 50 || bars != 6 {
		t.Errorf("chart renders %gx%g with %d visible bars, want a laid-out chart with 6", width, height, bars)
	}
	close(requests)
	for u := range requests {
		if u != "file://"+path {
			t.Errorf("the report requested %s", u)
		}
	}
}
