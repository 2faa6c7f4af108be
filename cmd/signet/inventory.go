package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/config"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/inventory"
)

// callInventory runs fn with Inventory and Audit clients on the admin
// socket and a deadline, and turns gRPC errors into one-line messages.
func (a *adminConn) callInventory(ctx context.Context, fn func(ctx context.Context, inv inventoryv1.InventoryClient, audit inventoryv1.AuditClient) error) error {
	conn, err := a.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
	defer cancel()
	return rpcErr(fn(ctx, inventoryv1.NewInventoryClient(conn), inventoryv1.NewAuditClient(conn)))
}

// reportFindings records findings of a scan in the server's inventory (for
// `signet scan --report`). host names the machine scanned (empty: this
// host's name); labels (owner, environment, …) are given to every finding;
// scope lists the paths the scan covered completely, so that findings no
// longer there are marked gone (nil: only add). Fill each Finding's rule_id,
// detector, kind, severity, description, preview, fingerprint, details and
// locations (path, line, column, end_line, commit, author, email, date as
// RFC 3339); the secret itself is never sent.
func reportFindings(ctx context.Context, conn *adminConn, host string, labels map[string]string, scope []string,
	findings []*inventoryv1.Finding) (*inventoryv1.ReportFindingsResponse, error) {
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("report findings: host name: %w", err)
		}
		host = h
	}
	req := &inventoryv1.ReportFindingsRequest{Host: host, Labels: labels, Scope: scope, Findings: findings}
	var resp *inventoryv1.ReportFindingsResponse
	err := conn.callInventory(ctx, func(ctx context.Context, inv inventoryv1.InventoryClient, _ inventoryv1.AuditClient) (err error) {
		resp, err = inv.ReportFindings(ctx, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("report findings: %w", err)
	}
	return resp, nil
}

// parseLabels parses key=value arguments of flag into a map (for label
// flags such as `scan --report --label environment=ci`).
func parseLabels(flag string, kvs []string) (map[string]string, error) {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want key=value, e.g. environment=ci or owner=payments", flag, kv)
		}
		out[k] = v
	}
	return out, nil
}

// ageFlag parses an age flag such as --stale 30d; empty is zero.
func ageFlag(name, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := config.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--%s %q: want a positive duration such as 30d, 12h, 1w or 1d12h", name, v)
	}
	return d, nil
}

// thresholdFlags are the inventory flag thresholds settable on the command
// line.
type thresholdFlags struct{ stale, maxX509, maxJWT, maxAge string }

func (f *thresholdFlags) add(cmd *cobra.Command, staleUsage string) {
	fl := cmd.Flags()
	fl.StringVar(&f.stale, "stale", "", staleUsage)
	fl.StringVar(&f.maxX509, "max-x509-ttl", "", "flag workloads whose X509-SVID TTL exceeds this (default 24h)")
	fl.StringVar(&f.maxJWT, "max-jwt-ttl", "", "flag workloads whose JWT-SVID TTL exceeds this (default 1h)")
	fl.StringVar(&f.maxAge, "max-credential-age", "", "flag static credentials known for longer than this (default 90d)")
}

func (f *thresholdFlags) proto() (*inventoryv1.Thresholds, error) {
	var t [4]time.Duration
	for i, p := range []struct{ name, v string }{
		{"stale", f.stale}, {"max-x509-ttl", f.maxX509}, {"max-jwt-ttl", f.maxJWT}, {"max-credential-age", f.maxAge},
	} {
		var err error
		if t[i], err = ageFlag(p.name, p.v); err != nil {
			return nil, err
		}
	}
	sec := func(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }
	return &inventoryv1.Thresholds{StaleSeconds: sec(t[0]), MaxX509TtlSeconds: sec(t[1]), MaxJwtTtlSeconds: sec(t[2]),
		MaxCredentialAgeSeconds: sec(t[3])}, nil
}

func newInventoryCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Every non-human identity the server knows: nodes, workloads, credentials, static-credential findings",
		Long: `The inventory lists attested nodes, workloads (registration entries), credentials
brokered by Signet (leases) and static credentials
reported by ` + "`signet scan --report`" + `, each with its owner and environment labels
and flags:

  stale                  a workload never issued an SVID, or not for --stale
                         (default 30d); a node not seen for --stale
  over_long_ttl          X509-SVID TTL over --max-x509-ttl (24h) or JWT-SVID TTL
                         over --max-jwt-ttl (1h)
  old_static_credential  an open finding known (first seen or committed) for
                         longer than --max-credential-age (90d)

A workload without an environment label takes its node's. IDs are
node:SPIFFE_ID, workload:ENTRY_ID and finding:FINGERPRINT.

Findings carry a risk score (list --sort risk; show explains it) and a
suggested replacement; ` + "`inventory replace`" + ` links one to a broker credential.
See docs/inventory.md.`,
	}
	conn.addFlags(cmd)
	cmd.AddCommand(newInventoryListCmd(&conn), newInventoryShowCmd(&conn), newInventoryResolveCmd(&conn), newInventoryReplaceCmd(&conn))
	return cmd
}

func newInventoryListCmd(conn *adminConn) *cobra.Command {
	var (
		kind            string
		th              thresholdFlags
		flagged, closed bool
		asCSV           bool
		out             output
		sortBy          string
		page            pageFlags
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List identities with their flags",
		Example: `  signet inventory list
  signet inventory list --kind workload --stale 30d
  signet inventory list --kind finding --flagged --csv > findings.csv
  signet inventory list --kind finding --sort risk --limit 20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := inventory.ParseKind(kind); err != nil {
				return fmt.Errorf("--kind %q: use node, workload, credential or finding", kind)
			}
			if out.json && asCSV {
				return errors.New("--json and --csv are mutually exclusive (-o json too)")
			}
			thresholds, err := th.proto()
			if err != nil {
				return err
			}
			switch sortBy {
			case "":
			case "risk":
				if kind != string(inventory.KindFinding) {
					return errors.New("--sort risk applies to findings: add --kind finding")
				}
			default:
				return fmt.Errorf("--sort %q: use risk (with --kind finding)", sortBy)
			}
			if err := page.checkAll(maxInventoryPage); err != nil {
				return err
			}
			req := &inventoryv1.ListInventoryRequest{Kind: kind, Thresholds: thresholds, StaleOnly: th.stale != "",
				FlaggedOnly: flagged, IncludeClosed: closed, Sort: sortBy, PageSize: int32(page.limit), PageToken: page.token}
			if page.limit == 0 && kind == string(inventory.KindFinding) {
				req.PageSize = 1000 // every page, in few calls
			}
			var items []*inventoryv1.InventoryItem
			next := ""
			err = conn.callInventory(cmd.Context(), func(ctx context.Context, inv inventoryv1.InventoryClient, _ inventoryv1.AuditClient) error {
				// Without --limit, every page; with it, the one page asked for.
				for {
					resp, err := inv.ListInventory(ctx, req)
					if err != nil {
						return err
					}
					items = append(items, resp.GetItems()...)
					next = resp.GetNextPageToken()
					if page.limit > 0 || next == "" {
						return nil
					}
					req.PageToken = next
				}
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch {
			case out.json:
				js := make([]itemJSON, len(items))
				for i, it := range items {
					js[i] = itemToJSON(it)
				}
				res := map[string]any{"items": js}
				if next != "" {
					res["next_page_token"] = next
				}
				return writeJSON(w, res)
			case asCSV:
				if err := writeItemsCSV(w, items); err != nil {
					return err
				}
				_ = nextPage(cmd, next)
				return nil
			}
			header := []string{"ID", "KIND", "NAME", "ENVIRONMENT", "OWNER", "LAST SEEN", "FLAGS"}
			if kind == string(inventory.KindFinding) {
				header = []string{"ID", "RISK", "NAME", "ENVIRONMENT", "OWNER", "STATUS", "SUGGESTED REPLACEMENT"}
			}
			rows := [][]string{header}
			for _, it := range items {
				if f := it.GetFinding(); kind == string(inventory.KindFinding) && f != nil {
					status := f.GetStatus()
					if r := f.GetReplacement(); r != nil && status != "replaced" {
						status = "linked to " + r.GetCredential()
					}
					rows = append(rows, []string{it.GetId(), strconv.Itoa(int(f.GetRisk())), it.GetName(), it.GetEnvironment(), it.GetOwner(),
						status, orDash(f.GetSuggestion().GetText())})
					continue
				}
				rows = append(rows, []string{it.GetId(), it.GetKind(), it.GetName(), it.GetEnvironment(), it.GetOwner(),
					fmtTime(unixTime(it.GetLastSeenAt())), orDash(strings.Join(flagCodes(it), ","))})
			}
			if err := table(w, rows); err != nil {
				return err
			}
			_ = nextPage(cmd, next)
			return nil
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "", "only this kind: node, workload, credential or finding")
	th.add(cmd, "only stale identities: workloads not issued an SVID and nodes not seen for this long, e.g. 30d")
	cmd.Flags().BoolVar(&flagged, "flagged", false, "only identities with a flag")
	cmd.Flags().BoolVar(&closed, "all", false, "also findings no longer open (gone from a rescan, resolved or replaced) and ended leases")
	cmd.Flags().StringVar(&sortBy, "sort", "", "risk: findings by risk score, highest first (with --kind finding)")
	page.addFlagsAll(cmd, "items", maxInventoryPage)
	out.addFlags(cmd)
	cmd.Flags().BoolVar(&asCSV, "csv", false, "print CSV instead of a table")
	return cmd
}

func flagCodes(it *inventoryv1.InventoryItem) []string {
	out := make([]string, len(it.GetFlags()))
	for i, f := range it.GetFlags() {
		out[i] = f.GetCode()
	}
	return out
}

// flagJSON, locationJSON, findingJSON and itemJSON are the CLI's JSON shape
// of inventory items: times RFC 3339, empty fields left out.
type flagJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type locationJSON struct {
	Host        string `json:"host,omitempty"`
	Path        string `json:"path"`
	Line        int32  `json:"line,omitempty"`
	Column      int32  `json:"column,omitempty"`
	Commit      string `json:"commit,omitempty"`
	Author      string `json:"author,omitempty"`
	Email       string `json:"email,omitempty"`
	Date        string `json:"date,omitempty"`
	FirstSeenAt string `json:"first_seen_at,omitempty"`
	LastSeenAt  string `json:"last_seen_at,omitempty"`
	GoneAt      string `json:"gone_at,omitempty"`
}

type findingJSON struct {
	Fingerprint string            `json:"fingerprint"`
	RuleID      string            `json:"rule_id"`
	Detector    string            `json:"detector,omitempty"`
	Kind        string            `json:"kind"`
	Severity    string            `json:"severity,omitempty"`
	Description string            `json:"description,omitempty"`
	Preview     string            `json:"preview,omitempty"`
	Details     map[string]string `json:"details,omitempty"`
	Status      string            `json:"status"`
	Resolution  string            `json:"resolution,omitempty"`
	ClosedAt    string            `json:"closed_at,omitempty"`
	Locations   []locationJSON    `json:"locations"`
	Risk        int32             `json:"risk"`
	RiskFactors []riskFactorJSON  `json:"risk_factors,omitempty"`
	Suggestion  *suggestionJSON   `json:"suggestion,omitempty"`
	Replacement *replacementJSON  `json:"replacement,omitempty"`
}

type riskFactorJSON struct {
	Name   string `json:"name"`
	Points int32  `json:"points"`
	Reason string `json:"reason"`
}

type suggestionJSON struct {
	Provider    string   `json:"provider,omitempty"`
	Credentials []string `json:"credentials,omitempty"`
	Text        string   `json:"text"`
}

type replacementJSON struct {
	Credential string   `json:"credential"`
	Note       string   `json:"note,omitempty"`
	LinkedBy   string   `json:"linked_by,omitempty"`
	LinkedAt   string   `json:"linked_at,omitempty"`
	State      string   `json:"state"`
	Missing    []string `json:"missing,omitempty"`
	ReplacedAt string   `json:"replaced_at,omitempty"`
}

func suggestionToJSON(s *inventoryv1.Suggestion) *suggestionJSON {
	if s == nil {
		return nil
	}
	return &suggestionJSON{Provider: s.GetProvider(), Credentials: s.GetCredentials(), Text: s.GetText()}
}

type itemJSON struct {
	ID          string            `json:"id"`
	Kind        string            `json:"kind"`
	Name        string            `json:"name"`
	Environment string            `json:"environment"`
	Owner       string            `json:"owner"`
	Labels      map[string]string `json:"labels,omitempty"`
	CreatedAt   string            `json:"created_at,omitempty"`
	LastSeenAt  string            `json:"last_seen_at,omitempty"`
	Flags       []flagJSON        `json:"flags,omitempty"`
	Node        *nodeDetailJSON   `json:"node,omitempty"`
	Workload    *workloadJSON     `json:"workload,omitempty"`
	Finding     *findingJSON      `json:"finding,omitempty"`
}

type nodeDetailJSON struct {
	SPIFFEID        string   `json:"spiffe_id"`
	AttestationType string   `json:"attestation_type"`
	Selectors       []string `json:"selectors,omitempty"`
	Banned          bool     `json:"banned"`
	CertNotAfter    string   `json:"cert_not_after,omitempty"`
}

type workloadJSON struct {
	EntryID       string   `json:"entry_id"`
	SPIFFEID      string   `json:"spiffe_id"`
	ParentID      string   `json:"parent_id"`
	Selectors     []string `json:"selectors,omitempty"`
	X509TTL       string   `json:"x509_ttl"`
	JWTTTL        string   `json:"jwt_ttl"`
	FirstIssuedAt string   `json:"first_issued_at,omitempty"`
	LastIssuedAt  string   `json:"last_issued_at,omitempty"`
	FirstServedAt string   `json:"first_served_at,omitempty"`
	LastServedAt  string   `json:"last_served_at,omitempty"`
}

func itemToJSON(it *inventoryv1.InventoryItem) itemJSON {
	j := itemJSON{
		ID: it.GetId(), Kind: it.GetKind(), Name: it.GetName(), Environment: it.GetEnvironment(), Owner: it.GetOwner(),
		Labels: it.GetLabels(), CreatedAt: rfc3339(it.GetCreatedAt()), LastSeenAt: rfc3339(it.GetLastSeenAt()),
	}
	for _, f := range it.GetFlags() {
		j.Flags = append(j.Flags, flagJSON{Code: f.GetCode(), Message: f.GetMessage()})
	}
	if n := it.GetNode(); n != nil {
		j.Node = &nodeDetailJSON{SPIFFEID: n.GetSpiffeId(), AttestationType: n.GetAttestationType(), Selectors: n.GetSelectors(),
			Banned: n.GetBanned(), CertNotAfter: rfc3339(n.GetCertNotAfter())}
	}
	if w := it.GetWorkload(); w != nil {
		j.Workload = &workloadJSON{EntryID: w.GetEntryId(), SPIFFEID: w.GetSpiffeId(), ParentID: w.GetParentId(),
			Selectors: w.GetSelectors(), X509TTL: seconds(w.GetX509TtlSeconds()), JWTTTL: seconds(w.GetJwtTtlSeconds()),
			FirstIssuedAt: rfc3339(w.GetFirstIssuedAt()), LastIssuedAt: rfc3339(w.GetLastIssuedAt()),
			FirstServedAt: rfc3339(w.GetFirstServedAt()), LastServedAt: rfc3339(w.GetLastServedAt())}
	}
	if f := it.GetFinding(); f != nil {
		fj := &findingJSON{Fingerprint: f.GetFingerprint(), RuleID: f.GetRuleId(), Detector: f.GetDetector(), Kind: f.GetKind(),
			Severity: f.GetSeverity(), Description: f.GetDescription(), Preview: f.GetPreview(), Details: f.GetDetails(),
			Status: f.GetStatus(), Resolution: f.GetResolution(), ClosedAt: rfc3339(f.GetClosedAt()), Risk: f.GetRisk(),
			Suggestion: suggestionToJSON(f.GetSuggestion())}
		for _, rf := range f.GetRiskFactors() {
			fj.RiskFactors = append(fj.RiskFactors, riskFactorJSON{Name: rf.GetName(), Points: rf.GetPoints(), Reason: rf.GetReason()})
		}
		if r := f.GetReplacement(); r != nil {
			fj.Replacement = &replacementJSON{Credential: r.GetCredential(), Note: r.GetNote(), LinkedBy: r.GetLinkedBy(),
				LinkedAt: rfc3339(r.GetLinkedAt()), State: r.GetState(), Missing: r.GetMissing(), ReplacedAt: rfc3339(r.GetReplacedAt())}
		}
		for _, l := range f.GetLocations() {
			fj.Locations = append(fj.Locations, locationJSON{Host: l.GetHost(), Path: l.GetPath(), Line: l.GetLine(),
				Column: l.GetColumn(), Commit: l.GetCommit(), Author: l.GetAuthor(), Email: l.GetEmail(), Date: l.GetDate(),
				FirstSeenAt: rfc3339(l.GetFirstSeenAt()), LastSeenAt: rfc3339(l.GetLastSeenAt()), GoneAt: rfc3339(l.GetGoneAt())})
		}
		j.Finding = fj
	}
	return j
}

// writeItemsCSV writes one row per item, with a header.
func writeItemsCSV(w io.Writer, items []*inventoryv1.InventoryItem) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"id", "kind", "name", "environment", "owner", "labels", "created_at", "last_seen_at", "flags", "flag_messages"})
	for _, it := range items {
		var labels, msgs []string
		for _, k := range slices.Sorted(maps.Keys(it.GetLabels())) {
			labels = append(labels, k+"="+it.GetLabels()[k])
		}
		for _, f := range it.GetFlags() {
			msgs = append(msgs, f.GetMessage())
		}
		_ = cw.Write([]string{it.GetId(), it.GetKind(), it.GetName(), it.GetEnvironment(), it.GetOwner(),
			strings.Join(labels, ";"), rfc3339(it.GetCreatedAt()), rfc3339(it.GetLastSeenAt()),
			strings.Join(flagCodes(it), ";"), strings.Join(msgs, "; ")})
	}
	cw.Flush()
	return cw.Error()
}

func newInventoryShowCmd(conn *adminConn) *cobra.Command {
	var (
		th  thresholdFlags
		out output
	)
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one identity: node:SPIFFE_ID, workload:ENTRY_ID, finding:FINGERPRINT, or a bare ID",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			thresholds, err := th.proto()
			if err != nil {
				return err
			}
			var it *inventoryv1.InventoryItem
			err = conn.callInventory(cmd.Context(), func(ctx context.Context, inv inventoryv1.InventoryClient, _ inventoryv1.AuditClient) (err error) {
				it, err = inv.GetInventoryItem(ctx, &inventoryv1.GetInventoryItemRequest{Id: args[0], Thresholds: thresholds})
				return err
			})
			if err != nil {
				return err
			}
			if out.json {
				return writeJSON(cmd.OutOrStdout(), itemToJSON(it))
			}
			return printItem(cmd.OutOrStdout(), it)
		},
	}
	th.add(cmd, "flag workloads not issued an SVID and nodes not seen for this long (default 30d)")
	out.addFlags(cmd)
	return cmd
}

// printItem writes an item as aligned "Field: value" lines.
func printItem(w io.Writer, it *inventoryv1.InventoryItem) error {
	j := itemToJSON(it)
	rows := [][]string{{"ID:", j.ID}, {"Kind:", j.Kind}, {"Name:", j.Name}, {"Environment:", j.Environment}, {"Owner:", j.Owner}}
	for _, k := range slices.Sorted(maps.Keys(j.Labels)) {
		rows = append(rows, []string{"Label:", k + "=" + j.Labels[k]})
	}
	switch {
	case j.Node != nil:
		rows = append(rows, []string{"Attestation:", j.Node.AttestationType}, []string{"Banned:", strconv.FormatBool(j.Node.Banned)},
			[]string{"Attested:", orDash(j.CreatedAt)}, []string{"Last seen:", orDash(j.LastSeenAt)},
			[]string{"SVID expires:", orDash(j.Node.CertNotAfter)})
	case j.Workload != nil:
		wl := j.Workload
		rows = append(rows, []string{"Entry ID:", wl.EntryID}, []string{"Parent ID:", wl.ParentID},
			[]string{"Selectors:", joinOrDash(wl.Selectors)}, []string{"X509-SVID TTL:", wl.X509TTL}, []string{"JWT-SVID TTL:", wl.JWTTTL},
			[]string{"Created:", orDash(j.CreatedAt)}, []string{"First minted:", orDash(wl.FirstIssuedAt)},
			[]string{"Last minted:", orDash(wl.LastIssuedAt)}, []string{"First served:", orDash(wl.FirstServedAt)},
			[]string{"Last served:", orDash(wl.LastServedAt)})
	case j.Finding != nil:
		f := j.Finding
		rows = append(rows, []string{"Fingerprint:", f.Fingerprint}, []string{"Rule:", f.RuleID + " (" + orDash(f.Detector) + ")"},
			[]string{"Credential kind:", f.Kind}, []string{"Severity:", orDash(f.Severity)}, []string{"Preview:", orDash(f.Preview)},
			[]string{"Status:", f.Status + strings.TrimSuffix(" "+f.Resolution, " ")}, []string{"First seen:", orDash(j.CreatedAt)},
			[]string{"Last seen:", orDash(j.LastSeenAt)})
		if f.Description != "" {
			rows = append(rows, []string{"Description:", f.Description})
		}
		for _, k := range slices.Sorted(maps.Keys(f.Details)) {
			rows = append(rows, []string{"Detail:", k + "=" + f.Details[k]})
		}
		for _, l := range f.Locations {
			rows = append(rows, []string{"Location:", locationText(l)})
		}
		rows = append(rows, []string{"Risk:", strconv.Itoa(int(f.Risk)) + " of 100"})
		for _, rf := range f.RiskFactors {
			rows = append(rows, []string{"Risk factor:", fmt.Sprintf("%+d %s: %s", rf.Points, rf.Name, rf.Reason)})
		}
		if f.Suggestion != nil {
			rows = append(rows, []string{"Replace with:", f.Suggestion.Text})
		}
		if r := f.Replacement; r != nil {
			note := ""
			if r.Note != "" {
				note = " (" + r.Note + ")"
			}
			rows = append(rows, []string{"Linked to:", r.Credential + note + " by " + orDash(r.LinkedBy) + " at " + orDash(r.LinkedAt)})
			switch {
			case r.State == "replaced":
				rows = append(rows, []string{"Replacement:", "replaced at " + orDash(r.ReplacedAt)})
			case len(r.Missing) == 0:
				rows = append(rows, []string{"Replacement:", "linked, proof complete: replaced at the next look"})
			default:
				state := "linked"
				for _, m := range r.Missing {
					if strings.HasPrefix(m, "secret still present") {
						state = "linked, secret still present"
					}
				}
				rows = append(rows, []string{"Replacement:", state})
				for _, m := range r.Missing {
					rows = append(rows, []string{"Missing:", m})
				}
			}
		}
	}
	for _, f := range j.Flags {
		rows = append(rows, []string{"Flag:", f.Code + ": " + f.Message})
	}
	return table(w, rows)
}

func locationText(l locationJSON) string {
	s := l.Host + ":" + l.Path
	if l.Line > 0 {
		s += ":" + strconv.Itoa(int(l.Line))
	}
	if l.Commit != "" {
		s += " commit " + l.Commit
		if l.Author != "" {
			s += " by " + l.Author
		}
		if l.Date != "" {
			s += " on " + l.Date
		}
	}
	if l.GoneAt != "" {
		s += " (gone since " + l.GoneAt + ")"
	} else if l.LastSeenAt != "" {
		s += " (last seen " + l.LastSeenAt + ")"
	}
	return s
}

func newInventoryResolveCmd(conn *adminConn) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "resolve FINGERPRINT",
		Short: "Mark a static-credential finding resolved (rotated, revoked, false positive); it stays resolved if seen again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return errors.New("--reason is required, e.g. --reason rotated")
			}
			var it *inventoryv1.InventoryItem
			err := conn.callInventory(cmd.Context(), func(ctx context.Context, inv inventoryv1.InventoryClient, _ inventoryv1.AuditClient) (err error) {
				it, err = inv.ResolveFinding(ctx, &inventoryv1.ResolveFindingRequest{Id: args[0], Reason: reason})
				return err
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "resolved %s (%s)\n", it.GetId(), reason)
			return err
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why: rotated, revoked, false-positive, …")
	return cmd
}

func newInventoryReplaceCmd(conn *adminConn) *cobra.Command {
	var (
		with string
		note string
		out  output
	)
	cmd := &cobra.Command{
		Use:   "replace FINDING_ID --with credential NAME",
		Short: "Link a static-credential finding to the brokered credential that replaces it (audited)",
		Long: `Links a finding to a credential configured in the broker. The finding becomes
"replaced" only when both hold: a complete rescan of its locations (scan
--report over them) no longer sees the secret, and the credential has had a
lease for a workload in the finding's environment since the link. Until then
` + "`signet inventory show`" + ` says what is still missing. To close a finding without
a replacement, use ` + "`signet inventory resolve`" + `.`,
		Example: `  signet inventory replace finding:3f2a9c01 --with credential orders-db --note CHG-42`,
		// `--with credential NAME`: the flag takes the word "credential",
		// NAME is the second argument.
		Args: func(cmd *cobra.Command, args []string) error {
			if with != "credential" || len(args) != 2 || args[1] == "" {
				return errors.New("want `signet inventory replace FINDING_ID --with credential NAME`, NAME a credential of broker.credentials")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var it *inventoryv1.InventoryItem
			err := conn.callInventory(cmd.Context(), func(ctx context.Context, inv inventoryv1.InventoryClient, _ inventoryv1.AuditClient) (err error) {
				it, err = inv.ReplaceFinding(ctx, &inventoryv1.ReplaceFindingRequest{Id: args[0], Credential: args[1], Note: note})
				return err
			})
			if err != nil {
				return err
			}
			if out.json {
				return writeJSON(cmd.OutOrStdout(), itemToJSON(it))
			}
			r := it.GetFinding().GetReplacement()
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "linked %s to credential %s (%s)\n", it.GetId(), r.GetCredential(), r.GetState())
			for _, m := range r.GetMissing() {
				fmt.Fprintf(cmd.OutOrStdout(), "  missing: %s\n", m)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&with, "with", "", "what replaces it: credential (followed by the credential's NAME)")
	cmd.Flags().StringVar(&note, "note", "", "a note for the audit log, e.g. a change ticket (CHG-42)")
	out.addFlags(cmd)
	return cmd
}

// newAgentLabelCmd is `signet agent label`.
func newAgentLabelCmd() *cobra.Command {
	var (
		conn adminConn
		out  output
	)
	cmd := &cobra.Command{
		Use:   "label SPIFFE_ID key=value... [key-...]",
		Short: "Set (key=value) or remove (key-) inventory labels of an attested agent, e.g. environment=vm owner=infra",
		Example: `  signet agent label spiffe://example.org/node/web-1 environment=vm owner=payments
  signet agent label spiffe://example.org/node/web-1 owner-`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &inventoryv1.SetNodeLabelsRequest{SpiffeId: args[0]}
			var set []string
			for _, a := range args[1:] {
				if k, ok := strings.CutSuffix(a, "-"); ok && !strings.Contains(a, "=") && k != "" {
					req.Remove = append(req.Remove, k)
				} else {
					set = append(set, a)
				}
			}
			var err error
			if req.Set, err = parseLabels("label", set); err != nil {
				return fmt.Errorf("%w (or key- to remove a label)", err)
			}
			var it *inventoryv1.InventoryItem
			err = conn.callInventory(cmd.Context(), func(ctx context.Context, inv inventoryv1.InventoryClient, _ inventoryv1.AuditClient) (err error) {
				it, err = inv.SetNodeLabels(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			if out.json {
				return writeJSON(cmd.OutOrStdout(), itemToJSON(it))
			}
			var labels []string
			for _, k := range slices.Sorted(maps.Keys(it.GetLabels())) {
				labels = append(labels, k+"="+it.GetLabels()[k])
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s labels: %s\n", args[0], orDash(strings.Join(labels, " ")))
			return err
		},
	}
	conn.addFlags(cmd)
	out.addFlags(cmd)
	return cmd
}
