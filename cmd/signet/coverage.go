package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/inventory"
	"github.com/signet-id/signet/internal/inventory/htmlreport"
)

func newCoverageCmd() *cobra.Command {
	var (
		conn             adminConn
		by, activeWithin string
		depth, history   int
		out              output
		format, output   string
		page             pageFlags
	)
	cmd := &cobra.Command{
		Use:   "coverage",
		Short: "How many workloads run on short-lived SPIFFE identities, and how many static credentials remain",
		Long: `Coverage per environment (the environment label: kubernetes, vm, bare-metal,
ci, legacy, saas; "unknown" when unset), per owner (the owner label) or per
path (a workload's SPIFFE ID path, a finding's directory):

  WORKLOADS        registration entries
  SPIFFE           of those, issued an SVID within --active-within (default 24h)
  BROKERED         brokered credentials in use (credential, workload pairs with an open lease)
  STATIC OPEN      static credentials reported by ` + "`signet scan --report`" + ` and still open
  STATIC REPLACED  static credentials proven replaced (` + "`signet inventory replace`" + `)
  COVERED          (SPIFFE + BROKERED) / (SPIFFE + BROKERED + STATIC OPEN)

After the table comes the migration plan: the ten open static credentials
with the highest risk and what should replace each. Every run stores its
report on the server and shows the change since the previous report of the
same view; --history (or --limit and --page-token) lists the stored reports.
--format html --output FILE writes a self-contained report (inline CSS and
SVG chart, no external requests, no secrets) to send around.`,
		Example: `  signet coverage
  signet coverage --by owner --json
  signet coverage --format html --output report.html
  signet coverage --by path --depth 2
  signet coverage --history 10`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := inventory.ParseDimension(by); err != nil {
				return fmt.Errorf("--by %q: use environment, owner or path", by)
			}
			window, err := ageFlag("active-within", activeWithin)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("depth") && by != string(inventory.ByPath) {
				return fmt.Errorf("--depth applies only with --by path")
			}
			if depth < 0 || depth > inventory.MaxPathDepth {
				return fmt.Errorf("--depth %d: use 1 to %d", depth, inventory.MaxPathDepth)
			}
			if history < 0 {
				return fmt.Errorf("--history %d: use a positive number of reports", history)
			}
			if err := page.checkAll(maxInventoryPage); err != nil {
				return err
			}
			if history > 0 && page.limit > 0 {
				return errors.New("--history N and --limit N say the same: give one")
			}
			if page.limit > 0 {
				history = page.limit
			}
			if page.token != "" && history == 0 {
				history = 20
			}
			switch format {
			case "text", "json", "html":
			default:
				return fmt.Errorf("--format %q: use text, json or html", format)
			}
			// --output is -o table|json as on every read command, and the
			// file to write with --format html.
			switch o := strings.ToLower(output); {
			case format == "html":
				if output == "" || history > 0 || out.json {
					return errors.New("--format html writes one new report to a file: give --output FILE (and no --history or --json)")
				}
			case o == "json":
				out.json = true
			case o == "" || o == "table":
			default:
				return fmt.Errorf("--output %q: use table or json, or --format html --output FILE to write a report file", output)
			}
			if out.json {
				format = "json"
			}
			windowSec := int64(window / time.Second)
			var reports []*inventoryv1.CoverageReport
			next := ""
			err = conn.callInventory(cmd.Context(), func(ctx context.Context, inv inventoryv1.InventoryClient, _ inventoryv1.AuditClient) error {
				if history > 0 {
					resp, err := inv.ListCoverageReports(ctx, &inventoryv1.ListCoverageReportsRequest{
						By: by, ActiveWithinSeconds: windowSec, PathDepth: int32(depth), Limit: int32(history), PageToken: page.token})
					reports, next = resp.GetReports(), resp.GetNextPageToken()
					return err
				}
				r, err := inv.CreateCoverageReport(ctx, &inventoryv1.CreateCoverageReportRequest{
					By: by, ActiveWithinSeconds: windowSec, PathDepth: int32(depth)})
				reports = []*inventoryv1.CoverageReport{r}
				return err
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch {
			case format == "json" && history > 0:
				list := make([]coverageJSON, len(reports))
				for i, r := range reports {
					list[i] = coverageToJSON(r)
				}
				res := map[string]any{"reports": list}
				if next != "" {
					res["next_page_token"] = next
				}
				return writeJSON(w, res)
			case format == "json":
				return writeJSON(w, coverageToJSON(reports[0]))
			case format == "html":
				return writeHTMLReport(output, reports[0])
			case history > 0:
				if err := printCoverageHistory(w, reports); err != nil {
					return err
				}
				_ = nextPage(cmd, next)
				return nil
			}
			return printCoverage(w, reports[0])
		},
	}
	conn.addFlags(cmd)
	cmd.Flags().StringVar(&by, "by", "environment", "group by environment, owner or path")
	cmd.Flags().StringVar(&activeWithin, "active-within", "", "a workload issued an SVID this recently counts as covered (default 24h)")
	cmd.Flags().IntVar(&depth, "depth", 0, "with --by path: leading path segments per group (default 1)")
	cmd.Flags().IntVar(&history, "history", 0, "list the last N stored reports of this view instead of making one")
	cmd.Flags().StringVar(&format, "format", "text", "text, json or html (html needs --output)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: table or json; with --format html, the file to write (mode 0644)")
	cmd.Flags().BoolVar(&out.json, "json", false, "print JSON instead of a table (same as -o json)")
	page.addFlagsAll(cmd, "reports", maxInventoryPage)
	return cmd
}

// coverageGroupJSON and coverageJSON are the CLI's JSON shape of a
// coverage report. Percentages are omitted when undefined; deltas are
// omitted when there is nothing to compare with.
type coverageGroupJSON struct {
	Key             string             `json:"key"`
	Workloads       int64              `json:"workloads"`
	SPIFFEActive    int64              `json:"spiffe_active"`
	StaticOpen      int64              `json:"static_open"`
	Brokered        int64              `json:"brokered"`
	StaticReplaced  int64              `json:"static_replaced"`
	Nodes           int64              `json:"nodes"`
	CoveredPercent  *float64           `json:"covered_percent,omitempty"`
	SPIFFEPercent   *float64           `json:"spiffe_percent,omitempty"`
	ReplacedPercent *float64           `json:"replaced_percent,omitempty"`
	Delta           *coverageDeltaJSON `json:"delta,omitempty"`
}

type planItemJSON struct {
	ID               string          `json:"id"`
	RuleID           string          `json:"rule_id"`
	Kind             string          `json:"kind"`
	Preview          string          `json:"preview,omitempty"`
	Path             string          `json:"path"`
	MoreLocations    int32           `json:"more_locations,omitempty"`
	Environment      string          `json:"environment"`
	Owner            string          `json:"owner"`
	Risk             int32           `json:"risk"`
	Suggestion       *suggestionJSON `json:"suggestion,omitempty"`
	LinkedCredential string          `json:"linked_credential,omitempty"`
}

type coverageDeltaJSON struct {
	Workloads      int64    `json:"workloads"`
	SPIFFEActive   int64    `json:"spiffe_active"`
	StaticOpen     int64    `json:"static_open"`
	Brokered       int64    `json:"brokered"`
	StaticReplaced int64    `json:"static_replaced"`
	CoveredPercent *float64 `json:"covered_percent_points,omitempty"`
}

type coverageJSON struct {
	ID                int64               `json:"id"`
	CreatedAt         string              `json:"created_at"`
	By                string              `json:"by"`
	ActiveWithin      string              `json:"active_within"`
	PathDepth         int32               `json:"path_depth,omitempty"`
	Groups            []coverageGroupJSON `json:"groups"`
	Total             coverageGroupJSON   `json:"total"`
	PreviousID        int64               `json:"previous_id,omitempty"`
	PreviousCreatedAt string              `json:"previous_created_at,omitempty"`
	MigrationPlan     []planItemJSON      `json:"migration_plan"`
}

func coverageGroupToJSON(g *inventoryv1.CoverageGroup) coverageGroupJSON {
	j := coverageGroupJSON{Key: g.GetKey(), Workloads: g.GetWorkloads(), SPIFFEActive: g.GetSpiffeActive(),
		StaticOpen: g.GetStaticOpen(), Brokered: g.GetBrokered(), Nodes: g.GetNodes(), CoveredPercent: g.CoveredPercent,
		StaticReplaced: g.GetStaticReplaced(), SPIFFEPercent: g.SpiffePercent, ReplacedPercent: g.ReplacedPercent}
	if d := g.GetDelta(); d != nil {
		j.Delta = &coverageDeltaJSON{Workloads: d.GetWorkloads(), SPIFFEActive: d.GetSpiffeActive(), StaticOpen: d.GetStaticOpen(),
			Brokered: d.GetBrokered(), CoveredPercent: d.CoveredPercent, StaticReplaced: d.GetStaticReplaced()}
	}
	return j
}

func coverageToJSON(r *inventoryv1.CoverageReport) coverageJSON {
	j := coverageJSON{ID: r.GetId(), CreatedAt: rfc3339(r.GetCreatedAt()), By: r.GetBy(),
		ActiveWithin: inventory.FormatAge(time.Duration(r.GetActiveWithinSeconds()) * time.Second), PathDepth: r.GetPathDepth(),
		Groups: []coverageGroupJSON{}, Total: coverageGroupToJSON(r.GetTotal()), PreviousID: r.GetPreviousId(),
		PreviousCreatedAt: rfc3339(r.GetPreviousCreatedAt())}
	for _, g := range r.GetGroups() {
		j.Groups = append(j.Groups, coverageGroupToJSON(g))
	}
	j.MigrationPlan = []planItemJSON{}
	for _, p := range r.GetMigrationPlan() {
		j.MigrationPlan = append(j.MigrationPlan, planItemJSON{ID: p.GetId(), RuleID: p.GetRuleId(), Kind: p.GetKind(), Preview: p.GetPreview(),
			Path: p.GetPath(), MoreLocations: p.GetMoreLocations(), Environment: p.GetEnvironment(), Owner: p.GetOwner(), Risk: p.GetRisk(),
			Suggestion: suggestionToJSON(p.GetSuggestion()), LinkedCredential: p.GetLinkedCredential()})
	}
	return j
}

// writeHTMLReport writes r as a self-contained HTML file at path.
func writeHTMLReport(path string, r *inventoryv1.CoverageReport) error {
	j := coverageToJSON(r)
	group := func(g coverageGroupJSON) htmlreport.Group {
		hg := htmlreport.Group{Key: g.Key, Workloads: g.Workloads, SPIFFEActive: g.SPIFFEActive, Brokered: g.Brokered,
			StaticOpen: g.StaticOpen, Replaced: g.StaticReplaced, CoveredPercent: g.CoveredPercent, SPIFFEPercent: g.SPIFFEPercent,
			ReplacedPercent: g.ReplacedPercent}
		if d := g.Delta; d != nil {
			hg.DeltaCovered, hg.DeltaStaticOpen = d.CoveredPercent, &d.StaticOpen
		}
		return hg
	}
	rep := htmlreport.Report{By: j.By, CreatedAt: j.CreatedAt, ActiveWithin: j.ActiveWithin, PreviousCreatedAt: j.PreviousCreatedAt,
		Total: group(j.Total)}
	for _, g := range j.Groups {
		rep.Groups = append(rep.Groups, group(g))
	}
	for _, p := range j.MigrationPlan {
		text := ""
		if p.Suggestion != nil {
			text = p.Suggestion.Text
		}
		rep.Plan = append(rep.Plan, htmlreport.PlanItem{ID: p.ID, RuleID: p.RuleID, Kind: p.Kind, Preview: p.Preview, Path: p.Path,
			MoreLocations: int(p.MoreLocations), Environment: p.Environment, Owner: p.Owner, Risk: int(p.Risk), Suggestion: text,
			Linked: p.LinkedCredential})
	}
	var buf bytes.Buffer
	if err := htmlreport.Render(&buf, rep); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("--output %s: %w", path, err)
	}
	return nil
}

func percent(p *float64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatFloat(*p, 'f', 1, 64) + "%"
}

// signed renders a change: "+2", "-1", "0".
func signed(n int64) string {
	if n > 0 {
		return "+" + strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10)
}

func signedPoints(p *float64) string {
	switch {
	case p == nil:
		return "-"
	case *p > 0:
		return "+" + strconv.FormatFloat(*p, 'f', 1, 64)
	}
	return strconv.FormatFloat(*p, 'f', 1, 64)
}

func printCoverage(w io.Writer, r *inventoryv1.CoverageReport) error {
	j := coverageToJSON(r)
	fmt.Fprintf(w, "Coverage by %s at %s (covered: SVID issued within %s, or a brokered credential in use)\n", j.By, j.CreatedAt, j.ActiveWithin)
	if j.PreviousID != 0 {
		fmt.Fprintf(w, "Change since report #%d of %s\n", j.PreviousID, j.PreviousCreatedAt)
	} else {
		fmt.Fprintln(w, "First report of this view: no change to show yet")
	}
	fmt.Fprintln(w)
	rows := [][]string{{strings.ToUpper(j.By), "WORKLOADS", "SPIFFE", "BROKERED", "STATIC OPEN", "STATIC REPLACED", "COVERED", "Δ SPIFFE", "Δ STATIC", "Δ COVERED", "NODES"}}
	row := func(g coverageGroupJSON) []string {
		r := []string{g.Key, strconv.FormatInt(g.Workloads, 10),
			strconv.FormatInt(g.SPIFFEActive, 10) + " (" + percent(g.SPIFFEPercent) + ")",
			strconv.FormatInt(g.Brokered, 10), strconv.FormatInt(g.StaticOpen, 10),
			strconv.FormatInt(g.StaticReplaced, 10) + " (" + percent(g.ReplacedPercent) + ")", percent(g.CoveredPercent)}
		switch {
		case g.Delta != nil:
			r = append(r, signed(g.Delta.SPIFFEActive), signed(g.Delta.StaticOpen), signedPoints(g.Delta.CoveredPercent))
		case j.PreviousID != 0:
			r = append(r, "new", "new", "new")
		default:
			r = append(r, "-", "-", "-")
		}
		return append(r, strconv.FormatInt(g.Nodes, 10))
	}
	for _, g := range j.Groups {
		rows = append(rows, row(g))
	}
	rows = append(rows, row(j.Total))
	if err := table(w, rows); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(j.MigrationPlan) == 0 {
		_, err := fmt.Fprintln(w, "Migration plan: no open static credentials.")
		return err
	}
	fmt.Fprintln(w, "Migration plan (open static credentials, highest risk first):")
	plan := [][]string{{"RISK", "FINDING", "WHERE", "ENVIRONMENT", "REPLACE WITH"}}
	for _, p := range j.MigrationPlan {
		where := p.Path
		if p.MoreLocations > 0 {
			where += fmt.Sprintf(" (+%d)", p.MoreLocations)
		}
		text := "-"
		if p.Suggestion != nil {
			text = p.Suggestion.Text
		}
		if p.LinkedCredential != "" {
			text = "linked to " + p.LinkedCredential + "; " + text
		}
		plan = append(plan, []string{strconv.Itoa(int(p.Risk)), p.ID + " " + p.RuleID, where, p.Environment, text})
	}
	return table(w, plan)
}

func printCoverageHistory(w io.Writer, reports []*inventoryv1.CoverageReport) error {
	rows := [][]string{{"REPORT", "TIME", "WORKLOADS", "SPIFFE", "BROKERED", "STATIC OPEN", "COVERED", "Δ COVERED"}}
	for _, r := range reports {
		t := coverageGroupToJSON(r.GetTotal())
		d := "-"
		if t.Delta != nil {
			d = signedPoints(t.Delta.CoveredPercent)
		}
		rows = append(rows, []string{"#" + strconv.FormatInt(r.GetId(), 10), rfc3339(r.GetCreatedAt()),
			strconv.FormatInt(t.Workloads, 10), strconv.FormatInt(t.SPIFFEActive, 10), strconv.FormatInt(t.Brokered, 10), strconv.FormatInt(t.StaticOpen, 10),
			percent(t.CoveredPercent), d})
	}
	return table(w, rows)
}
