package console_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/signet-id/signet/internal/browsertest"
	"github.com/signet-id/signet/internal/testenv"
)

// TestBrowserPages drives headless Chromium through every page of the
// console of a real server with seeded data and checks what a person
// sees: the counts, the table rows, the search, paging, the chart. Each
// page is saved as a screenshot (artefact); with SIGNET_UPDATE_SCREENSHOTS=1
// the screenshots in docs/console/ are replaced.
func TestBrowserPages(t *testing.T) {
	env := testenv.New(t, withConsole)
	ctx := browsertest.New(t)
	s := seed(t, env)
	base := consoleURL(t, env, "http")

	shot := func(name string) {
		t.Helper()
		png := browsertest.Screenshot(t, ctx, name)
		if os.Getenv("SIGNET_UPDATE_SCREENSHOTS") == "1" {
			dst := filepath.Join("..", "..", "docs", "console", name+".png")
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	text := func(sel string) string { t.Helper(); return browsertest.Text(t, ctx, sel) }
	rows := func(sel string) []string { t.Helper(); return browsertest.Texts(t, ctx, sel+" tbody tr") }
	open := func(path, waitFor string) {
		t.Helper()
		browsertest.Open(t, ctx, base+path, waitFor)
		// The vendored htmx ran under the CSP (no inline script needed).
		if loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof window.htmx === "object"`)); err != nil || !loaded {
			t.Fatalf("%s: htmx not loaded (%v)", path, err)
		}
		body, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range s.secrets {
			if strings.Contains(body, secret) {
				t.Errorf("%s shows the planted secret %q", path, secret)
			}
		}
	}

	t.Run("overview", func(t *testing.T) {
		open("/", "#authorities")
		if got := text("#count-agents"); got != "2" {
			t.Errorf("overview agents = %q, want 2", got)
		}
		if got := text("#count-findings"); got != strconv.Itoa(seededOpenFindings) {
			t.Errorf("overview open findings = %q, want %d", got, seededOpenFindings)
		}
		auth := rows("#authorities")
		if len(auth) < 2 || !strings.Contains(strings.Join(auth, "\n"), "active") || !strings.Contains(strings.Join(auth, "\n"), "in ") {
			t.Errorf("authorities rows = %q; want the active X.509 and JWT authorities with their expiry", auth)
		}
		if r := rows("#replicas"); len(r) != 1 {
			t.Errorf("replicas rows = %q; want one", r)
		}
		shot("overview")
	})
	t.Run("agents", func(t *testing.T) {
		open("/agents", "#agents")
		r := rows("#agents")
		if len(r) != 2 || !strings.Contains(r[0], nodeA) || !strings.Contains(r[0], "join_token") || !strings.Contains(r[1], nodeB) {
			t.Errorf("agents rows = %q; want node a and node b, attested by join_token", r)
		}
		if got := text("#count"); got != "2 agents" {
			t.Errorf("agents count = %q", got)
		}
		shot("agents")
	})
	t.Run("entries", func(t *testing.T) {
		open("/entries", "#entries")
		first := rows("#entries")
		if len(first) != 50 || !strings.Contains(first[0], "spiffe://example.org/app/svc-") {
			t.Fatalf("entries page 1: %d rows; want a page of 50 seeded entries", len(first))
		}
		shot("entries")
		// Next page, then a search by selector typed into the form (htmx
		// swaps the results in).
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#next")), chromedp.WaitVisible(chromedp.CSS("#entries"))); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 10*time.Second, "the second page", func() error {
			r := rows("#entries")
			if len(r) != 50 || slices.Contains(first, r[0]) {
				return fmt.Errorf("%d rows, first %q", len(r), r[0])
			}
			return nil
		})
		if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(`input[name="selector"]`), "unix:uid:"+strconv.Itoa(seededSelectorUID)),
			chromedp.Click(chromedp.CSS(`#search button`))); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 10*time.Second, "the search result", func() error {
			if r := rows("#entries"); len(r) != 1 || !strings.Contains(r[0], "svc-042") {
				return fmt.Errorf("rows %q", r)
			}
			return nil
		})
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil || !strings.Contains(loc, "selector=unix%3Auid%3A1042") {
			t.Errorf("after the search the address is %q (%v); want it to carry the query (bookmarkable)", loc, err)
		}
		shot("entries-search")
	})
	t.Run("inventory", func(t *testing.T) {
		open("/inventory", "#trend")
		dots := browsertest.Texts(t, ctx, "#trend circle.dot")
		points, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#trend polyline").getAttribute("points")`))
		if err != nil {
			t.Fatal(err)
		}
		if len(dots) != seededReports || len(strings.Fields(points)) != seededReports {
			t.Errorf("trend chart: %d dots, points %q; want %d", len(dots), points, seededReports)
		}
		// The chart is drawn: its line rises left to right (20 → 45 → 70 %).
		ys := []int{}
		for _, p := range strings.Fields(points) {
			y, _ := strconv.Atoi(p[strings.IndexByte(p, ',')+1:])
			ys = append(ys, y)
		}
		if len(ys) == 3 && !(ys[0] > ys[1] && ys[1] > ys[2]) {
			t.Errorf("trend y coordinates %v; want a rising line (smaller y is higher)", ys)
		}
		box, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`(() => { const r = document.querySelector("#trend").getBoundingClientRect(); return [r.width, r.height]; })()`))
		if err != nil || len(box) != 2 || box[0] < 300 || box[1] < 100 {
			t.Errorf("the chart renders %v (%v); want a visible chart", box, err)
		}
		if got := text("#covered-total"); got != "70.0 %" {
			t.Errorf("coverage total = %q, want 70.0 %%", got)
		}
		if r := rows("#items"); len(r) != 50 {
			t.Errorf("inventory workloads rows = %d, want a page of 50", len(r))
		}
		shot("inventory")
	})
	t.Run("findings", func(t *testing.T) {
		open("/findings", "#findings")
		r := rows("#findings")
		all := strings.Join(r, "\n")
		if len(r) != 2 || !strings.Contains(all, "ghp_…(40)") || !strings.Contains(all, "(hidden)") || !strings.Contains(all, "deploy/ci.env:3") {
			t.Errorf("findings rows = %q; want 2, the scan preview, (hidden) for the planted one, the location", r)
		}
		shot("findings")
	})
	t.Run("leases", func(t *testing.T) {
		open("/leases", "#leases")
		r := rows("#leases")
		all := strings.Join(r, "\n")
		if len(r) != 3 || strings.Count(all, "active") != 2 || strings.Count(all, "pending") != 1 {
			t.Errorf("leases rows = %q; want 2 active and 1 pending", r)
		}
		shot("leases")
	})
	t.Run("audit", func(t *testing.T) {
		open("/audit", "#audit")
		// htmx loads the chain's verification after the records.
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#verification"))); err != nil {
			t.Fatalf("the verification never appeared: %v", err)
		}
		if v := text("#verification"); !strings.HasPrefix(v, "Hash chain verified") {
			t.Errorf("audit verification = %q; want verified", v)
		}
		if r := rows("#audit"); len(r) == 0 || !strings.Contains(strings.Join(r, "\n"), "entry.create") {
			t.Errorf("audit rows = %q; want the seeded writes (entry.create)", r)
		}
		shot("audit")
	})
}
