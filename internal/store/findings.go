package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// Limits on reported findings, so that a report cannot smuggle in a secret
// or bloat the store.
const (
	maxFindingField   = 1024 // descriptions, paths, detail values
	maxFindingShort   = 128  // rule ids, kinds, hosts, commit ids, authors
	maxFindingPreview = 64
	maxFindingDetails = 32
	maxLabels         = model.MaxLabels
	// AuditFingerprintLen is how many hex digits of a fingerprint audit
	// records carry: enough to tell findings apart, never the whole key.
	AuditFingerprintLen = 8
)

var findingCols = []string{
	"fingerprint", "rule_id", "detector", "kind", "severity", "description", "preview", "details", "labels",
	"status", "resolution", "first_seen_at", "last_seen_at", "closed_at",
}

var locationCols = []string{
	"fingerprint", "host", "path", "line", "commit_sha", "column_no", "end_line", "author", "email",
	"committed_at", "first_seen_at", "last_seen_at", "gone_at",
}

// ValidateLabels checks labels; see model.ValidateLabels, which holds the
// one definition for entries, nodes and findings.
func ValidateLabels(field string, labels map[string]string) error {
	return model.ValidateLabels(field, labels)
}

// ValidateLabelKey checks one label key; see model.ValidateLabelKey.
func ValidateLabelKey(field, k string) error { return model.ValidateLabelKey(field, k) }

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// checkText validates a free-text field of a reported finding.
func checkText(field, v string, max int, required bool) error {
	switch {
	case required && v == "":
		return errkind.New(errkind.InvalidArgument, "%s is required", field)
	case len(v) > max:
		return errkind.New(errkind.InvalidArgument, "%s is longer than %d bytes", field, max)
	case !printable(v):
		return errkind.New(errkind.InvalidArgument, "%s must be printable text", field)
	}
	return nil
}

// NormalizeFingerprint returns fp in lower case, or an error kinded
// InvalidArgument naming field when fp is not 8 to 128 hex digits.
func NormalizeFingerprint(field, fp string) (string, error) {
	fp = strings.ToLower(fp)
	ok := len(fp) >= 8 && len(fp) <= 128
	for _, r := range fp {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			ok = false
		}
	}
	if !ok {
		return "", errkind.New(errkind.InvalidArgument, "%s %q: want 8 to 128 hex digits, as `signet scan` prints", field, fp)
	}
	return fp, nil
}

// prepareFinding validates a reported finding and returns a normalized copy
// sharing no memory with it; i is its index, for error messages.
func prepareFinding(i int, f Finding) (Finding, error) {
	p := fmt.Sprintf("findings[%d]", i)
	var err error
	if f.Fingerprint, err = NormalizeFingerprint(p+".fingerprint", f.Fingerprint); err != nil {
		return Finding{}, err
	}
	switch f.Severity {
	case "", "low", "medium", "high", "critical":
	default:
		return Finding{}, errkind.New(errkind.InvalidArgument, "%s.severity %q: use low, medium, high or critical", p, f.Severity)
	}
	errs := []error{
		checkText(p+".rule_id", f.RuleID, maxFindingShort, true),
		checkText(p+".detector", f.Detector, maxFindingShort, false),
		checkText(p+".kind", f.Kind, maxFindingShort, true),
		checkText(p+".description", f.Description, maxFindingField, false),
		checkText(p+".preview", f.Preview, maxFindingPreview, false),
	}
	if len(f.Details) > maxFindingDetails {
		errs = append(errs, errkind.New(errkind.InvalidArgument, "%s.details: at most %d entries", p, maxFindingDetails))
	}
	for _, k := range slices.Sorted(maps.Keys(f.Details)) {
		errs = append(errs, checkText(p+".details key", k, maxFindingShort, true),
			checkText(fmt.Sprintf("%s.details[%q]", p, k), f.Details[k], maxFindingField, false))
	}
	if len(f.Locations) == 0 {
		errs = append(errs, errkind.New(errkind.InvalidArgument, "%s.locations: at least one location is required", p))
	}
	if err := firstErr(errs); err != nil {
		return Finding{}, err
	}
	out := f
	out.Details = maps.Clone(f.Details)
	if len(out.Details) == 0 {
		out.Details = nil
	}
	out.Labels = nil
	out.Locations = make([]FindingLocation, len(f.Locations))
	for j, l := range f.Locations {
		lp := fmt.Sprintf("%s.locations[%d]", p, j)
		errs := []error{
			checkText(lp+".path", l.Path, maxFindingField, true),
			checkText(lp+".commit", l.Commit, maxFindingShort, false),
			checkText(lp+".author", l.Author, maxFindingShort, false),
			checkText(lp+".email", l.Email, maxFindingShort, false),
		}
		if l.Line < 0 || l.Column < 0 || l.EndLine < 0 {
			errs = append(errs, errkind.New(errkind.InvalidArgument, "%s: line, column and end_line must not be negative", lp))
		}
		if e := firstErr(errs); e != nil {
			return Finding{}, e
		}
		out.Locations[j] = FindingLocation{Path: l.Path, Line: l.Line, Column: l.Column, EndLine: l.EndLine,
			Commit: l.Commit, Author: l.Author, Email: l.Email, CommittedAt: normTime(l.CommittedAt)}
	}
	return out, nil
}

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// locKey identifies a location of a finding on a host.
type locKey struct {
	fp, host, path, commit string
	line                   int
}

func locKeyOf(l *FindingLocation, fp string) locKey {
	return locKey{fp: fp, host: l.Host, path: l.Path, commit: l.Commit, line: l.Line}
}

// InScope reports whether path lies under one of the scope paths: equal to
// it, or below it as a directory ("/srv" covers "/srv/app/x" but not
// "/srv2"). A scope ending in '/' or ':' ("env:") covers everything it
// prefixes.
func InScope(path string, scope []string) bool {
	for _, s := range scope {
		switch {
		case s == "":
		case path == s:
			return true
		case strings.HasSuffix(s, "/") || strings.HasSuffix(s, ":"):
			if strings.HasPrefix(path, s) {
				return true
			}
		case strings.HasPrefix(path, s+"/"):
			return true
		}
	}
	return false
}

// ReportFindings records the findings of one scan in one transaction:
// unknown fingerprints become open findings; known ones get their metadata
// refreshed, their labels merged, their locations added or re-seen and
// LastSeenAt advanced (a gone finding reopens; a resolved one stays
// resolved). Locations of r.Host under r.Scope that the report no longer
// contains are marked gone, and so are findings left with no open location.
// Every change is audited ("finding.report", "finding.gone") with a
// fingerprint prefix, the kind and a path, plus one "finding.scan" record
// for the report itself. Errors are kinded InvalidArgument, naming the
// field, when the report is malformed.
func (s *Store) ReportFindings(ctx context.Context, r FindingReport) (ReportResult, error) {
	if err := checkText("host", r.Host, maxFindingShort, true); err != nil {
		return ReportResult{}, err
	}
	if err := ValidateLabels("labels", r.Labels); err != nil {
		return ReportResult{}, err
	}
	for i, sc := range r.Scope {
		if err := checkText(fmt.Sprintf("scope[%d]", i), sc, maxFindingField, true); err != nil {
			return ReportResult{}, err
		}
	}
	// Merge findings by fingerprint; the last report of a fingerprint wins
	// for metadata, locations accumulate.
	byFP := make(map[string]*Finding, len(r.Findings))
	var order []string
	for i := range r.Findings {
		f, err := prepareFinding(i, r.Findings[i])
		if err != nil {
			return ReportResult{}, err
		}
		for j := range f.Locations {
			f.Locations[j].Host = r.Host
		}
		if cur, ok := byFP[f.Fingerprint]; ok {
			f.Locations = append(cur.Locations, f.Locations...)
		} else {
			order = append(order, f.Fingerprint)
		}
		byFP[f.Fingerprint] = &f
	}
	slices.Sort(order)
	var res ReportResult
	err := s.update(ctx, "report findings", false, func(t *wtx) error {
		res = ReportResult{}
		now := timeToDB(t.now)
		existing, err := t.findingStates(ctx, order)
		if err != nil {
			return err
		}
		locs, err := t.locationStates(ctx, order, r.Host)
		if err != nil {
			return err
		}
		reported := make(map[locKey]bool)
		for _, fp := range order {
			f := byFP[fp]
			cur, known := existing[fp]
			change := ""
			for j := range f.Locations {
				l := &f.Locations[j]
				k := locKeyOf(l, fp)
				if reported[k] {
					continue
				}
				reported[k] = true
				args := []any{fp, l.Host, l.Path, l.Line, l.Commit, l.Column, l.EndLine, l.Author, l.Email,
					timeToDB(l.CommittedAt), now, now, 0}
				if _, ok := locs[k]; ok {
					// Author, email and date belong to the commit, part of
					// the key: they do not change.
					_, err = t.exec(ctx, `UPDATE finding_locations SET column_no = ?, end_line = ?, last_seen_at = ?, gone_at = 0
						WHERE fingerprint = ? AND host = ? AND path = ? AND line = ? AND commit_sha = ?`,
						l.Column, l.EndLine, now, fp, l.Host, l.Path, l.Line, l.Commit)
				} else {
					_, err = t.exec(ctx, "INSERT INTO finding_locations ("+strings.Join(locationCols, ", ")+") VALUES ("+
						placeholders(len(locationCols))+")", args...)
					if known {
						change = "relocated"
					}
				}
				if err != nil {
					return fmt.Errorf("write finding location: %w", err)
				}
			}
			if !known {
				labels := labelsToDB(mergeLabels(nil, r.Labels))
				_, err = t.exec(ctx, "INSERT INTO findings ("+strings.Join(findingCols, ", ")+") VALUES ("+
					placeholders(len(findingCols))+")",
					fp, f.RuleID, f.Detector, f.Kind, f.Severity, f.Description, f.Preview, labelsToDB(f.Details), labels,
					string(FindingOpen), "", now, now, 0)
				if err != nil {
					return fmt.Errorf("insert finding: %w", err)
				}
				res.New++
				change = "new"
			} else {
				res.Seen++
				status, closed := cur.status, cur.closedAt
				if status == FindingGone || status == FindingReplaced {
					if status == FindingReplaced {
						if _, err := t.exec(ctx, "UPDATE finding_replacements SET replaced_at = 0 WHERE fingerprint = ?", fp); err != nil {
							return fmt.Errorf("reopen replacement: %w", err)
						}
					}
					status, closed = FindingOpen, 0
					res.Reopened++
					change = "reopened"
				}
				_, err = t.exec(ctx, `UPDATE findings SET rule_id = ?, detector = ?, kind = ?, severity = ?, description = ?,
					preview = ?, details = ?, labels = ?, status = ?, closed_at = ?, last_seen_at = ? WHERE fingerprint = ?`,
					f.RuleID, f.Detector, f.Kind, f.Severity, f.Description, f.Preview, labelsToDB(f.Details),
					labelsToDB(mergeLabels(cur.labels, r.Labels)), string(status), closed, now, fp)
				if err != nil {
					return fmt.Errorf("update finding: %w", err)
				}
			}
			if change != "" {
				t.record("finding.report", findingObject(fp), findingDetail(fp, f.Kind, f.Locations[0].Path, r.Host, change))
			}
		}
		gone, err := t.markGone(ctx, r.Host, r.Scope, reported)
		if err != nil {
			return err
		}
		res.Gone = gone
		if err := t.scoreFindings(ctx, order, byFP, existing, r.Labels); err != nil {
			return err
		}
		detail := map[string]string{
			"findings": strconv.Itoa(len(order)), "new": strconv.Itoa(res.New), "reopened": strconv.Itoa(res.Reopened),
			"gone": strconv.Itoa(res.Gone),
		}
		if len(r.Scope) > 0 {
			detail["scope"] = strings.Join(r.Scope, ",")
		}
		t.record("finding.scan", r.Host, detail)
		return nil
	})
	if err != nil {
		return ReportResult{}, err
	}
	return res, nil
}

func findingObject(fp string) string { return "finding:" + fp[:min(len(fp), AuditFingerprintLen)] }

func findingDetail(fp, kind, path, host, change string) map[string]string {
	d := map[string]string{"fingerprint": fp[:min(len(fp), AuditFingerprintLen)], "kind": kind, "path": path}
	if host != "" {
		d["host"] = host
	}
	if change != "" {
		d["change"] = change
	}
	return d
}

func mergeLabels(base, add map[string]string) map[string]string {
	out := maps.Clone(base)
	if out == nil {
		out = make(map[string]string, len(add))
	}
	maps.Copy(out, add)
	return out
}

// findingState is the part of a stored finding a report updates against.
type findingState struct {
	status    FindingStatus
	closedAt  int64
	firstSeen int64
	labels    map[string]string
}

func (t *wtx) findingStates(ctx context.Context, fps []string) (map[string]findingState, error) {
	out := make(map[string]findingState, len(fps))
	err := t.queryIn(ctx, "SELECT fingerprint, status, closed_at, first_seen_at, labels FROM findings WHERE fingerprint", nil, fps, func(rows *sql.Rows) error {
		var fp, status, labels string
		var st findingState
		if err := rows.Scan(&fp, &status, &st.closedAt, &st.firstSeen, &labels); err != nil {
			return err
		}
		st.status = FindingStatus(status)
		var err error
		if st.labels, err = labelsFromDB(labels); err != nil {
			return fmt.Errorf("finding %s: %w", fp, err)
		}
		out[fp] = st
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read findings: %w", err)
	}
	return out, nil
}

// locationStates returns the stored locations on host of the given
// findings, by key, with their gone_at.
func (t *wtx) locationStates(ctx context.Context, fps []string, host string) (map[locKey]int64, error) {
	out := make(map[locKey]int64)
	err := t.queryIn(ctx, "SELECT fingerprint, path, line, commit_sha, gone_at FROM finding_locations WHERE host = ? AND fingerprint", []any{host}, fps, func(rows *sql.Rows) error {
		k := locKey{host: host}
		var gone int64
		if err := rows.Scan(&k.fp, &k.path, &k.line, &k.commit, &gone); err != nil {
			return err
		}
		out[k] = gone
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read finding locations: %w", err)
	}
	return out, nil
}

// markGone marks the open locations of host under scope that are not in
// reported as gone, then the open findings left without an open location.
// It returns how many findings became gone.
func (t *wtx) markGone(ctx context.Context, host string, scope []string, reported map[locKey]bool) (int, error) {
	if len(scope) == 0 {
		return 0, nil
	}
	rows, err := t.query(ctx, "SELECT fingerprint, path, line, commit_sha FROM finding_locations WHERE host = ? AND gone_at = 0", host)
	if err != nil {
		return 0, fmt.Errorf("read open locations: %w", err)
	}
	var stale []locKey
	for rows.Next() {
		k := locKey{host: host}
		if err := rows.Scan(&k.fp, &k.path, &k.line, &k.commit); err != nil {
			rows.Close()
			return 0, err
		}
		if !reported[k] && InScope(k.path, scope) {
			stale = append(stale, k)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(stale) == 0 {
		return 0, nil
	}
	now := timeToDB(t.now)
	affected := make(map[string]bool)
	for _, k := range stale {
		if _, err := t.exec(ctx, `UPDATE finding_locations SET gone_at = ?
			WHERE fingerprint = ? AND host = ? AND path = ? AND line = ? AND commit_sha = ?`,
			now, k.fp, k.host, k.path, k.line, k.commit); err != nil {
			return 0, fmt.Errorf("mark location gone: %w", err)
		}
		affected[k.fp] = true
	}
	fps := slices.Sorted(maps.Keys(affected))
	stillOpen := make(map[string]bool)
	err = t.queryIn(ctx, "SELECT DISTINCT fingerprint FROM finding_locations WHERE gone_at = 0 AND fingerprint", nil, fps, func(rows *sql.Rows) error {
		var fp string
		if err := rows.Scan(&fp); err != nil {
			return err
		}
		stillOpen[fp] = true
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read open locations: %w", err)
	}
	gone := 0
	for _, fp := range fps {
		if stillOpen[fp] {
			continue
		}
		var kind string
		err := t.queryRow(ctx, "UPDATE findings SET status = ?, closed_at = ? WHERE fingerprint = ? AND status = ? RETURNING kind",
			string(FindingGone), now, fp, string(FindingOpen)).Scan(&kind)
		if errors.Is(err, sql.ErrNoRows) {
			continue // resolved already
		}
		if err != nil {
			return 0, fmt.Errorf("mark finding gone: %w", err)
		}
		gone++
		path := ""
		for _, k := range stale {
			if k.fp == fp {
				path = k.path
				break
			}
		}
		t.record("finding.gone", findingObject(fp), findingDetail(fp, kind, path, host, ""))
	}
	return gone, nil
}

// ResolveFinding marks the finding resolved by an operator, with reason
// (for example "rotated"), and audits it as "finding.resolve". It returns
// the finding as stored. The error is kinded NotFound for an unknown
// fingerprint, InvalidArgument for a malformed one or a missing reason.
func (s *Store) ResolveFinding(ctx context.Context, fingerprint, reason string) (Finding, error) {
	fp, err := NormalizeFingerprint("fingerprint", fingerprint)
	if err != nil {
		return Finding{}, err
	}
	if err := checkText("reason", reason, maxFindingShort, true); err != nil {
		return Finding{}, err
	}
	err = s.update(ctx, "resolve finding "+fp, false, func(t *wtx) error {
		var kind string
		err := t.queryRow(ctx, "UPDATE findings SET status = ?, resolution = ?, closed_at = ? WHERE fingerprint = ? RETURNING kind",
			string(FindingResolved), reason, timeToDB(t.now), fp).Scan(&kind)
		if errors.Is(err, sql.ErrNoRows) {
			return errkind.New(errkind.NotFound, "finding %s not found", fp)
		}
		if err != nil {
			return err
		}
		d := findingDetail(fp, kind, "", "", "")
		delete(d, "path")
		d["reason"] = reason
		t.record("finding.resolve", findingObject(fp), d)
		return nil
	})
	if err != nil {
		return Finding{}, err
	}
	return s.GetFinding(ctx, fp)
}

const findingSelect = "SELECT f.fingerprint, f.rule_id, f.detector, f.kind, f.severity, f.description, f.preview, f.details, " +
	"f.labels, f.status, f.resolution, f.first_seen_at, f.last_seen_at, f.closed_at, f.risk, f.risk_factors, f.environment, f.owner, " +
	"COALESCE(r.credential, ''), COALESCE(r.note, ''), COALESCE(r.linked_by, ''), COALESCE(r.linked_at, 0), COALESCE(r.replaced_at, 0) " +
	"FROM findings f LEFT JOIN finding_replacements r ON r.fingerprint = f.fingerprint"

func scanFinding(sc scanner) (Finding, error) {
	var f Finding
	var details, labels, status, factors string
	var first, last, closed int64
	var rp FindingReplacement
	var linked, replaced int64
	if err := sc.Scan(&f.Fingerprint, &f.RuleID, &f.Detector, &f.Kind, &f.Severity, &f.Description, &f.Preview,
		&details, &labels, &status, &f.Resolution, &first, &last, &closed, &f.Risk, &factors, &f.Environment, &f.Owner,
		&rp.Credential, &rp.Note, &rp.LinkedBy, &linked, &replaced); err != nil {
		return Finding{}, err
	}
	f.Status = FindingStatus(status)
	f.FirstSeenAt, f.LastSeenAt, f.ClosedAt = timeFromDB(first), timeFromDB(last), timeFromDB(closed)
	if rp.Credential != "" {
		rp.LinkedAt, rp.ReplacedAt = timeFromDB(linked), timeFromDB(replaced)
		f.Replacement = &rp
	}
	var errs [3]error
	f.Details, errs[0] = labelsFromDB(details)
	f.Labels, errs[1] = labelsFromDB(labels)
	if factors != "" && factors != "[]" {
		errs[2] = json.Unmarshal([]byte(factors), &f.RiskFactors)
	}
	if err := errors.Join(errs[:]...); err != nil {
		return Finding{}, fmt.Errorf("finding %s: %w", f.Fingerprint, err)
	}
	return f, nil
}

// GetFinding returns the finding with the given fingerprint and its
// locations, or an error kinded NotFound.
func (s *Store) GetFinding(ctx context.Context, fingerprint string) (Finding, error) {
	fp, err := NormalizeFingerprint("fingerprint", fingerprint)
	if err != nil {
		return Finding{}, err
	}
	fs, err := s.ListFindings(ctx, FindingFilter{Fingerprints: []string{fp}})
	if err != nil {
		return Finding{}, err
	}
	if len(fs) == 0 {
		return Finding{}, errkind.New(errkind.NotFound, "finding %s not found", fp)
	}
	return fs[0], nil
}

// FindingFilter selects findings. Zero fields do not filter.
type FindingFilter struct {
	Status       []FindingStatus // any of these
	Fingerprints []string        // any of these (normalized)
}

// ListFindings returns the findings f selects, with their locations,
// ordered by fingerprint; locations are ordered by host, path, line and
// commit.
func (s *Store) ListFindings(ctx context.Context, f FindingFilter) ([]Finding, error) {
	var where []string
	var args []any
	if len(f.Status) > 0 {
		where = append(where, "f.status IN ("+placeholders(len(f.Status))+")")
		for _, st := range f.Status {
			args = append(args, string(st))
		}
	}
	if len(f.Fingerprints) > 0 {
		where = append(where, "f.fingerprint IN ("+placeholders(len(f.Fingerprints))+")")
		args = append(args, anys(f.Fingerprints)...)
	}
	q := findingSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	var out []Finding
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = s.findingsWithLocations(ctx, tx, q+" ORDER BY f.fingerprint", args, strings.Join(where, " AND "), args)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list findings: %w", err)
	}
	return out, nil
}

// findingsWithLocations runs the finding query q and then reads the
// locations of the findings selected by the condition where (over findings
// f; empty: all), attaching them in order of host, path, line and commit.
func (s *Store) findingsWithLocations(ctx context.Context, tx *sql.Tx, q string, args []any, where string, whereArgs []any) ([]Finding, error) {
	var out []Finding
	rows, err := tx.QueryContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	idx := make(map[string]int)
	for rows.Next() {
		fd, err := scanFinding(rows)
		if err != nil {
			return nil, err
		}
		idx[fd.Fingerprint] = len(out)
		out = append(out, fd)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	lq := "SELECT " + strings.Join(locationCols, ", ") + " FROM finding_locations"
	if where != "" {
		lq += " WHERE fingerprint IN (SELECT f.fingerprint FROM findings f WHERE " + where + ")"
	}
	lrows, err := tx.QueryContext(ctx, s.d.rebind(lq+" ORDER BY fingerprint, host, path, line, commit_sha"), whereArgs...)
	if err != nil {
		return nil, err
	}
	defer lrows.Close()
	for lrows.Next() {
		var fp string
		var l FindingLocation
		var committed, first, last, gone int64
		if err := lrows.Scan(&fp, &l.Host, &l.Path, &l.Line, &l.Commit, &l.Column, &l.EndLine, &l.Author, &l.Email,
			&committed, &first, &last, &gone); err != nil {
			return nil, err
		}
		l.CommittedAt, l.FirstSeenAt, l.LastSeenAt, l.GoneAt = timeFromDB(committed), timeFromDB(first), timeFromDB(last), timeFromDB(gone)
		if i, ok := idx[fp]; ok {
			out[i].Locations = append(out[i].Locations, l)
		}
	}
	return out, lrows.Err()
}
