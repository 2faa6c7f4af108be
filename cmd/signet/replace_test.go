package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/store"
)

// TestRiskPlanAndReport drives inventory list --sort risk with paging,
// inventory show's risk and suggestion, inventory replace's refusals and
// coverage's migration plan and HTML report, on SQLite and PostgreSQL.
func TestRiskPlanAndReport(t *testing.T) {
	for _, driver := range []string{store.DriverSQLite, store.DriverPostgres} {
		t.Run(driver, func(t *testing.T) {
			c := newCLIEnv(t, driver)
			conn := &adminConn{socket: c.socket}
			pg := &inventoryv1.Finding{Fingerprint: "00000000aaaa0001", RuleId: "pgpass-password", Detector: "signet", Kind: "password",
				Severity: "high", Preview: "Xq7-…(26)", Locations: []*inventoryv1.FindingLocation{{Path: "/srv/app/.pgpass", Line: 1}, {Path: "/srv/old/.pgpass", Line: 1}}}
			aws := testFinding("00000000aaaa0002", "/srv/app/main.tf")
			if _, err := reportFindings(t.Context(), conn, "web-1", map[string]string{"environment": "production", "owner": "pay"}, nil,
				[]*inventoryv1.Finding{pg, aws}); err != nil {
				t.Fatal(err)
			}
			dev := testFinding("00000000aaaa0003", "/home/dev/main.tf")
			dev.Severity = "low"
			if _, err := reportFindings(t.Context(), conn, "dev-1", map[string]string{"environment": "development"}, nil, []*inventoryv1.Finding{dev}); err != nil {
				t.Fatal(err)
			}

			var ids []string
			var risks []int32
			token := ""
			for page := 0; page < 5; page++ {
				args := []string{"inventory", "list", "--kind", "finding", "--sort", "risk", "--limit", "2", "--json"}
				if token != "" {
					args = append(args, "--page-token", token)
				}
				var res struct {
					Items []itemJSON `json:"items"`
					Next  string     `json:"next_page_token"`
				}
				if err := json.Unmarshal([]byte(c.mustRun(t, args...)), &res); err != nil {
					t.Fatal(err)
				}
				for _, it := range res.Items {
					ids, risks = append(ids, it.ID), append(risks, it.Finding.Risk)
					if it.Finding.Suggestion == nil || it.Finding.Suggestion.Text == "" || len(it.Finding.RiskFactors) == 0 {
						t.Errorf("%s: suggestion %+v, factors %+v; want both", it.ID, it.Finding.Suggestion, it.Finding.RiskFactors)
					}
				}
				if token = res.Next; token == "" {
					break
				}
			}
			if len(ids) != 3 || risks[0] < risks[1] || risks[1] < risks[2] || ids[2] != "finding:00000000aaaa0003" {
				t.Fatalf("by risk, two to a page: %v %v; want all three, highest first, the development one last", ids, risks)
			}

			show := c.mustRun(t, "inventory", "show", "finding:00000000aaaa0001")
			for _, want := range []string{"Risk:", "environment: in production", "places: the same secret in 2 places",
				"Replace with:", "brokered postgres credential (provider postgres): none is configured yet"} {
				if !strings.Contains(show, want) {
					t.Errorf("inventory show lacks %q:\n%s", want, show)
				}
			}

			for _, tc := range []struct {
				args []string
				want string
			}{
				{[]string{"inventory", "replace", "finding:00000000aaaa0001", "--with", "credential", "orders-db"}, "no broker section"},
				{[]string{"inventory", "replace", "finding:00000000aaaa0001", "--with", "secret", "orders-db"}, "--with credential NAME"},
				{[]string{"inventory", "replace", "finding:00000000aaaa0001", "--with", "credential"}, "--with credential NAME"},
				{[]string{"inventory", "list", "--sort", "risk"}, "--sort risk applies to findings"},
				{[]string{"inventory", "list", "--kind", "finding", "--sort", "age"}, `--sort "age"`},
				{[]string{"inventory", "list", "--kind", "finding", "--limit", "5000"}, "--limit 5000"},
				{[]string{"inventory", "list", "--kind", "finding", "--page-token", "bogus"}, "page_token"},
				{[]string{"coverage", "--format", "html"}, "give --output FILE"},
				{[]string{"coverage", "--format", "pdf"}, `--format "pdf"`},
				{[]string{"coverage", "--output", "x.html"}, "--format html --output FILE"},
			} {
				if _, errOut, err := c.run(t, tc.args...); err == nil || !strings.Contains(err.Error()+errOut, tc.want) {
					t.Errorf("signet %s: error %v %s; want it to say %q", strings.Join(tc.args, " "), err, errOut, tc.want)
				}
			}

			var cov coverageJSON
			if err := json.Unmarshal([]byte(c.mustRun(t, "coverage", "--json")), &cov); err != nil {
				t.Fatal(err)
			}
			if len(cov.MigrationPlan) != 3 || cov.MigrationPlan[0].ID != ids[0] || cov.Total.StaticOpen != 3 {
				t.Fatalf("coverage plan %+v, total %+v; want the three findings by risk", cov.MigrationPlan, cov.Total)
			}
			if g := cov.Groups; len(g) != 2 || g[0].Key != "development" || g[1].Key != "production" || g[1].StaticOpen != 2 {
				t.Errorf("coverage groups = %+v", g)
			}
			text := c.mustRun(t, "coverage")
			if !strings.Contains(text, "STATIC REPLACED") || !strings.Contains(text, "Migration plan") || !strings.Contains(text, "pgpass-password") {
				t.Errorf("coverage text:\n%s", text)
			}
			file := filepath.Join(t.TempDir(), "report.html")
			c.mustRun(t, "coverage", "--by", "owner", "--format", "html", "--output", file)
			html, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(html), `<svg id="coverage-chart"`) || !strings.Contains(string(html), "pgpass-password") ||
				strings.Contains(string(html), "https:") || !strings.Contains(string(html), "By owner") {
				t.Errorf("HTML report:\n%s", html)
			}

			// History pages, newest first.
			var hist struct {
				Reports []coverageJSON `json:"reports"`
				Next    string         `json:"next_page_token"`
			}
			c.mustRun(t, "coverage")
			if err := json.Unmarshal([]byte(c.mustRun(t, "coverage", "--limit", "1", "--json")), &hist); err != nil || len(hist.Reports) != 1 || hist.Next == "" {
				t.Fatalf("coverage --limit 1: %+v %v", hist, err)
			}
			first := hist.Reports[0].ID
			hist.Next, hist.Reports = "", nil
			next := ""
			if err := json.Unmarshal([]byte(c.mustRun(t, "coverage", "--limit", "1", "--json")), &hist); err == nil {
				next = hist.Next
			}
			if err := json.Unmarshal([]byte(c.mustRun(t, "coverage", "--limit", "5", "--page-token", next, "--json")), &hist); err != nil ||
				len(hist.Reports) == 0 || hist.Reports[0].ID >= first {
				t.Fatalf("coverage page 2: %+v %v; want older reports than #%d", hist, err, first)
			}
		})
	}
}
