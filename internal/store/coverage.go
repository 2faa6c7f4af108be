package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/signet-id/signet/internal/errkind"
)

// maxCoverageList bounds ListCoverageReports.
const maxCoverageList = 1000

// SaveCoverageReport stores r (ID assigned, CreatedAt defaulting to now) and
// returns it as stored together with the latest earlier report of the same
// dimension, whose ID is 0 when there is none. Reports are measurements,
// not state: the revision does not change and nothing is audited.
func (s *Store) SaveCoverageReport(ctx context.Context, r CoverageReport) (saved, prev CoverageReport, err error) {
	if r.Dimension == "" {
		return saved, prev, errkind.New(errkind.InvalidArgument, "save coverage report: dimension is required")
	}
	if !json.Valid(r.Report) {
		return saved, prev, errkind.New(errkind.InvalidArgument, "save coverage report: report is not valid JSON")
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = s.now()
	}
	r.CreatedAt = normTime(r.CreatedAt)
	err = s.plainWrite(ctx, func(tx *sql.Tx) error {
		row := tx.QueryRowContext(ctx, s.d.rebind(
			"SELECT id, created_at, dimension, report FROM coverage_reports WHERE dimension = ? ORDER BY id DESC LIMIT 1"), r.Dimension)
		p, err := scanCoverage(row)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			prev = p
		}
		return tx.QueryRowContext(ctx, s.d.rebind(
			"INSERT INTO coverage_reports (created_at, dimension, report) VALUES (?, ?, ?) RETURNING id"),
			timeToDB(r.CreatedAt), r.Dimension, string(r.Report)).Scan(&r.ID)
	})
	if err != nil {
		return CoverageReport{}, CoverageReport{}, fmt.Errorf("save coverage report: %w", err)
	}
	return r, prev, nil
}

func scanCoverage(sc scanner) (CoverageReport, error) {
	var r CoverageReport
	var created int64
	var report string
	if err := sc.Scan(&r.ID, &created, &r.Dimension, &report); err != nil {
		return CoverageReport{}, err
	}
	r.CreatedAt, r.Report = timeFromDB(created), json.RawMessage(report)
	return r, nil
}

// ListCoverageReports returns up to limit stored reports of dimension (all
// dimensions when empty), newest first. limit <= 0 means 20; it is capped
// at 1000.
func (s *Store) ListCoverageReports(ctx context.Context, dimension string, limit int) ([]CoverageReport, error) {
	return s.ListCoverageReportsBefore(ctx, dimension, 0, limit)
}

// ListCoverageReportsBefore is ListCoverageReports for the reports older
// than the one with ID before (0: from the newest): a page of history.
func (s *Store) ListCoverageReportsBefore(ctx context.Context, dimension string, before int64, limit int) ([]CoverageReport, error) {
	if limit <= 0 {
		limit = 20
	}
	limit = min(limit, maxCoverageList)
	q := "SELECT id, created_at, dimension, report FROM coverage_reports"
	var args []any
	var where []string
	if dimension != "" {
		where = append(where, "dimension = ?")
		args = append(args, dimension)
	}
	if before > 0 {
		where = append(where, "id < ?")
		args = append(args, before)
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, s.d.rebind(q+" ORDER BY id DESC LIMIT ?"), args...)
	if err != nil {
		return nil, fmt.Errorf("list coverage reports: %w", err)
	}
	defer rows.Close()
	var out []CoverageReport
	for rows.Next() {
		r, err := scanCoverage(rows)
		if err != nil {
			return nil, fmt.Errorf("list coverage reports: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list coverage reports: %w", err)
	}
	return out, nil
}
