package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/scan"
)

// scanReport holds `signet scan --report`'s flags: where to send the
// findings and what to label them with.
type scanReport struct {
	enabled bool
	conn    adminConn
	labels  []string
	host    string
}

func (r *scanReport) addFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&r.enabled, "report", false, "record the findings in the server's inventory (needs the admin socket)")
	fl.StringArrayVar(&r.labels, "label", nil, "with --report: label for every finding, key=value (repeatable), e.g. environment=ci owner=payments")
	fl.StringVar(&r.host, "host", "", "with --report: the host name findings are recorded under (default: this host's name)")
	r.conn.addFlags(cmd)
}

// check validates the flags before anything is scanned.
func (r *scanReport) check() error {
	if !r.enabled && (len(r.labels) > 0 || r.host != "") {
		return fmt.Errorf("--label and --host only apply with --report")
	}
	_, err := parseLabels("--label", r.labels)
	return err
}

// absolute makes scan paths absolute, so the locations the inventory
// records identify files unambiguously across runs and working directories.
func absolute(paths []string) ([]string, error) {
	out := make([]string, len(paths))
	for i, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("path %s: %w", p, err)
		}
		out[i] = a
	}
	return out, nil
}

// send records rep in the inventory. The scope (what this scan covered
// completely) lets the server mark findings that are no longer there as
// gone; it is sent only when every item could be scanned, so a partial scan
// never closes a finding it merely failed to read.
func (r *scanReport) send(ctx context.Context, w io.Writer, rep *scan.Report, t scan.Targets) error {
	labels, err := parseLabels("--label", r.labels)
	if err != nil {
		return err
	}
	var scope []string
	if !rep.Failed() {
		scope = append(scope, t.Paths...)
		if len(t.Env) > 0 {
			scope = append(scope, "env:")
		}
	}
	resp, err := reportFindings(ctx, &r.conn, r.host, labels, scope, findingsToProto(rep.Findings))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "reported to the inventory: %s\n", reportSummary(resp))
	return err
}

// reportSummary renders the server's answer in one line.
func reportSummary(resp *inventoryv1.ReportFindingsResponse) string {
	var parts []string
	for _, kv := range []struct {
		n    int32
		what string
	}{{resp.GetNew(), "new"}, {resp.GetReopened(), "reopened"}, {resp.GetSeen(), "seen again"}, {resp.GetGone(), "gone"}} {
		if kv.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", kv.n, kv.what))
		}
	}
	if len(parts) == 0 {
		return "nothing to record"
	}
	return strings.Join(parts, ", ")
}

// findingsToProto groups the scan's findings by fingerprint: one secret
// seen in several places is one inventory finding with several locations.
func findingsToProto(fs []scan.Finding) []*inventoryv1.Finding {
	byFP := make(map[string]*inventoryv1.Finding)
	var out []*inventoryv1.Finding
	for _, f := range fs {
		loc := &inventoryv1.FindingLocation{
			Path: f.Location.Path, Line: int32(f.Location.Line), Column: int32(f.Location.Column),
			EndLine: int32(f.Location.EndLine), Commit: f.Location.Commit, Author: f.Location.Author,
			Email: f.Location.Email, Date: f.Location.Date,
		}
		if p, ok := byFP[f.Fingerprint]; ok {
			p.Locations = append(p.Locations, loc)
			continue
		}
		p := &inventoryv1.Finding{
			RuleId: f.RuleID, Detector: f.Detector, Kind: string(f.Kind), Severity: string(f.Severity),
			Description: f.Description, Preview: f.Preview, Fingerprint: f.Fingerprint, Details: f.Details,
			Locations: []*inventoryv1.FindingLocation{loc},
		}
		byFP[f.Fingerprint] = p
		out = append(out, p)
	}
	return out
}
