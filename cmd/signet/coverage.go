package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/inventory"
)

func newCoverageCmd() *cobra.Command {
	var (
		conn             adminConn
		by, activeWithin string
		depth, history   int
		out              output
	)
	cmd := &cobra.Command{
		Use:   "coverage",
		Short: "How many workloads run on short-lived SPIFFE identities, and how many static credentials remain",
		Long: `Coverage per environment (the environment label: kubernetes, vm, bare-metal,
ci, legacy, saas; "unknown" when unset), per owner (the owner label) or per
path (a workload's SPIFFE ID path, a finding's directory):

  WORKLOADS    registration entries
  SPIFFE       of those, issued an SVID within --active-within (default 24h)
  STATIC OPEN  static credentials reported by ` + "`signet scan --report`" + ` and still open
  COVERED      SPIFFE / (SPIFFE + STATIC OPEN)

Every run stores its report on the server and shows the change since the
previous report of the same view; --history lists the stored reports.`,
		Example: `  signet coverage
  signet coverage --by owner --json
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
			windowSec := int64(window / time.Second)
			var reports []*inventoryv1.CoverageReport
			err = conn.callInventory(cmd.Context(), func(ctx context.Context, inv inventoryv1.InventoryClient, _ inventoryv1.AuditClient) error {
				if history > 0 {
					resp, err := inv.ListCoverageReports(ctx, &inventoryv1.ListCoverageReportsRequest{
						By: by, ActiveWithinSeconds: windowSec, PathDepth: int32(depth), Limit: int32(history)})
					reports = resp.GetReports()
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
			case out.json && history > 0:
				list := make([]coverageJSON, len(reports))
				for i, r := range reports {
					list[i] = coverageToJSON(r)
				}
				return writeJSON(w, map[string]any{"reports": list})
			case out.json:
				return writeJSON(w, coverageToJSON(reports[0]))
			case history > 0:
				return printCoverageHistory(w, reports)
			}
			return printCoverage(w, reports[0])
		},
	}
	conn.addFlags(cmd)
	cmd.Flags().StringVar(&by, "by", "environment", "group by environment, owner or path")
	cmd.Flags().StringVar(&activeWithin, "active-within", "", "a workload issued an SVID this recently counts as covered (default 24h)")
	cmd.Flags().IntVar(&depth, "depth", 0, "with --by path: leading path segments per group (default 1)")
	cmd.Flags().IntVar(&history, "history", 0, "list the last N stored reports of this view instead of making one")
	out.addFlags(cmd)
	return cmd
}

// coverageGroupJSON and coverageJSON are the CLI's JSON shape of a
// coverage report. Percentages are omitted when undefined; deltas are
// omitted when there is nothing to compare with.
type coverageGroupJSON struct {
	Key            string             `json:"key"`
	Workloads      int64              `json:"workloads"`
	SPIFFEActive   int64              `json:"spiffe_active"`
	StaticOpen     int64              `json:"static_open"`
	Brokered       int64              `json:"brokered"`
	Nodes          int64              `json:"nodes"`
	CoveredPercent *float64           `json:"covered_percent,omitempty"`
	Delta          *coverageDeltaJSON `json:"delta,omitempty"`
}

type coverageDeltaJSON struct {
	Workloads      int64    `json:"workloads"`
	SPIFFEActive   int64    `json:"spiffe_active"`
	StaticOpen     int64    `json:"static_open"`
	Brokered       int64    `json:"brokered"`
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
}

func coverageGroupToJSON(g *inventoryv1.CoverageGroup) coverageGroupJSON {
	j := coverageGroupJSON{Key: g.GetKey(), Workloads: g.GetWorkloads(), SPIFFEActive: g.GetSpiffeActive(),
		StaticOpen: g.GetStaticOpen(), Brokered: g.GetBrokered(), Nodes: g.GetNodes(), CoveredPercent: g.CoveredPercent}
	if d := g.GetDelta(); d != nil {
		j.Delta = &coverageDeltaJSON{Workloads: d.GetWorkloads(), SPIFFEActive: d.GetSpiffeActive(), StaticOpen: d.GetStaticOpen(),
			Brokered: d.GetBrokered(), CoveredPercent: d.CoveredPercent}
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
	return j
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
	rows := [][]string{{strings.ToUpper(j.By), "WORKLOADS", "SPIFFE", "BROKERED", "STATIC OPEN", "COVERED", "Δ SPIFFE", "Δ STATIC", "Δ COVERED", "NODES"}}
	row := func(g coverageGroupJSON) []string {
		r := []string{g.Key, strconv.FormatInt(g.Workloads, 10), strconv.FormatInt(g.SPIFFEActive, 10),
			strconv.FormatInt(g.Brokered, 10), strconv.FormatInt(g.StaticOpen, 10), percent(g.CoveredPercent)}
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
	return table(w, rows)
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
