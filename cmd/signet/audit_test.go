package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/store"
)

// seedAudit makes the server write a few audit records: an attestation,
// three entries and a findings report.
func seedAudit(t *testing.T, c *cliEnv) {
	t.Helper()
	c.env.Attest(cliNode)
	c.createEntries(t, nil, "/a", "/b", "/c")
	if _, err := reportFindings(t.Context(), &adminConn{socket: c.socket}, "h", nil, nil,
		[]*inventoryv1.Finding{testFinding("abcdef0123456789", "/srv/.env")}); err != nil {
		t.Fatal(err)
	}
}

// TestAuditVerifyDetectsTampering alters, deletes and reorders stored
// records behind the server's back, on SQLite and PostgreSQL, and expects
// `signet audit verify` to fail naming the first bad record.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	tampers := []struct {
		name    string
		sql     []string
		problem string
	}{
		{"altered", []string{"UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"},
			"audit log broken at record 2: record 2 was altered (hash mismatch)"},
		{"altered detail", []string{`UPDATE audit_log SET detail = '{"spiffe_id":"spiffe://example.org/evil"}' WHERE seq = 3`},
			"audit log broken at record 3: record 3 was altered"},
		{"deleted", []string{"DELETE FROM audit_log WHERE seq = 2"},
			"audit log broken at record 2: record 2 is missing (sequence jumps 1→3)"},
		{"reordered", []string{
			"UPDATE audit_log SET seq = 1000 WHERE seq = 2",
			"UPDATE audit_log SET seq = 2 WHERE seq = 3",
			"UPDATE audit_log SET seq = 3 WHERE seq = 1000",
		}, "audit log broken at record 2"},
	}
	for _, driver := range []string{store.DriverSQLite, store.DriverPostgres} {
		t.Run(driver, func(t *testing.T) {
			for _, tc := range tampers {
				t.Run(tc.name, func(t *testing.T) {
					c := newCLIEnv(t, driver)
					seedAudit(t, c)
					out := c.mustRun(t, "audit", "verify")
					if !strings.HasPrefix(out, "audit log intact: ") || !strings.Contains(out, "head: ") {
						t.Fatalf("audit verify before tampering = %q", out)
					}
					for _, q := range tc.sql {
						c.exec(t, q)
					}
					_, _, err := c.run(t, "audit", "verify")
					var ee *exitError
					if !errors.As(err, &ee) || ee.code != exitAuditBroken || ee.err == nil || !strings.Contains(ee.err.Error(), tc.problem) {
						t.Fatalf("audit verify after tampering: error %v, want exit %d naming %q", err, exitAuditBroken, tc.problem)
					}
					out, _, err = c.run(t, "audit", "verify", "--json")
					var rep struct {
						OK       bool  `json:"ok"`
						FirstBad int64 `json:"first_bad"`
					}
					if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil || rep.OK || rep.FirstBad == 0 || !errors.As(err, &ee) {
						t.Errorf("audit verify --json = %q, %v; want not ok with first_bad set and a failing exit", out, err)
					}
				})
			}
		})
	}
}

func TestAuditVerifyExpectHead(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	seedAudit(t, c)
	out := c.mustRun(t, "audit", "verify")
	_, head, ok := strings.Cut(strings.TrimSpace(out), "head: ")
	if !ok {
		t.Fatalf("audit verify printed no head: %q", out)
	}
	c.mustRun(t, "audit", "verify", "--expect-head", head)
	seq, _, _ := strings.Cut(head, ":")
	c.exec(t, "DELETE FROM audit_log WHERE seq = "+seq)
	c.mustRun(t, "audit", "verify") // the rest of the chain is intact
	_, _, err := c.run(t, "audit", "verify", "--expect-head", head)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitAuditBroken || !strings.Contains(err.Error(), "record "+seq+", an earlier head, is missing") {
		t.Errorf("audit verify --expect-head after truncation: error %v", err)
	}
}

func TestAuditList(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	seedAudit(t, c)
	out := c.mustRun(t, "audit", "list", "--json")
	var recs []auditJSON
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r auditJSON
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit list --json line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	if strings.Contains(out, "abcdef0123456789") {
		t.Errorf("the audit export carries a whole fingerprint:\n%s", out)
	}
	if len(recs) < 6 {
		t.Fatalf("audit list --json = %d records, want at least 6", len(recs))
	}
	for i, r := range recs {
		if r.Seq != int64(i+1) || len(r.Hash) != 64 || len(r.PrevHash) != 64 || (i > 0 && r.PrevHash != recs[i-1].Hash) {
			t.Errorf("record %d = %+v, want seq %d chained to the one before", i, r, i+1)
		}
		if _, err := time.Parse(time.RFC3339Nano, r.Time); err != nil {
			t.Errorf("record %d time %q: %v", r.Seq, r.Time, err)
		}
	}
	out = c.mustRun(t, "audit", "list", "--action", "finding.report")
	if !strings.Contains(out, "finding:abcdef01") || !strings.Contains(out, "change=new fingerprint=abcdef01 host=h kind=cloud-credential path=/srv/.env") {
		t.Errorf("audit list --action finding.report =\n%s", out)
	}
	if out := c.mustRun(t, "audit", "list", "--action", "entry.create", "--json"); strings.Count(out, "\n") != 3 {
		t.Errorf("audit list --action entry.create = %d lines, want 3:\n%s", strings.Count(out, "\n"), out)
	}
	if out := c.mustRun(t, "audit", "list", "--since", "1h", "--limit", "2", "--json"); strings.Count(out, "\n") != 2 {
		t.Errorf("audit list --limit 2 = %d lines, want 2", strings.Count(out, "\n"))
	}
	if out := c.mustRun(t, "audit", "list", "--since", "2200-01-01", "--json"); out != "" {
		t.Errorf("audit list --since 2200-01-01 = %q, want nothing", out)
	}
	out = c.mustRun(t, "audit", "list", "--actor", "nobody")
	if strings.TrimSpace(out) != "SEQ  TIME  ACTOR  ACTION  OBJECT  DETAIL" {
		t.Errorf("audit list --actor nobody = %q, want the header alone", out)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                  now.Add(-24 * time.Hour),
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"2026-11-01T09:00:00Z": time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC),
		"2026-11-01":           time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		"":                     {},
		"1900-01-01":           {},
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"yesterday", "-1h", "2026-13-01", "2999-01-01"} {
		if _, err := parseSince(in, now); err == nil {
			t.Errorf("parseSince(%q) error = nil", in)
		}
	}
}
