package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
)

func newEntryCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{
		Use:   "entry",
		Short: "Manage registration entries: which SPIFFE ID a workload with given selectors receives",
	}
	conn.addFlags(cmd)
	cmd.AddCommand(newEntryCreateCmd(&conn), newEntryListCmd(&conn), newEntryShowCmd(&conn),
		newEntryUpdateCmd(&conn), newEntryDeleteCmd(&conn))
	return cmd
}

// entryFlags are the entry fields settable on the command line.
type entryFlags struct {
	spiffeID, parentID, x509TTL, jwtTTL, expiresAt, hint string
	selectors, dns, federatesWith, labels                []string
	admin, downstream                                    bool
}

func (f *entryFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.spiffeID, "spiffe-id", "", "SPIFFE ID the workload receives, e.g. spiffe://example.org/web")
	fl.StringVar(&f.parentID, "parent-id", "", "SPIFFE ID of the node (agent) or node alias the entry belongs to")
	fl.StringArrayVar(&f.selectors, "selector", nil, "selector the workload must have, type:value (repeatable), e.g. unix:uid:1000")
	fl.StringVar(&f.x509TTL, "x509-ttl", "", "X509-SVID lifetime, e.g. 1h (default: the server's)")
	fl.StringVar(&f.jwtTTL, "jwt-ttl", "", "JWT-SVID lifetime, e.g. 5m (default: the server's)")
	fl.StringArrayVar(&f.dns, "dns", nil, "DNS name for the X509-SVID (repeatable)")
	fl.StringArrayVar(&f.federatesWith, "federates-with", nil, "trust domain whose bundle the workload also receives (repeatable)")
	fl.StringArrayVar(&f.labels, "label", nil, "inventory label key=value, e.g. owner=payments (repeatable)")
	fl.StringVar(&f.expiresAt, "expires-at", "", "RFC 3339 time after which the entry is no longer served")
	fl.StringVar(&f.hint, "hint", "", "hint for workloads holding several SVIDs")
	fl.BoolVar(&f.admin, "admin", false, "SVIDs of this entry may call the admin API")
	fl.BoolVar(&f.downstream, "downstream", false, "SVIDs of this entry may sign for a nested CA")
}

// toJSON assembles the flags into the entry JSON shape, which validates.
func (f *entryFlags) toJSON() (entryJSON, error) {
	labels, err := parseLabels("--label", f.labels)
	if err != nil {
		return entryJSON{}, err
	}
	if len(labels) == 0 {
		labels = nil
	}
	return entryJSON{
		SPIFFEID: f.spiffeID, ParentID: f.parentID, Selectors: f.selectors, X509TTL: f.x509TTL, JWTTTL: f.jwtTTL,
		DNSNames: f.dns, Admin: f.admin, Downstream: f.downstream, FederatesWith: f.federatesWith,
		ExpiresAt: f.expiresAt, Hint: f.hint, Labels: labels,
	}, nil
}

func newEntryCreateCmd(conn *adminConn) *cobra.Command {
	var (
		f      entryFlags
		file   string
		atomic bool
		out    output
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an entry from flags, or many from a JSON file (--file)",
		Example: `  signet entry create --parent-id spiffe://example.org/node/web-1 \
      --spiffe-id spiffe://example.org/web --selector unix:uid:1000 --x509-ttl 1h
  signet entry create --file entries.json --atomic`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var entries []*commonv1.Entry
			if file != "" {
				if cmd.Flags().Changed("spiffe-id") || cmd.Flags().Changed("parent-id") || cmd.Flags().Changed("selector") {
					return fmt.Errorf("--file and entry flags (--spiffe-id, --parent-id, --selector …) are mutually exclusive")
				}
				var err error
				if entries, err = readEntriesFile(file); err != nil {
					return err
				}
			} else {
				if f.spiffeID == "" || f.parentID == "" || len(f.selectors) == 0 {
					return fmt.Errorf("--spiffe-id, --parent-id and at least one --selector are required (or --file)")
				}
				j, err := f.toJSON()
				if err != nil {
					return err
				}
				e, err := j.toProto()
				if err != nil {
					return err
				}
				entries = []*commonv1.Entry{e}
			}
			warnUnknownSelectorTypes(cmd.ErrOrStderr(), entries)
			var resp *adminv1.CreateEntriesResponse
			err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.CreateEntries(ctx, &adminv1.CreateEntriesRequest{Entries: entries, Atomic: atomic})
				return err
			})
			if err != nil {
				return err
			}
			return printEntryResults(cmd, resp.GetResults(), out.json)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&file, "file", "", "JSON file of entries (\"-\" for stdin), as `entry list --json` prints")
	cmd.Flags().BoolVar(&atomic, "atomic", false, "create all entries or none (default: each entry succeeds or fails on its own)")
	out.addFlags(cmd)
	return cmd
}

// printEntryResults reports a batch; it fails the command when any item
// failed, after printing every outcome.
func printEntryResults(cmd *cobra.Command, results []*adminv1.EntryResult, asJSON bool) error {
	failed := 0
	for _, r := range results {
		if codes.Code(r.GetStatus().GetCode()) != codes.OK {
			failed++
		}
	}
	w := cmd.OutOrStdout()
	switch {
	case asJSON:
		type item struct {
			Entry  entryJSON `json:"entry"`
			Status string    `json:"status"`
			Error  string    `json:"error,omitempty"`
		}
		items := make([]item, len(results))
		for i, r := range results {
			items[i] = item{Entry: entryToJSON(r.GetEntry()), Status: codes.Code(r.GetStatus().GetCode()).String(), Error: r.GetStatus().GetMessage()}
		}
		if err := writeJSON(w, map[string]any{"results": items, "created": len(results) - failed, "failed": failed}); err != nil {
			return err
		}
	case len(results) == 1:
		if failed > 0 {
			return errors.New(results[0].GetStatus().GetMessage())
		}
		return printEntry(w, results[0].GetEntry())
	default:
		for i, r := range results {
			if codes.Code(r.GetStatus().GetCode()) != codes.OK {
				fmt.Fprintf(cmd.ErrOrStderr(), "entry %d (%s): %s\n", i, r.GetEntry().GetSpiffeId(), r.GetStatus().GetMessage())
			}
		}
		fmt.Fprintf(w, "created %d of %d entries\n", len(results)-failed, len(results))
	}
	if failed > 0 {
		return &exitError{code: 1}
	}
	return nil
}

func printEntry(w io.Writer, e *commonv1.Entry) error {
	j := entryToJSON(e)
	rows := [][]string{
		{"Entry ID:", j.ID}, {"SPIFFE ID:", j.SPIFFEID}, {"Parent ID:", j.ParentID},
		{"Selectors:", selectorsText(e)}, {"X509-SVID TTL:", orDefault(j.X509TTL)}, {"JWT-SVID TTL:", orDefault(j.JWTTTL)},
	}
	if len(j.DNSNames) > 0 {
		rows = append(rows, []string{"DNS names:", strings.Join(j.DNSNames, ",")})
	}
	if j.Admin {
		rows = append(rows, []string{"Admin:", "true"})
	}
	if j.Downstream {
		rows = append(rows, []string{"Downstream:", "true"})
	}
	if len(j.FederatesWith) > 0 {
		rows = append(rows, []string{"Federates with:", strings.Join(j.FederatesWith, ",")})
	}
	if j.ExpiresAt != "" {
		rows = append(rows, []string{"Expires at:", j.ExpiresAt})
	}
	if j.Hint != "" {
		rows = append(rows, []string{"Hint:", j.Hint})
	}
	for k, v := range j.Labels {
		rows = append(rows, []string{"Label:", k + "=" + v})
	}
	rows = append(rows, []string{"Revision:", fmt.Sprint(j.Revision)})
	return table(w, rows)
}

func orDefault(s string) string {
	if s == "" {
		return "server default"
	}
	return s
}

func newEntryListCmd(conn *adminConn) *cobra.Command {
	var (
		parentID, spiffeID string
		selectors          []string
		out                output
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List entries, optionally filtered",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &adminv1.ListEntriesRequest{ParentId: parentID, SpiffeId: spiffeID, PageSize: 5000}
			for _, s := range selectors {
				sel, err := model.ParseSelector(s)
				if err != nil {
					return fmt.Errorf("--selector: %w", err)
				}
				req.Selectors = append(req.Selectors, &commonv1.Selector{Type: sel.Type, Value: sel.Value})
			}
			var all []*commonv1.Entry
			err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) error {
				for {
					resp, err := c.ListEntries(ctx, req)
					if err != nil {
						return err
					}
					all = append(all, resp.GetEntries()...)
					if resp.GetNextPageToken() == "" {
						return nil
					}
					req.PageToken = resp.GetNextPageToken()
				}
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out.json {
				list := make([]entryJSON, len(all))
				for i, e := range all {
					list[i] = entryToJSON(e)
				}
				return writeJSON(w, map[string]any{"entries": list})
			}
			rows := [][]string{{"ENTRY ID", "SPIFFE ID", "PARENT ID", "SELECTORS", "X509 TTL", "LAST ISSUED"}}
			for _, e := range all {
				rows = append(rows, []string{e.GetId(), e.GetSpiffeId(), e.GetParentId(), selectorsText(e),
					orDash(seconds(e.GetX509TtlSeconds())), fmtTime(unixTime(e.GetLastIssuedAt()))})
			}
			return table(w, rows)
		},
	}
	cmd.Flags().StringVar(&parentID, "parent-id", "", "only entries with this parent ID")
	cmd.Flags().StringVar(&spiffeID, "spiffe-id", "", "only entries with this SPIFFE ID")
	cmd.Flags().StringArrayVar(&selectors, "selector", nil, "only entries having this selector (repeatable)")
	out.addFlags(cmd)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newEntryShowCmd(conn *adminConn) *cobra.Command {
	var out output
	cmd := &cobra.Command{
		Use:   "show ENTRY_ID",
		Short: "Show one entry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var e *commonv1.Entry
			err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				e, err = c.GetEntry(ctx, &adminv1.GetEntryRequest{Id: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			if out.json {
				return writeJSON(cmd.OutOrStdout(), entryToJSON(e))
			}
			j := entryToJSON(e)
			if err := printEntry(cmd.OutOrStdout(), e); err != nil {
				return err
			}
			return table(cmd.OutOrStdout(), [][]string{{"Created:", orDash(j.CreatedAt)}, {"Updated:", orDash(j.UpdatedAt)},
				{"First issued:", orDash(j.FirstIssuedAt)}, {"Last issued:", orDash(j.LastIssuedAt)}})
		},
	}
	out.addFlags(cmd)
	return cmd
}

// flagFields maps entry flags to the update_mask field names they change.
var flagFields = map[string]string{
	"spiffe-id": "spiffe_id", "parent-id": "parent_id", "selector": "selectors", "x509-ttl": "x509_ttl_seconds",
	"jwt-ttl": "jwt_ttl_seconds", "dns": "dns_names", "admin": "admin", "downstream": "downstream",
	"federates-with": "federates_with", "expires-at": "expires_at", "hint": "hint", "label": "labels",
}

func newEntryUpdateCmd(conn *adminConn) *cobra.Command {
	var (
		f   entryFlags
		out output
	)
	cmd := &cobra.Command{
		Use:   "update ENTRY_ID",
		Short: "Change the given fields of an entry; fields not given are kept",
		Example: `  signet entry update 6f1c… --x509-ttl 30m
  signet entry update 6f1c… --selector unix:uid:1000 --selector unix:gid:1000`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var mask []string
			for flag, field := range flagFields {
				if cmd.Flags().Changed(flag) {
					mask = append(mask, field)
				}
			}
			if len(mask) == 0 {
				return fmt.Errorf("nothing to update: give at least one field flag, e.g. --x509-ttl 30m")
			}
			j, err := f.toJSON()
			if err != nil {
				return err
			}
			e, err := partialEntry(j)
			if err != nil {
				return err
			}
			e.Id = args[0]
			var updated *commonv1.Entry
			err = conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				updated, err = c.UpdateEntry(ctx, &adminv1.UpdateEntryRequest{Entry: e, UpdateMask: mask})
				return err
			})
			if err != nil {
				return err
			}
			if out.json {
				return writeJSON(cmd.OutOrStdout(), entryToJSON(updated))
			}
			return printEntry(cmd.OutOrStdout(), updated)
		},
	}
	f.add(cmd)
	out.addFlags(cmd)
	return cmd
}

// partialEntry converts only the fields given, without requiring the ones
// an update leaves alone; the server validates the merged entry.
func partialEntry(j entryJSON) (*commonv1.Entry, error) {
	e := &commonv1.Entry{SpiffeId: j.SPIFFEID, ParentId: j.ParentID, DnsNames: j.DNSNames, Admin: j.Admin,
		Downstream: j.Downstream, FederatesWith: j.FederatesWith, Hint: j.Hint, Labels: j.Labels}
	for i, s := range j.Selectors {
		sel, err := model.ParseSelector(s)
		if err != nil {
			return nil, fmt.Errorf("--selector[%d]: %w", i, err)
		}
		e.Selectors = append(e.Selectors, &commonv1.Selector{Type: sel.Type, Value: sel.Value})
	}
	var err error
	if e.X509TtlSeconds, err = parseTTL("--x509-ttl", j.X509TTL); err != nil {
		return nil, err
	}
	if e.JwtTtlSeconds, err = parseTTL("--jwt-ttl", j.JWTTTL); err != nil {
		return nil, err
	}
	if j.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339, j.ExpiresAt)
		if err != nil {
			return nil, fmt.Errorf("--expires-at %q: want an RFC 3339 time such as 2027-01-02T15:04:05Z", j.ExpiresAt)
		}
		e.ExpiresAt = t.Unix()
	}
	return e, nil
}

func newEntryDeleteCmd(conn *adminConn) *cobra.Command {
	return &cobra.Command{
		Use:   "delete ENTRY_ID...",
		Short: "Delete entries",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp *adminv1.DeleteEntriesResponse
			err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.DeleteEntries(ctx, &adminv1.DeleteEntriesRequest{Ids: args})
				return err
			})
			if err != nil {
				return err
			}
			failed := 0
			for _, r := range resp.GetResults() {
				if codes.Code(r.GetStatus().GetCode()) != codes.OK {
					failed++
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", r.GetId(), r.GetStatus().GetMessage())
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", r.GetId())
			}
			if failed > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
}
