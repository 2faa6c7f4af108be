package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/config"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
)

// Exit codes of `audit verify`.
const (
	exitAuditBroken = 1 // the chain is broken
	exitAuditError  = 2 // the chain could not be checked
)

func newAuditCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read and verify the server's hash-chained audit log",
		Long: `Every state change and issuance decision (entries, nodes, authorities, SVIDs
signed or denied, findings reported) is appended to the audit log; each record
carries the hash of the one before, so altering, deleting or reordering stored
records breaks the chain where it happened.`,
	}
	conn.addFlags(cmd)
	cmd.AddCommand(newAuditListCmd(&conn), newAuditVerifyCmd(&conn))
	return cmd
}

// parseSince parses --since: an age ("24h", "7d") counted back from now, an
// RFC 3339 time or a date (UTC midnight).
// Times before 1970 select every record; times past 2261 do not fit the
// wire's unix nanoseconds.
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		t, err = time.Parse(time.DateOnly, v)
	}
	if err != nil {
		d, aerr := config.ParseDuration(v)
		if aerr != nil || d <= 0 {
			return time.Time{}, fmt.Errorf("--since %q: want an age such as 24h or 7d, an RFC 3339 time such as 2026-11-01T09:00:00Z, or a date such as 2026-11-01", v)
		}
		t = now.Add(-d)
	}
	switch {
	case t.Year() > 2261:
		return time.Time{}, fmt.Errorf("--since %q: use a time before the year 2262", v)
	case t.Before(time.Unix(0, 1)):
		return time.Time{}, nil
	}
	return t, nil
}

// auditJSON is one record of `audit list --json`, one per line: the export
// format. Hashes are lower-case hex.
type auditJSON struct {
	Seq      int64             `json:"seq"`
	Time     string            `json:"time"`
	Actor    string            `json:"actor"`
	Action   string            `json:"action"`
	Object   string            `json:"object"`
	Detail   map[string]string `json:"detail,omitempty"`
	PrevHash string            `json:"prev_hash"`
	Hash     string            `json:"hash"`
}

func auditToJSON(r *inventoryv1.AuditRecord) auditJSON {
	return auditJSON{Seq: r.GetSeq(), Time: time.Unix(0, r.GetTimeUnixNano()).UTC().Format(time.RFC3339Nano),
		Actor: r.GetActor(), Action: r.GetAction(), Object: r.GetObject(), Detail: r.GetDetail(),
		PrevHash: hex.EncodeToString(r.GetPrevHash()), Hash: hex.EncodeToString(r.GetHash())}
}

func newAuditListCmd(conn *adminConn) *cobra.Command {
	var (
		since, actor, action string
		page                 pageFlags
		out                  output
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List audit records, oldest first; --json prints JSON lines (the export format)",
		Example: `  signet audit list --since 24h
  signet audit list --action finding.report --actor admin:uid:0
  signet audit list --json --limit 0 > audit.jsonl   # the whole log, streamed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			// --limit 0 exports every record as JSON lines, streamed a page
			// at a time; otherwise one page.
			limit := page.limit
			if limit != 0 || !out.json {
				if _, err := page.size(); err != nil {
					return fmt.Errorf("%w; or --limit 0 with --json for every record", err)
				}
			}
			req := &inventoryv1.ListAuditRequest{Actor: actor, Action: action, PageSize: 1000}
			if page.token != "" { // page tokens are the last record's sequence number
				if req.AfterSeq, err = strconv.ParseInt(page.token, 10, 64); err != nil || req.AfterSeq < 0 {
					return fmt.Errorf("--page-token %q: want the token the previous page printed", page.token)
				}
			}
			if !from.IsZero() {
				req.SinceUnixNano = from.UnixNano()
			}
			w := cmd.OutOrStdout()
			enc := json.NewEncoder(w)
			rows := [][]string{{"SEQ", "TIME", "ACTOR", "ACTION", "OBJECT", "DETAIL"}}
			n := 0
			next := ""
			// Records are written page by page: an export of a long log
			// never sits in memory whole.
			err = conn.callInventory(cmd.Context(), func(ctx context.Context, _ inventoryv1.InventoryClient, audit inventoryv1.AuditClient) error {
				for {
					if limit > 0 {
						req.PageSize = int32(min(1000, limit-n))
					}
					resp, err := audit.ListAudit(ctx, req)
					if err != nil {
						return err
					}
					for _, r := range resp.GetRecords() {
						n++
						if out.json {
							if err := enc.Encode(auditToJSON(r)); err != nil {
								return err
							}
							continue
						}
						rows = append(rows, []string{strconv.FormatInt(r.GetSeq(), 10),
							time.Unix(0, r.GetTimeUnixNano()).UTC().Format(time.RFC3339), r.GetActor(), r.GetAction(),
							orDash(r.GetObject()), orDash(detailText(r.GetDetail()))})
					}
					if resp.GetNextAfterSeq() == 0 {
						return nil
					}
					if limit > 0 && n >= limit {
						next = strconv.FormatInt(resp.GetNextAfterSeq(), 10)
						return nil
					}
					req.AfterSeq = resp.GetNextAfterSeq()
				}
			})
			if err != nil {
				return err
			}
			if !out.json {
				if err := table(w, rows); err != nil {
					return err
				}
			}
			// JSON lines have no room for a field: the token goes to
			// stderr in both forms.
			return nextPage(cmd, next)
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "only records from then on: an age (24h, 7d), an RFC 3339 time or a date")
	cmd.Flags().StringVar(&actor, "actor", "", "only records of this actor, e.g. admin:uid:0 or agent:spiffe://example.org/node/a")
	cmd.Flags().StringVar(&action, "action", "", "only records of this action, e.g. entry.create or finding.report")
	page.addFlags(cmd, "records (0 with --json: all, streamed)")
	out.addFlagsFor(cmd, "JSON lines, one record per line")
	return cmd
}

// detailText renders a detail map as sorted key=value pairs.
func detailText(d map[string]string) string {
	parts := make([]string, 0, len(d))
	for _, k := range slices.Sorted(maps.Keys(d)) {
		parts = append(parts, k+"="+d[k])
	}
	return strings.Join(parts, " ")
}

// parseHead parses --expect-head SEQ:HEX.
func parseHead(v string) (int64, []byte, error) {
	if v == "" {
		return 0, nil, nil
	}
	seqText, hashText, ok := strings.Cut(v, ":")
	seq, err := strconv.ParseInt(seqText, 10, 64)
	hash, herr := hex.DecodeString(hashText)
	if !ok || err != nil || seq <= 0 || herr != nil || len(hash) != 32 {
		return 0, nil, fmt.Errorf("--expect-head %q: want SEQ:HASH as an earlier `signet audit verify` printed, e.g. 42:9f86d081…", v)
	}
	return seq, hash, nil
}

func newAuditVerifyCmd(conn *adminConn) *cobra.Command {
	var (
		head string
		out  output
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit chain; exit 0 when intact, 1 naming the first altered, deleted or reordered record, 2 on errors",
		Long: `Walks the whole audit chain and checks every record's hash and link. It
prints the head (SEQ:HASH of the last record): keep it somewhere else and pass
it back with --expect-head to also detect records cut off the end of the log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			seq, hash, err := parseHead(head)
			if err != nil {
				return &exitError{code: exitAuditError, err: err}
			}
			var resp *inventoryv1.VerifyAuditResponse
			err = conn.callInventory(cmd.Context(), func(ctx context.Context, _ inventoryv1.InventoryClient, audit inventoryv1.AuditClient) (err error) {
				resp, err = audit.VerifyAudit(ctx, &inventoryv1.VerifyAuditRequest{ExpectSeq: seq, ExpectHash: hash})
				return err
			})
			if err != nil {
				return &exitError{code: exitAuditError, err: err}
			}
			headText := ""
			if resp.GetHeadSeq() > 0 {
				headText = fmt.Sprintf("%d:%x", resp.GetHeadSeq(), resp.GetHeadHash())
			}
			w := cmd.OutOrStdout()
			if out.json {
				err = writeJSON(w, map[string]any{"ok": resp.GetOk(), "records": resp.GetRecords(), "first_bad": resp.GetFirstBad(),
					"problem": resp.GetProblem(), "head": headText})
			} else if resp.GetOk() {
				_, err = fmt.Fprintf(w, "audit log intact: %d records\nhead: %s\n", resp.GetRecords(), orDash(headText))
			}
			if err != nil {
				return &exitError{code: exitAuditError, err: err}
			}
			if !resp.GetOk() {
				return &exitError{code: exitAuditBroken, err: fmt.Errorf("audit log broken at record %d: %s", resp.GetFirstBad(), resp.GetProblem())}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&head, "expect-head", "", "SEQ:HASH printed by an earlier verify; that record must still be there unchanged")
	out.addFlags(cmd)
	return cmd
}
