package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
)

// Federation profiles: how a bundle endpoint authenticates itself (SPIFFE
// Federation, section 5).
const (
	ProfileHTTPSWeb    = "https_web"
	ProfileHTTPSSPIFFE = "https_spiffe"
)

// Federation is a relationship with a remote trust domain: where its bundle
// is fetched, how the endpoint is authenticated, and the last good bundle.
type Federation struct {
	TrustDomain       spiffeid.TrustDomain
	BundleEndpointURL string
	Profile           string      // ProfileHTTPSWeb or ProfileHTTPSSPIFFE
	EndpointSPIFFEID  spiffeid.ID // the endpoint's SPIFFE ID (https_spiffe only)
	// Bundle is the last good bundle, SPIFFE bundle JSON; nil when none has
	// been fetched (or given) yet. BundleSequence is its spiffe_sequence.
	Bundle         []byte
	BundleSequence uint64
	LastRefresh    time.Time // last successful fetch; zero when never
	LastAttempt    time.Time // last fetch, successful or not; zero when never
	LastError      string    // the last fetch's error; empty after a success
	Failures       int       // fetches failed in a row
	NextRefresh    time.Time // when the next fetch is due
	CreatedAt      time.Time
}

const federationColumns = `trust_domain, bundle_endpoint_url, profile, endpoint_spiffe_id, bundle, bundle_sequence,
	last_refresh_at, last_attempt_at, last_error, failures, next_refresh_at, created_at`

func scanFederation(row interface{ Scan(...any) error }) (Federation, error) {
	var f Federation
	var td, ep string
	var seq, lastRefresh, lastAttempt, failures, next, created int64
	if err := row.Scan(&td, &f.BundleEndpointURL, &f.Profile, &ep, &f.Bundle, &seq,
		&lastRefresh, &lastAttempt, &f.LastError, &failures, &next, &created); err != nil {
		return Federation{}, err
	}
	var err error
	if f.TrustDomain, err = spiffeid.TrustDomainFromString(td); err != nil {
		return Federation{}, fmt.Errorf("stored trust domain %q: %w", td, err)
	}
	if ep != "" {
		if f.EndpointSPIFFEID, err = spiffeid.FromString(ep); err != nil {
			return Federation{}, fmt.Errorf("stored endpoint_spiffe_id %q: %w", ep, err)
		}
	}
	if len(f.Bundle) == 0 {
		f.Bundle = nil
	}
	f.BundleSequence = uint64(seq)
	f.LastRefresh, f.LastAttempt = optTimeFromDB(lastRefresh), optTimeFromDB(lastAttempt)
	f.Failures = int(failures)
	f.NextRefresh, f.CreatedAt = timeFromDB(next), timeFromDB(created)
	return f, nil
}

func optTimeFromDB(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return timeFromDB(n)
}

func optTimeToDB(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return timeToDB(t)
}

// CreateFederation stores a new relationship, audited as
// federation.create. CreatedAt defaults to now, NextRefresh to CreatedAt
// (due at once). The error is kinded InvalidArgument when the trust domain,
// URL or profile is missing or the profile is unknown, or an https_spiffe
// relationship has no endpoint SPIFFE ID; AlreadyExists when the trust
// domain has one.
func (s *Store) CreateFederation(ctx context.Context, f Federation) error {
	if f.TrustDomain.IsZero() {
		return errkind.New(errkind.InvalidArgument, "trust_domain is required")
	}
	if f.BundleEndpointURL == "" {
		return errkind.New(errkind.InvalidArgument, "bundle_endpoint_url is required")
	}
	switch f.Profile {
	case ProfileHTTPSWeb:
	case ProfileHTTPSSPIFFE:
		if f.EndpointSPIFFEID.IsZero() {
			return errkind.New(errkind.InvalidArgument, "endpoint_spiffe_id is required with profile %s", ProfileHTTPSSPIFFE)
		}
	default:
		return errkind.New(errkind.InvalidArgument, "profile %q: use %s or %s", f.Profile, ProfileHTTPSWeb, ProfileHTTPSSPIFFE)
	}
	td := f.TrustDomain.Name()
	return s.update(ctx, "create federation "+td, true, func(w *wtx) error {
		if f.CreatedAt.IsZero() {
			f.CreatedAt = w.now
		}
		if f.NextRefresh.IsZero() {
			f.NextRefresh = f.CreatedAt
		}
		_, err := w.exec(ctx, "INSERT INTO federations ("+federationColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			td, f.BundleEndpointURL, f.Profile, idToDB(f.EndpointSPIFFEID), f.Bundle, int64(f.BundleSequence),
			optTimeToDB(f.LastRefresh), optTimeToDB(f.LastAttempt), f.LastError, int64(f.Failures),
			timeToDB(f.NextRefresh), timeToDB(f.CreatedAt))
		if s.d.isUniqueViolation(err) {
			return errkind.New(errkind.AlreadyExists, "trust_domain %s: a federation relationship already exists; delete it first", td)
		}
		if err != nil {
			return err
		}
		detail := map[string]string{"bundle_endpoint_url": f.BundleEndpointURL, "profile": f.Profile}
		if !f.EndpointSPIFFEID.IsZero() {
			detail["endpoint_spiffe_id"] = f.EndpointSPIFFEID.String()
		}
		if f.Bundle != nil {
			detail["bundle_sequence"] = fmt.Sprint(f.BundleSequence)
		}
		w.record("federation.create", td, detail)
		return nil
	})
}

// GetFederation returns the relationship with td; kinded NotFound when
// there is none.
func (s *Store) GetFederation(ctx context.Context, td spiffeid.TrustDomain) (Federation, error) {
	f, err := scanFederation(s.db.QueryRowContext(ctx, s.d.rebind("SELECT "+federationColumns+" FROM federations WHERE trust_domain = ?"), td.Name()))
	if errors.Is(err, sql.ErrNoRows) {
		return Federation{}, errkind.New(errkind.NotFound, "trust_domain %s: no federation relationship", td.Name())
	}
	if err != nil {
		return Federation{}, fmt.Errorf("get federation %s: %w", td.Name(), err)
	}
	return f, nil
}

// ListFederations returns every relationship, by trust domain.
func (s *Store) ListFederations(ctx context.Context) ([]Federation, error) {
	return s.ListFederationsPage(ctx, "", 0)
}

// ListFederationsPage is ListFederations a page at a time: at most limit
// relationships (0: all) whose trust domain sorts after after (empty: from
// the first).
func (s *Store) ListFederationsPage(ctx context.Context, after string, limit int) ([]Federation, error) {
	q, args := "SELECT "+federationColumns+" FROM federations", []any(nil)
	if after != "" {
		q, args = q+" WHERE trust_domain > ?", append(args, after)
	}
	q += " ORDER BY trust_domain"
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("list federations: %w", err)
	}
	defer rows.Close()
	var out []Federation
	for rows.Next() {
		f, err := scanFederation(rows)
		if err != nil {
			return nil, fmt.Errorf("list federations: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list federations: %w", err)
	}
	return out, nil
}

// DeleteFederation removes the relationship with td, audited as
// federation.delete; kinded NotFound when there is none.
func (s *Store) DeleteFederation(ctx context.Context, td spiffeid.TrustDomain) error {
	return s.update(ctx, "delete federation "+td.Name(), true, func(w *wtx) error {
		res, err := w.exec(ctx, "DELETE FROM federations WHERE trust_domain = ?", td.Name())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errkind.New(errkind.NotFound, "trust_domain %s: no federation relationship", td.Name())
		}
		w.record("federation.delete", td.Name(), nil)
		return nil
	})
}

// ClaimFederation moves the next refresh of td from due (the value the
// caller read) to until, reporting whether this caller won it: of replicas
// reading the same due time, exactly one claims it. It is housekeeping:
// not audited, the revision unchanged.
func (s *Store) ClaimFederation(ctx context.Context, td spiffeid.TrustDomain, due, until time.Time) (bool, error) {
	var n int64
	err := s.plainWrite(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.rebind("UPDATE federations SET next_refresh_at = ? WHERE trust_domain = ? AND next_refresh_at = ?"),
			timeToDB(until), td.Name(), timeToDB(due))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("claim federation %s: %w", td.Name(), err)
	}
	return n == 1, nil
}

// RecordFederationBundle stores a fetched bundle of td as its last good
// one, clears the error and schedules the next fetch. When the sequence or
// bytes change it is audited as federation.bundle_update. Kinded NotFound
// when the relationship was deleted meanwhile.
func (s *Store) RecordFederationBundle(ctx context.Context, td spiffeid.TrustDomain, bundle []byte, seq uint64, at, next time.Time) error {
	if len(bundle) == 0 {
		return errkind.New(errkind.InvalidArgument, "record federation bundle of %s: the bundle is empty", td.Name())
	}
	return s.update(ctx, "record federation bundle "+td.Name(), false, func(w *wtx) error {
		var old []byte
		var oldSeq int64
		err := w.queryRow(ctx, "SELECT bundle, bundle_sequence FROM federations WHERE trust_domain = ?", td.Name()).Scan(&old, &oldSeq)
		if errors.Is(err, sql.ErrNoRows) {
			return errkind.New(errkind.NotFound, "trust_domain %s: no federation relationship", td.Name())
		}
		if err != nil {
			return err
		}
		if _, err := w.exec(ctx, `UPDATE federations SET bundle = ?, bundle_sequence = ?, last_refresh_at = ?, last_attempt_at = ?,
			last_error = '', failures = 0, next_refresh_at = ? WHERE trust_domain = ?`,
			bundle, int64(seq), timeToDB(at), timeToDB(at), timeToDB(next), td.Name()); err != nil {
			return err
		}
		if uint64(oldSeq) != seq || string(old) != string(bundle) {
			w.record("federation.bundle_update", td.Name(), map[string]string{"bundle_sequence": fmt.Sprint(seq)})
		}
		return nil
	})
}

// RecordFederationError records a failed fetch of td (the last good bundle
// is kept), counts it and schedules the retry. Housekeeping: not audited.
// Kinded NotFound when the relationship was deleted meanwhile.
func (s *Store) RecordFederationError(ctx context.Context, td spiffeid.TrustDomain, msg string, at, next time.Time) error {
	var n int64
	err := s.plainWrite(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.rebind(`UPDATE federations SET last_attempt_at = ?, last_error = ?, failures = failures + 1,
			next_refresh_at = ? WHERE trust_domain = ?`), timeToDB(at), msg, timeToDB(next), td.Name())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("record federation error of %s: %w", td.Name(), err)
	}
	if n == 0 {
		return errkind.New(errkind.NotFound, "trust_domain %s: no federation relationship", td.Name())
	}
	return nil
}

// RescheduleFederation makes td due at at (an operator's refresh); kinded
// NotFound when there is no relationship.
func (s *Store) RescheduleFederation(ctx context.Context, td spiffeid.TrustDomain, at time.Time) error {
	var n int64
	err := s.plainWrite(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.rebind("UPDATE federations SET next_refresh_at = ? WHERE trust_domain = ?"), timeToDB(at), td.Name())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("reschedule federation %s: %w", td.Name(), err)
	}
	if n == 0 {
		return errkind.New(errkind.NotFound, "trust_domain %s: no federation relationship", td.Name())
	}
	return nil
}
