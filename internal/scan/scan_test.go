package scan_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/signet-id/signet/internal/scan"
	"github.com/signet-id/signet/internal/scan/scantest"
)

var testKey = []byte("signet-test-fingerprint-key")

func newScanner(t testing.TB, cfg scan.Config) *scan.Scanner {
	t.Helper()
	fp, err := scan.NewFingerprinter(testKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Fingerprinter = fp
	s, err := scan.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// expects converts findings under root to the fixture's terms.
func expects(t *testing.T, root string, fs []scan.Finding) []scantest.Expect {
	t.Helper()
	out := make([]scantest.Expect, 0, len(fs))
	for _, f := range fs {
		rel, err := filepath.Rel(root, f.Location.Path)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, scantest.Expect{
			Rule: f.RuleID, Kind: string(f.Kind), Path: filepath.ToSlash(rel),
			Line: f.Location.Line, Commit: f.Location.Commit,
		})
	}
	return out
}

var sortExpects = cmpopts.SortSlices(func(a, b scantest.Expect) bool {
	return strings.Join([]string{a.Path, a.Rule, a.Commit}, "\x00")+string(rune(a.Line)) <
		strings.Join([]string{b.Path, b.Rule, b.Commit}, "\x00")+string(rune(b.Line))
})

func TestScanTree(t *testing.T) {
	fx := scantest.New(t)
	rep, err := newScanner(t, scan.Config{}).Scan(context.Background(), scan.Targets{Paths: []string{fx.Root}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fx.Tree, expects(t, fx.Root, rep.Findings), sortExpects); diff != "" {
		t.Errorf("Scan(tree) findings mismatch (-want +got):\n%s", diff)
	}
	wantProblems := []scan.Problem{{Path: filepath.Join(fx.Root, "assets", "blob.dat"), Message: "binary file, contents not scanned", Skipped: true}}
	if diff := cmp.Diff(wantProblems, rep.Errors); diff != "" {
		t.Errorf("Scan(tree) problems mismatch (-want +got):\n%s", diff)
	}
	if rep.Failed() {
		t.Errorf("Scan(tree).Failed() = true, want false")
	}

	// Equal secrets, and only they, share a fingerprint.
	paths := map[string][]string{}
	for _, f := range rep.Findings {
		rel, _ := filepath.Rel(fx.Root, f.Location.Path)
		paths[f.Fingerprint] = append(paths[f.Fingerprint], filepath.ToSlash(rel))
		if rel == filepath.FromSlash("keys/server.pem") && (f.Severity != "critical" || f.Details["cert_validity_days"] != "365") {
			t.Errorf("key with one-year certificate: severity %q, details %v; want critical and 365 days", f.Severity, f.Details)
		}
	}
	var shared [][]string
	for _, ps := range paths {
		if len(ps) > 1 {
			slices.Sort(ps)
			shared = append(shared, ps)
		}
	}
	want := [][]string{fx.SamePAT[:], {fx.SameKey[1], fx.SameKey[0]}}
	if diff := cmp.Diff(want, shared, cmpopts.SortSlices(func(a, b []string) bool { return a[0] < b[0] })); diff != "" {
		t.Errorf("paths sharing a fingerprint mismatch (-want +got):\n%s", diff)
	}
}

func TestScanHistory(t *testing.T) {
	fx := scantest.New(t)
	rep, err := newScanner(t, scan.Config{}).Scan(context.Background(), scan.Targets{Paths: []string{fx.Root}, Git: true})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fx.History, expects(t, fx.Root, rep.Findings), sortExpects); diff != "" {
		t.Errorf("Scan(tree, git) findings mismatch (-want +got):\n%s", diff)
	}
	if rep.Stats.Commits != 2 { // the second commit only deletes
		t.Errorf("Scan(tree, git).Stats.Commits = %d, want 2", rep.Stats.Commits)
	}
	for _, f := range rep.Findings {
		if f.Location.Commit == "" {
			continue
		}
		if f.Location.Author != "Fixture Author" || f.Location.Email != "author@example.com" || f.Location.Date != "2026-01-02T03:04:05Z" {
			t.Errorf("history finding %s: author %q <%s> at %q, want Fixture Author <author@example.com> at 2026-01-02T03:04:05Z",
				f.Location, f.Location.Author, f.Location.Email, f.Location.Date)
		}
	}
}

// TestNoSecretInOutput checks that no planted secret, nor a long piece of
// one, appears in any output format.
func TestNoSecretInOutput(t *testing.T) {
	fx := scantest.New(t)
	rep, err := newScanner(t, scan.Config{}).Scan(context.Background(), scan.Targets{Paths: []string{fx.Root}, Git: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) == 0 {
		t.Fatal("no findings")
	}
	for _, f := range []scan.Format{scan.FormatTable, scan.FormatJSON, scan.FormatSARIF} {
		var buf bytes.Buffer
		if err := rep.Write(&buf, f); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		for _, s := range fx.Secrets {
			s = strings.TrimSpace(s)
			if strings.Contains(out, s) {
				t.Errorf("%s output contains a planted secret (%.6s…)", f, s)
			}
			// Half of the secret, from its middle, must not show either.
			mid := s[len(s)/4 : len(s)/4+len(s)/2]
			if len(mid) >= 8 && strings.Contains(out, mid) {
				t.Errorf("%s output contains half of a planted secret (%.6s…)", f, s)
			}
		}
	}
}

func TestSARIF(t *testing.T) {
	fx := scantest.New(t)
	rep, err := newScanner(t, scan.Config{}).Scan(context.Background(),
		scan.Targets{Paths: []string{fx.Root}, Env: []string{"DB_PASSWORD=" + strings.Repeat("q7", 10)}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.WriteSARIF(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID string `json:"id"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				RuleIndex int    `json:"ruleIndex"`
				Level     string `json:"level"`
				Message   struct {
					Text string `json:"text"`
				} `json:"message"`
				Locations []struct {
					PhysicalLocation *struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
						Region struct {
							StartLine int `json:"startLine"`
						} `json:"region"`
					} `json:"physicalLocation"`
					LogicalLocations []struct {
						FullyQualifiedName string `json:"fullyQualifiedName"`
					} `json:"logicalLocations"`
				} `json:"locations"`
				PartialFingerprints map[string]string `json:"partialFingerprints"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("SARIF is not JSON: %v", err)
	}
	if doc.Version != "2.1.0" || len(doc.Runs) != 1 {
		t.Fatalf("SARIF version %q with %d runs, want 2.1.0 with 1", doc.Version, len(doc.Runs))
	}
	run := doc.Runs[0]
	if len(run.Results) != len(rep.Findings) {
		t.Errorf("SARIF has %d results, want %d", len(run.Results), len(rep.Findings))
	}
	var env int
	for _, r := range run.Results {
		if r.RuleIndex < 0 || r.RuleIndex >= len(run.Tool.Driver.Rules) || run.Tool.Driver.Rules[r.RuleIndex].ID != r.RuleID {
			t.Errorf("result %s: ruleIndex %d does not point at its rule", r.RuleID, r.RuleIndex)
		}
		if !slices.Contains([]string{"error", "warning", "note"}, r.Level) || r.Message.Text == "" {
			t.Errorf("result %s: level %q, message %q", r.RuleID, r.Level, r.Message.Text)
		}
		if len(r.PartialFingerprints) != 1 {
			t.Errorf("result %s: partialFingerprints %v, want one", r.RuleID, r.PartialFingerprints)
		}
		if len(r.Locations) != 1 {
			t.Fatalf("result %s: %d locations, want 1", r.RuleID, len(r.Locations))
		}
		switch l := r.Locations[0]; {
		case l.PhysicalLocation != nil:
			if l.PhysicalLocation.ArtifactLocation.URI == "" || l.PhysicalLocation.Region.StartLine < 1 {
				t.Errorf("result %s: physical location %+v", r.RuleID, *l.PhysicalLocation)
			}
		case len(l.LogicalLocations) == 1 && l.LogicalLocations[0].FullyQualifiedName == "env:DB_PASSWORD":
			env++
		default:
			t.Errorf("result %s: no physical or env location", r.RuleID)
		}
	}
	if env != 1 {
		t.Errorf("SARIF has %d env results, want 1", env)
	}
}

func TestScanEnv(t *testing.T) {
	pat := scantest.Token("ghp_", 36, 1)
	environ := []string{
		"HOME=/home/dev",
		"PWD=/home/dev/src",
		"GITHUB_TOKEN=" + pat,
		"DB_PASSWORD=Tr0ub4dor-and-3",
		"SMTP_PASSWORD=changeme",
		"API_TOKEN_URL=https://auth.example.com/token",
		scan.FingerprintKeyEnv + "=" + string(testKey),
	}
	rep, err := newScanner(t, scan.Config{}).Scan(context.Background(), scan.Targets{Env: environ})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, f.Location.Path+" "+f.RuleID)
	}
	want := []string{"env:DB_PASSWORD env-secret", "env:GITHUB_TOKEN github-pat"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Scan(env) mismatch (-want +got):\n%s", diff)
	}
	if rep.Stats.Files != int64(len(environ)-1) {
		t.Errorf("Scan(env).Stats.Files = %d, want %d (the key variable is not scanned)", rep.Stats.Files, len(environ)-1)
	}
}

func TestProblems(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("ok/app.env", "GITHUB_TOKEN="+scantest.Token("ghp_", 36, 2)+"\n")
	huge := write("ok/huge.txt", strings.Repeat("x", 4096))
	bin := write("ok/data.dat", "\x00\x01\x02")
	if err := os.Symlink("..", filepath.Join(root, "ok", "loop")); err != nil {
		t.Fatal(err)
	}
	badBaseline := write("baseline.json", `{"version": 1, "findings": [{"fingerprint": ""}]}`)
	missing := filepath.Join(root, "missing")
	notRepo := filepath.Join(root, "ok")

	var streamed []scan.Problem
	s := newScanner(t, scan.Config{
		MaxFileSize:    1024,
		FollowSymlinks: true,
		BaselineFile:   badBaseline,
		OnProblem:      func(p scan.Problem) { streamed = append(streamed, p) },
	})
	rep, err := s.Scan(context.Background(), scan.Targets{Paths: []string{notRepo, missing}, Git: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []scan.Problem{
		{Path: badBaseline, Message: "parse baseline: finding 0 has no fingerprint or path"},
		{Path: bin, Message: "binary file, contents not scanned", Skipped: true},
		{Path: huge, Message: "file too large (4096 bytes, limit 1024), skipped", Skipped: true},
		{Path: filepath.Join(root, "ok", "loop", "ok"), Message: "directory already scanned (symbolic link loop or duplicate), skipped", Skipped: true},
		{Path: missing, Message: "stat: no such file or directory"},
		{Path: notRepo, Message: "not a git repository"},
	}
	less := cmpopts.SortSlices(func(a, b scan.Problem) bool { return a.String() < b.String() })
	if diff := cmp.Diff(want, rep.Errors, less); diff != "" {
		t.Errorf("Scan problems mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(rep.Errors, streamed, less); diff != "" {
		t.Errorf("OnProblem calls differ from the report (-report +calls):\n%s", diff)
	}
	if !rep.Failed() {
		t.Errorf("Scan.Failed() = false, want true")
	}
	if len(rep.Findings) != 1 || rep.Findings[0].Location.Path != good {
		t.Errorf("Scan findings = %v, want one in %s: the scan must go on past bad items", rep.Findings, good)
	}
	if rep.Stats.Skipped != 3 {
		t.Errorf("Scan.Stats.Skipped = %d, want 3", rep.Stats.Skipped)
	}
}

func TestUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	root := t.TempDir()
	p := filepath.Join(root, "secret.env")
	if err := os.WriteFile(p, []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	rep, err := newScanner(t, scan.Config{}).Scan(context.Background(), scan.Targets{Paths: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	want := []scan.Problem{{Path: p, Message: "open: permission denied"}}
	if diff := cmp.Diff(want, rep.Errors); diff != "" {
		t.Errorf("Scan problems mismatch (-want +got):\n%s", diff)
	}
}

func TestBaseline(t *testing.T) {
	fx := scantest.New(t)
	s := newScanner(t, scan.Config{})
	first, err := s.Scan(context.Background(), scan.Targets{Paths: []string{fx.Root}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := first.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	baseline := filepath.Join(t.TempDir(), "baseline.json")
	if err := os.WriteFile(baseline, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// A new secret, and a rotated one at a known place.
	fresh := filepath.Join(fx.Root, "config", "new.env")
	if err := os.WriteFile(fresh, []byte("TOKEN="+scantest.Token("ghp_", 36, 3)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rotated := filepath.Join(fx.Root, fx.SamePAT[1])
	if err := os.WriteFile(rotated, []byte("OTHER_GITHUB_TOKEN="+scantest.Token("ghp_", 36, 4)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = newScanner(t, scan.Config{BaselineFile: baseline})
	second, err := s.Scan(context.Background(), scan.Targets{Paths: []string{fx.Root}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range second.Findings {
		got = append(got, f.Location.Path)
	}
	if diff := cmp.Diff([]string{rotated, fresh}, got); diff != "" {
		t.Errorf("Scan with baseline: findings mismatch (-want +got):\n%s", diff)
	}
	if want := len(first.Findings) - 1; second.Stats.Suppressed != want {
		t.Errorf("Scan with baseline: suppressed %d, want %d", second.Stats.Suppressed, want)
	}
}

func TestParseBaseline(t *testing.T) {
	tests := []struct {
		name, doc string
		wantErr   bool
		wantLen   int
	}{
		{"empty report", `{"version":1,"findings":[],"errors":[]}`, false, 0},
		{"two findings", `{"version":1,"findings":[{"fingerprint":"aa","location":{"path":"x"}},{"fingerprint":"bb","location":{"path":"y"},"future":1}]}`, false, 2},
		{"not json", `{"version":1,`, true, 0},
		{"wrong version", `{"version":2,"findings":[]}`, true, 0},
		{"no version", `{"findings":[]}`, true, 0},
		{"no findings", `{"version":1}`, true, 0},
		{"findings not array", `{"version":1,"findings":{}}`, true, 0},
		{"finding without path", `{"version":1,"findings":[{"fingerprint":"aa"}]}`, true, 0},
		{"trailing data", `{"version":1,"findings":[]} {}`, true, 0},
		{"gitleaks report", `[{"RuleID":"x","Fingerprint":"a:b:1"}]`, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := scan.ParseBaseline(strings.NewReader(tt.doc))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseBaseline(%q) error = %v, want error %t", tt.doc, err, tt.wantErr)
			}
			if err == nil && b.Len() != tt.wantLen {
				t.Errorf("ParseBaseline(%q).Len() = %d, want %d", tt.doc, b.Len(), tt.wantLen)
			}
		})
	}
}

// TestSkipsCounted checks that every item left out of a scan is counted by
// reason and reported through OnSkip, and that binary files are told by
// content, not name.
func TestSkipsCounted(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyID := "AKIA" + strings.ToUpper(scantest.Token("", 16, 5))
	textBin := write("dump/x.bin", "aws_access_key_id = "+keyID+"\n")
	png := write("img/logo.png", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	write(".git/HEAD", "ref: refs/heads/main\n")
	write("node_modules/x/index.js", "module.exports = 1\n")
	huge := write("big.txt", strings.Repeat("y", 2048))
	if err := os.Symlink("big.txt", filepath.Join(root, "link.txt")); err != nil {
		t.Fatal(err)
	}
	var skips []scan.Skip
	s := newScanner(t, scan.Config{MaxFileSize: 1024, OnSkip: func(sk scan.Skip) { skips = append(skips, sk) }})
	rep, err := s.Scan(context.Background(), scan.Targets{Paths: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 1 || rep.Findings[0].Location.Path != textBin {
		t.Errorf("findings %v, want the key in %s (a text file named .bin)", rep.Findings, textBin)
	}
	want := []scan.Skip{
		{Path: filepath.Join(root, ".git"), Reason: scan.SkipExcluded},
		{Path: huge, Reason: scan.SkipTooLarge, Message: "file too large (2048 bytes, limit 1024), skipped"},
		{Path: png, Reason: scan.SkipBinary, Message: "binary file, contents not scanned"},
		{Path: filepath.Join(root, "link.txt"), Reason: scan.SkipSymlink},
		{Path: filepath.Join(root, "node_modules"), Reason: scan.SkipExcluded},
	}
	less := cmpopts.SortSlices(func(a, b scan.Skip) bool { return a.Path < b.Path })
	if diff := cmp.Diff(want, skips, less); diff != "" {
		t.Errorf("OnSkip calls mismatch (-want +got):\n%s", diff)
	}
	wantBy := map[scan.SkipReason]int64{scan.SkipExcluded: 2, scan.SkipTooLarge: 1, scan.SkipBinary: 1, scan.SkipSymlink: 1}
	if diff := cmp.Diff(wantBy, rep.Stats.SkippedBy); diff != "" || rep.Stats.Skipped != 5 {
		t.Errorf("Stats.Skipped = %d, SkippedBy mismatch (-want +got):\n%s", rep.Stats.Skipped, diff)
	}
	var buf bytes.Buffer
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	if want := "5 skipped (2 excluded, 1 binary, 1 symlink, 1 too-large)"; !strings.Contains(buf.String(), want) {
		t.Errorf("table summary %q lacks %q", buf.String(), want)
	}
}
