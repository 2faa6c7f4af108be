package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/inventory/risk"
)

// scoreFindings recomputes the risk score, factors, environment and owner
// of the reported findings fps from their open locations, as of the
// transaction's time. existing holds the findings known before the report;
// labels are the report's labels, merged over theirs.
func (t *wtx) scoreFindings(ctx context.Context, fps []string, byFP map[string]*Finding, existing map[string]findingState, labels map[string]string) error {
	type agg struct {
		hosts, places int
		history       bool
		oldestCommit  int64
	}
	aggs := make(map[string]agg, len(fps))
	err := chunks(fps, inListSize, func(part []string) error {
		rows, err := t.query(ctx, `SELECT fingerprint, COUNT(DISTINCT host), COUNT(DISTINCT host || '|' || path),
			MAX(CASE WHEN commit_sha <> '' THEN 1 ELSE 0 END), MIN(CASE WHEN committed_at > 0 THEN committed_at ELSE NULL END)
			FROM finding_locations WHERE gone_at = 0 AND fingerprint IN (`+placeholders(len(part))+`) GROUP BY fingerprint`, anys(part)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var fp string
			var a agg
			var hist int
			var oldest sql.NullInt64
			if err := rows.Scan(&fp, &a.hosts, &a.places, &hist, &oldest); err != nil {
				return err
			}
			a.history, a.oldestCommit = hist == 1, oldest.Int64
			aggs[fp] = a
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("read finding locations: %w", err)
	}
	now := timeToDB(t.now)
	for _, fp := range fps {
		f := byFP[fp]
		merged := labels
		first := now
		if cur, ok := existing[fp]; ok {
			merged = mergeLabels(cur.labels, labels)
			first = cur.firstSeen
		}
		a := aggs[fp]
		since := first
		if a.oldestCommit > 0 && a.oldestCommit < since {
			since = a.oldestCommit
		}
		env := risk.NormalizeEnvironment(merged["environment"])
		owner := strings.TrimSpace(merged["owner"])
		if owner == "" {
			owner = "unknown"
		}
		score, factors := risk.Score(risk.Input{
			Kind: f.Kind, Severity: f.Severity, Environment: env, Since: timeFromDB(since), Hosts: a.hosts, Places: a.places,
			History: a.history, HistorySince: timeFromDB(a.oldestCommit), Now: t.now,
		})
		fj, err := json.Marshal(factors)
		if err != nil {
			return fmt.Errorf("encode risk factors: %w", err)
		}
		if factors == nil {
			fj = []byte("[]")
		}
		if _, err := t.exec(ctx, "UPDATE findings SET risk = ?, risk_factors = ?, environment = ?, owner = ? WHERE fingerprint = ?",
			score, string(fj), env, owner, fp); err != nil {
			return fmt.Errorf("score finding: %w", err)
		}
	}
	return nil
}

// Bounds of finding pages and replacement notes.
const (
	DefaultFindingPage = 100
	MaxFindingPage     = 1000
	maxReplacementNote = 256
)

// FindingPage selects one page of findings in ListFindingsPage.
type FindingPage struct {
	Status []FindingStatus // any of these; empty: all
	// ByRisk orders by risk score, highest first (then fingerprint);
	// otherwise by fingerprint.
	ByRisk bool
	// Limit is the page size: 0 means DefaultFindingPage; at most
	// MaxFindingPage.
	Limit int
	// Token continues after the page that returned it; empty: the first
	// page. A token is valid only for the same order.
	Token string
	// After continues after this fingerprint, in fingerprint order (not
	// with ByRisk or Token): for callers that page by fingerprint.
	After string
}

func encodeFindingToken(byRisk bool, f *Finding) string {
	k := "f:" + f.Fingerprint
	if byRisk {
		k = "r:" + strconv.Itoa(f.Risk) + ":" + f.Fingerprint
	}
	return base64.RawURLEncoding.EncodeToString([]byte(k))
}

// decodeFindingToken returns the risk and fingerprint a token continues
// after.
func decodeFindingToken(byRisk bool, tok string) (int, string, error) {
	bad := errkind.New(errkind.InvalidArgument, "page_token %q: not a token of this listing (use the next_page_token a listing with the same sort returned)", tok)
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) > 200 {
		return 0, "", bad
	}
	parts := strings.Split(string(raw), ":")
	switch {
	case byRisk && len(parts) == 3 && parts[0] == "r":
		r, err := strconv.Atoi(parts[1])
		fp, ferr := NormalizeFingerprint("page_token", parts[2])
		if err != nil || ferr != nil || r < 0 || r > risk.Max {
			return 0, "", bad
		}
		return r, fp, nil
	case !byRisk && len(parts) == 2 && parts[0] == "f":
		fp, err := NormalizeFingerprint("page_token", parts[1])
		if err != nil {
			return 0, "", bad
		}
		return 0, fp, nil
	}
	return 0, "", bad
}

// ListFindingsPage returns one page of the findings p selects, with their
// locations and replacement links, and the token of the next page (empty
// after the last). Paging is by key (no offsets): a page costs the same
// wherever it is. Errors are kinded InvalidArgument for a bad limit or
// token.
func (s *Store) ListFindingsPage(ctx context.Context, p FindingPage) ([]Finding, string, error) {
	switch {
	case p.Limit < 0 || p.Limit > MaxFindingPage:
		return nil, "", errkind.New(errkind.InvalidArgument, "limit %d: use 1 to %d (0: %d)", p.Limit, MaxFindingPage, DefaultFindingPage)
	case p.Limit == 0:
		p.Limit = DefaultFindingPage
	}
	var where []string
	var args []any
	if len(p.Status) > 0 {
		where = append(where, "f.status IN ("+placeholders(len(p.Status))+")")
		for _, st := range p.Status {
			args = append(args, string(st))
		}
	}
	if p.After != "" {
		fp, err := NormalizeFingerprint("after", p.After)
		if err != nil {
			return nil, "", err
		}
		if p.ByRisk || p.Token != "" {
			return nil, "", errkind.New(errkind.InvalidArgument, "after: pages by fingerprint only, without a risk order or a page token")
		}
		where = append(where, "f.fingerprint > ?")
		args = append(args, fp)
	}
	if p.Token != "" {
		r, fp, err := decodeFindingToken(p.ByRisk, p.Token)
		if err != nil {
			return nil, "", err
		}
		if p.ByRisk {
			// risk <= r bounds the index range; the rest only skips the
			// page's own risk level up to its last fingerprint.
			where = append(where, "f.risk <= ? AND (f.risk < ? OR f.fingerprint > ?)")
			args = append(args, r, r, fp)
		} else {
			where = append(where, "f.fingerprint > ?")
			args = append(args, fp)
		}
	}
	order := " ORDER BY f.fingerprint"
	if p.ByRisk {
		order = " ORDER BY f.risk DESC, f.fingerprint"
	}
	cond := "1 = 1"
	if len(where) > 0 {
		cond = strings.Join(where, " AND ")
	}
	// The page's keys first, then its rows and locations by key.
	keyQ := "SELECT f.fingerprint FROM findings f WHERE " + cond + order + " LIMIT " + strconv.Itoa(p.Limit+1)
	var out []Finding
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.d.rebind(keyQ), args...)
		if err != nil {
			return err
		}
		var keys []string
		for rows.Next() {
			var fp string
			if err := rows.Scan(&fp); err != nil {
				rows.Close()
				return err
			}
			keys = append(keys, fp)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		in := "f.fingerprint IN (" + placeholders(len(keys)) + ")"
		out, err = s.findingsWithLocations(ctx, tx, findingSelect+" WHERE "+in+order, anys(keys), in, anys(keys))
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list findings: %w", err)
	}
	next := ""
	if len(out) > p.Limit {
		out = out[:p.Limit]
		next = encodeFindingToken(p.ByRisk, &out[len(out)-1])
	}
	return out, next, nil
}

// FindingCount is how many findings of one group have one status.
type FindingCount struct {
	Key    string // the environment or owner; "unknown" when unlabelled
	Status FindingStatus
	Count  int64
}

// CountFindings counts findings by status and by environment (by
// "environment") or owner (by "owner"), in SQL, ordered by key and status.
func (s *Store) CountFindings(ctx context.Context, by string) ([]FindingCount, error) {
	if by != "environment" && by != "owner" {
		return nil, errkind.New(errkind.InvalidArgument, "count findings by %q: use environment or owner", by)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+by+", status, COUNT(*) FROM findings GROUP BY "+by+", status ORDER BY "+by+", status")
	if err != nil {
		return nil, fmt.Errorf("count findings: %w", err)
	}
	defer rows.Close()
	var out []FindingCount
	for rows.Next() {
		var c FindingCount
		var st string
		if err := rows.Scan(&c.Key, &st, &c.Count); err != nil {
			return nil, fmt.Errorf("count findings: %w", err)
		}
		c.Status = FindingStatus(st)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count findings: %w", err)
	}
	return out, nil
}

// LinkReplacement links the finding fingerprint to the brokered credential
// that replaces it, with an optional note (a change ticket), and audits it
// as "finding.link". Linking again replaces the link and starts its proof
// anew; a replaced finding goes back to gone until the new credential is
// used. The finding itself changes status only through ReportFindings and
// MarkReplaced. Errors are kinded NotFound for an unknown finding,
// FailedPrecondition for a resolved one, InvalidArgument for a malformed
// fingerprint, credential name or note.
func (s *Store) LinkReplacement(ctx context.Context, fingerprint, credential, note string) (Finding, error) {
	fp, err := NormalizeFingerprint("fingerprint", fingerprint)
	if err != nil {
		return Finding{}, err
	}
	if err := CheckBrokerName(credential); err != nil {
		return Finding{}, errkind.New(errkind.InvalidArgument, "credential: %v", err)
	}
	if err := checkText("note", note, maxReplacementNote, false); err != nil {
		return Finding{}, err
	}
	err = s.update(ctx, "link finding "+fp, false, func(t *wtx) error {
		var kind, status string
		err := t.queryRow(ctx, "SELECT kind, status FROM findings WHERE fingerprint = ?", fp).Scan(&kind, &status)
		if errors.Is(err, sql.ErrNoRows) {
			return errkind.New(errkind.NotFound, "finding %s not found", fp)
		}
		if err != nil {
			return err
		}
		if FindingStatus(status) == FindingResolved {
			return errkind.New(errkind.FailedPrecondition, "finding %s is resolved: a resolved finding needs no replacement", fp)
		}
		now := timeToDB(t.now)
		if _, err := t.exec(ctx, "DELETE FROM finding_replacements WHERE fingerprint = ?", fp); err != nil {
			return err
		}
		if _, err := t.exec(ctx, `INSERT INTO finding_replacements (fingerprint, credential, note, linked_by, linked_at, replaced_at)
			VALUES (?, ?, ?, ?, ?, 0)`, fp, credential, note, t.actor, now); err != nil {
			return err
		}
		if FindingStatus(status) == FindingReplaced {
			if _, err := t.exec(ctx, "UPDATE findings SET status = ? WHERE fingerprint = ?", string(FindingGone), fp); err != nil {
				return err
			}
		}
		d := findingDetail(fp, kind, "", "", "")
		delete(d, "path")
		d["credential"] = credential
		if note != "" {
			d["note"] = note
		}
		t.record("finding.link", findingObject(fp), d)
		return nil
	})
	if err != nil {
		return Finding{}, err
	}
	return s.GetFinding(ctx, fp)
}

// PendingReplacement is a linked finding not yet proven replaced.
type PendingReplacement struct {
	Fingerprint string
	Credential  string
	LinkedAt    time.Time
	Environment string
	Status      FindingStatus
}

// PendingReplacements returns the links not yet proven, in fingerprint
// order: the only findings whose state settling can change.
func (s *Store) PendingReplacements(ctx context.Context) ([]PendingReplacement, error) {
	rows, err := s.db.QueryContext(ctx, s.d.rebind(`SELECT r.fingerprint, r.credential, r.linked_at, f.environment, f.status
		FROM finding_replacements r JOIN findings f ON f.fingerprint = r.fingerprint
		WHERE r.replaced_at = 0 AND f.status <> ? ORDER BY r.fingerprint`), string(FindingResolved))
	if err != nil {
		return nil, fmt.Errorf("list pending replacements: %w", err)
	}
	defer rows.Close()
	var out []PendingReplacement
	for rows.Next() {
		var p PendingReplacement
		var linked int64
		var st string
		if err := rows.Scan(&p.Fingerprint, &p.Credential, &linked, &p.Environment, &st); err != nil {
			return nil, fmt.Errorf("list pending replacements: %w", err)
		}
		p.LinkedAt, p.Status = timeFromDB(linked), FindingStatus(st)
		out = append(out, p)
	}
	return out, rows.Err()
}

// MarkReplaced records that the link of fingerprint made at linkedAt is
// proven: the finding, gone, becomes replaced, audited as
// "finding.replaced" with the credential and proof. It does nothing (and
// returns false) when the finding is no longer gone or was linked anew
// meanwhile: the caller's proof is stale.
func (s *Store) MarkReplaced(ctx context.Context, fingerprint string, linkedAt time.Time, proof map[string]string) (bool, error) {
	fp, err := NormalizeFingerprint("fingerprint", fingerprint)
	if err != nil {
		return false, err
	}
	done := false
	err = s.update(ctx, "mark finding replaced "+fp, false, func(t *wtx) error {
		now := timeToDB(t.now)
		var credential string
		err := t.queryRow(ctx, "UPDATE finding_replacements SET replaced_at = ? WHERE fingerprint = ? AND linked_at = ? AND replaced_at = 0 RETURNING credential",
			now, fp, timeToDB(normTime(linkedAt))).Scan(&credential)
		if errors.Is(err, sql.ErrNoRows) {
			return errRollback
		}
		if err != nil {
			return err
		}
		var kind string
		err = t.queryRow(ctx, "UPDATE findings SET status = ?, closed_at = ? WHERE fingerprint = ? AND status = ? RETURNING kind",
			string(FindingReplaced), now, fp, string(FindingGone)).Scan(&kind)
		if errors.Is(err, sql.ErrNoRows) {
			return errRollback
		}
		if err != nil {
			return err
		}
		d := findingDetail(fp, kind, "", "", "")
		delete(d, "path")
		d["credential"] = credential
		for k, v := range proof {
			d[k] = v
		}
		t.record("finding.replaced", findingObject(fp), d)
		done = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return done, nil
}

// LeaseUse is a holder of a credential's leases: a subject on a node.
type LeaseUse struct {
	Subject, Node string
	FirstIssued   time.Time
}

// CredentialUses returns the distinct (subject, node) holders of leases of
// credential issued at or after since that were handed out — active, or
// expired, or revoked after activation (a lease revoked from pending was a
// failed issue and never reached its workload) — oldest first, at most
// limit.
func (s *Store) CredentialUses(ctx context.Context, credential string, since time.Time, limit int) ([]LeaseUse, error) {
	from := timeToDB(normTime(since))
	rows, err := s.db.QueryContext(ctx, s.d.rebind(`SELECT l.subject, l.node, MIN(l.issued_at) FROM broker_leases l
		WHERE l.credential = ? AND l.issued_at >= ? AND (l.state IN (?, ?) OR (l.state = ? AND EXISTS (
			SELECT 1 FROM audit_log a WHERE a.time >= ? AND a.action = 'lease.activate' AND a.object = l.id)))
		GROUP BY l.subject, l.node ORDER BY MIN(l.issued_at), l.subject, l.node LIMIT ?`),
		credential, from, string(LeaseActive), string(LeaseExpired), string(LeaseRevoked), from, limit)
	if err != nil {
		return nil, fmt.Errorf("list credential uses: %w", err)
	}
	defer rows.Close()
	var out []LeaseUse
	for rows.Next() {
		var u LeaseUse
		var first int64
		if err := rows.Scan(&u.Subject, &u.Node, &first); err != nil {
			return nil, fmt.Errorf("list credential uses: %w", err)
		}
		u.FirstIssued = timeFromDB(first)
		out = append(out, u)
	}
	return out, rows.Err()
}
