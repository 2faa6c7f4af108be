package htmlreport_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/inventory/htmlreport"
	"github.com/signet-id/signet/internal/scan"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// Planted secrets: the scanner finds them, the report must not carry them.
const (
	plantedPassword = "Xq7-planted-pg-secret-93kd"
	plantedAWSKey   = "AKIAQ7PLANTEDKEY4242"
	plantedAWSSec   = "w9Zr1plantedSecretValue+0aBcDeFgHiJkLmNoP"
)

var suggestions = map[string]string{
	"pgpass-password":      "brokered postgres credential orders-db (provider postgres)",
	"aws-credentials-file": "brokered aws sts credential (provider aws_sts): none is configured yet (broker.credentials)",
}

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }

// report scans a tree holding planted secrets with the real scanner and
// builds a report whose migration plan is made of its findings, as
// `signet coverage --format html` does with the server's.
func report(t *testing.T) htmlreport.Report {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		".pgpass":                "db.internal:5432:orders:app:" + plantedPassword + "\n",
		"deploy/aws/credentials": "[default]\naws_access_key_id = " + plantedAWSKey + "\naws_secret_access_key = " + plantedAWSSec + "\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fp, err := scan.NewFingerprinter(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := scan.New(context.Background(), scan.Config{Fingerprinter: fp, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := sc.Scan(context.Background(), scan.Targets{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) < 2 {
		t.Fatalf("scan found %d findings, want the planted .pgpass and AWS key", len(rep.Findings))
	}
	r := htmlreport.Report{
		By: "environment", CreatedAt: "2026-12-01T10:00:00Z", ActiveWithin: "1d", PreviousCreatedAt: "2026-11-24T10:00:00Z",
		Groups: []htmlreport.Group{
			{Key: "production", Workloads: 40, SPIFFEActive: 30, Brokered: 4, StaticOpen: 6, Replaced: 3, CoveredPercent: f64(85), SPIFFEPercent: f64(75), ReplacedPercent: f64(33.3), DeltaCovered: f64(4.5), DeltaStaticOpen: i64(-2)},
			{Key: "ci", Workloads: 12, SPIFFEActive: 12, StaticOpen: 1, CoveredPercent: f64(92.3), SPIFFEPercent: f64(100), ReplacedPercent: f64(0)},
			{Key: "<unknown & unescaped>", StaticOpen: 2, CoveredPercent: f64(0), ReplacedPercent: f64(0)},
		},
		Total: htmlreport.Group{Key: "total", Workloads: 52, SPIFFEActive: 42, Brokered: 4, StaticOpen: 9, Replaced: 3, CoveredPercent: f64(83.6)},
	}
	for i, f := range rep.Findings {
		rel, err := filepath.Rel(dir, f.Location.Path)
		if err != nil {
			t.Fatal(err)
		}
		r.Plan = append(r.Plan, htmlreport.PlanItem{
			ID: "finding:" + f.Fingerprint, RuleID: f.RuleID, Kind: string(f.Kind), Preview: f.Preview, Path: rel,
			Environment: "production", Owner: "payments", Risk: 90 - i, Suggestion: suggestions[f.RuleID],
		})
	}
	return r
}

func render(t *testing.T, r htmlreport.Report) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := htmlreport.Render(&buf, r); err != nil {
		t.Fatalf("Render: %v", err)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	got := render(t, report(t))
	golden := filepath.Join("testdata", "report.golden.html")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("report differs from %s (run with -update after checking the change):\n%s", golden, got)
	}
}

func TestNoSecretsNoExternalRequests(t *testing.T) {
	out := string(render(t, report(t)))
	for _, secret := range []string{plantedPassword, plantedAWSKey, plantedAWSSec, plantedPassword[:12], plantedAWSSec[:16]} {
		if strings.Contains(out, secret) {
			t.Errorf("report contains the planted secret %q", secret)
		}
	}
	// Nothing that makes a browser fetch: no URLs at all, no scripts, no
	// sources or links, no CSS imports or url().
	for _, re := range []string{`(?i)https?:`, `//[a-z0-9.-]+\.[a-z]`, `(?i)<script`, `(?i)\ssrc=`, `(?i)\shref=`, `(?i)@import`, `(?i)url\(`, `(?i)<link`, `(?i)<iframe`, `(?i)<img`} {
		if loc := regexp.MustCompile(re).FindStringIndex(out); loc != nil {
			t.Errorf("report matches %s at %q", re, out[max(0, loc[0]-40):min(len(out), loc[1]+40)])
		}
	}
	if !strings.Contains(out, "&lt;unknown &amp; unescaped&gt;") {
		t.Error("group keys are not HTML-escaped")
	}
	if !strings.Contains(out, "<svg id=\"coverage-chart\"") || !strings.Contains(out, "<style>") {
		t.Error("report lacks its inline SVG chart or inline CSS")
	}
}
