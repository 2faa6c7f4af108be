package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/signet-id/signet/internal/brokerclient"
)

// Clock is the time the gateway renews leases by. A nil Clock in Options
// is the real one; tests pass internal/testenv/testclock.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives the time once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Lease renewal and retry.
const (
	// renewAt is the fraction of a lease's life after which a fresh lease
	// is requested.
	renewAt = 2.0 / 3.0
	// retryMin and retryMax bound the wait between failed requests.
	retryMin = time.Second
	retryMax = 30 * time.Second
	// firstLeaseWait is how long a new application connection waits for a
	// route's first lease before it is refused.
	firstLeaseWait = dialTimeout
	// refreshMinGap keeps a route whose upstream refuses every leased user
	// from asking the broker for a lease per connection.
	refreshMinGap = time.Second
)

// Log keys of leases.
const (
	logKeyCredential = "credential"
	logKeyLease      = "lease_id"
	logKeyExpires    = "expires_at"
	logKeyUser       = "user"
)

// credentialGetter is what a lease needs of brokerclient.Client.
type credentialGetter interface {
	Get(ctx context.Context, r brokerclient.Request) (*brokerclient.Result, error)
}

// lease keeps one route's current credential: it requests one from the
// broker, and a fresh one at two thirds of each one's life, so new
// upstream sessions always log in with a live credential. Failures are
// retried with backoff and kept for the connections that ask meanwhile.
type lease struct {
	route  string
	req    brokerclient.Request
	broker func(context.Context) (credentialGetter, error)
	clock  Clock
	log    *slog.Logger

	refresh chan struct{} // asks run for a fresh lease now

	mu          sync.Mutex
	cur         *brokerclient.Result
	err         error         // the last request's failure, nil after a success
	updated     chan struct{} // closed and replaced when cur or err change
	lastRefresh time.Time
}

func newLease(route string, req brokerclient.Request, broker func(context.Context) (credentialGetter, error), clock Clock, log *slog.Logger) *lease {
	return &lease{route: route, req: req, broker: broker, clock: clock, log: log,
		refresh: make(chan struct{}, 1), updated: make(chan struct{})}
}

// run requests leases until ctx is done.
func (l *lease) run(ctx context.Context) {
	backoff := retryMin
	for {
		res, err := l.fetch(ctx)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		if err != nil {
			wait = backoff
			backoff = min(2*backoff, retryMax)
			l.log.Warn("no lease from the broker; retrying", slog.String(logKeyRoute, l.route),
				slog.String(logKeyCredential, l.req.Credential), slog.String(logKeyErr, err.Error()), slog.Duration("retry_in", wait))
		} else {
			backoff = retryMin
			now := l.clock.Now()
			exp := res.Expiry()
			if exp.IsZero() || !exp.After(now) {
				// A lease without a usable expiry is used until it fails.
				wait = retryMax
			} else {
				wait = time.Duration(float64(exp.Sub(now)) * renewAt)
			}
			l.log.Info("lease granted", slog.String(logKeyRoute, l.route), slog.String(logKeyCredential, l.req.Credential),
				slog.String(logKeyLease, res.LeaseID), slog.String(logKeyUser, res.Data["username"]),
				slog.String(logKeyExpires, res.ExpiresAt), slog.Duration("renew_in", wait))
		}
		l.set(res, err)
		select {
		case <-ctx.Done():
			return
		case <-l.clock.After(wait):
		case <-l.refresh:
		}
	}
}

func (l *lease) fetch(ctx context.Context) (*brokerclient.Result, error) {
	b, err := l.broker(ctx)
	if err != nil {
		return nil, err
	}
	res, err := b.Get(ctx, l.req)
	if err != nil {
		return nil, fmt.Errorf("credential %s: %w", l.req.Credential, err)
	}
	return res, nil
}

func (l *lease) set(res *brokerclient.Result, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.cur = res
	}
	l.err = err
	close(l.updated)
	l.updated = make(chan struct{})
}

// errNoLeaseYet is returned when no lease arrived within firstLeaseWait.
var errNoLeaseYet = errors.New("no lease from the broker yet")

// current returns a live credential: the current lease when it has not
// expired, else it waits (at most firstLeaseWait) for the next request to
// the broker and returns its lease or its failure.
func (l *lease) current(ctx context.Context) (*brokerclient.Result, error) {
	timeout := time.After(firstLeaseWait)
	for {
		l.mu.Lock()
		cur, err, updated := l.cur, l.err, l.updated
		l.mu.Unlock()
		if cur != nil && (cur.Expiry().IsZero() || l.clock.Now().Before(cur.Expiry())) {
			return cur, nil
		}
		if err != nil {
			return nil, err
		}
		select {
		case <-updated:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, errNoLeaseYet
		}
	}
}

// refused tells the lease that the upstream refused the login of res (a
// revoked lease, a dropped role): unless a fresh lease has replaced it or
// one was asked for less than refreshMinGap ago, it is dropped and a fresh
// one requested at once. It reports whether a fresh lease is coming.
func (l *lease) refused(res *brokerclient.Result) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != res {
		// Replaced already, or being replaced: retry with the new one.
		return l.cur != nil || l.err == nil
	}
	now := l.clock.Now()
	if now.Sub(l.lastRefresh) < refreshMinGap {
		return false
	}
	l.lastRefresh = now
	l.cur = nil
	l.err = nil
	select {
	case l.refresh <- struct{}{}:
	default:
	}
	return true
}
