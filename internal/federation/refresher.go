package federation

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/signet-id/signet/internal/store"
)

// Refresh bounds: a remote bundle is fetched at its refresh hint, clamped
// to [DefaultMinRefresh, DefaultMaxRefresh] (DefaultRefresh when it gives
// none); a failed fetch is retried after DefaultRetry doubling per failure
// up to DefaultMaxRetry, with jitter.
const (
	DefaultMinRefresh = 10 * time.Second
	DefaultMaxRefresh = time.Hour
	DefaultRefresh    = 5 * time.Minute
	DefaultRetry      = 5 * time.Second
	DefaultMaxRetry   = 5 * time.Minute
	// claimLease is how long a replica holds a claimed fetch before another
	// may take it over (a fetch is bounded by fetchTimeout).
	claimLease   = time.Minute
	fetchTimeout = 30 * time.Second
)

// Store is what the refresher needs of the store.
type Store interface {
	ListFederations(ctx context.Context) ([]store.Federation, error)
	GetFederation(ctx context.Context, td spiffeid.TrustDomain) (store.Federation, error)
	ClaimFederation(ctx context.Context, td spiffeid.TrustDomain, due, until time.Time) (bool, error)
	RecordFederationBundle(ctx context.Context, td spiffeid.TrustDomain, bundle []byte, seq uint64, at, next time.Time) error
	RecordFederationError(ctx context.Context, td spiffeid.TrustDomain, msg string, at, next time.Time) error
}

// Refresher fetches the bundles of every stored relationship when they are
// due. Several replicas may each run one on the shared store: a due fetch
// is claimed in the store, so one replica fetches it. The zero durations
// take the Default values; Now defaults to time.Now.
type Refresher struct {
	Store      Store
	Log        *slog.Logger
	Now        func() time.Time
	Interval   time.Duration // how often due relationships are looked for; 1s when zero
	MinRefresh time.Duration
	MaxRefresh time.Duration
	Retry      time.Duration
	MaxRetry   time.Duration
}

func (r *Refresher) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Run looks for due relationships every Interval and fetches them until
// ctx is done; it returns ctx's error.
func (r *Refresher) Run(ctx context.Context) error {
	t := time.NewTicker(orDefault(r.Interval, time.Second))
	defer t.Stop()
	for {
		r.RefreshDue(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// RefreshDue fetches every relationship whose next refresh has come and
// that this caller claims.
func (r *Refresher) RefreshDue(ctx context.Context) {
	feds, err := r.Store.ListFederations(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.Log.Warn("federation: list relationships", "error", err)
		}
		return
	}
	now := r.now()
	for _, f := range feds {
		if f.NextRefresh.After(now) {
			continue
		}
		won, err := r.Store.ClaimFederation(ctx, f.TrustDomain, f.NextRefresh, now.Add(claimLease))
		if err != nil || !won {
			continue
		}
		r.refresh(ctx, f)
	}
}

// RefreshNow fetches td's bundle at once (an operator's refresh), records
// the outcome like a scheduled fetch and returns the relationship as
// stored afterwards. The error is the store's (kinded NotFound for an
// unknown trust domain); a failed fetch shows in LastError.
func (r *Refresher) RefreshNow(ctx context.Context, td spiffeid.TrustDomain) (store.Federation, error) {
	f, err := r.Store.GetFederation(ctx, td)
	if err != nil {
		return store.Federation{}, err
	}
	r.refresh(ctx, f)
	return r.Store.GetFederation(ctx, td)
}

// refresh fetches f's bundle and records the outcome: a good bundle
// replaces the stored one; on any failure the last good bundle is kept.
func (r *Refresher) refresh(ctx context.Context, f store.Federation) {
	log := r.Log.With("trust_domain", f.TrustDomain.Name())
	b, err := Fetch(ctx, f)
	now := r.now()
	if err != nil {
		next := now.Add(r.backoff(f.Failures))
		if rerr := r.Store.RecordFederationError(ctx, f.TrustDomain, err.Error(), now, next); rerr != nil && ctx.Err() == nil {
			log.Warn("federation: record fetch error", "error", rerr)
		}
		log.Warn("federation: bundle refresh failed; keeping the last good bundle", "error", err, "retry_at", next)
		return
	}
	data, err := b.Marshal()
	if err != nil {
		log.Warn("federation: encode bundle", "error", err)
		return
	}
	seq, _ := b.SequenceNumber()
	hint, ok := b.RefreshHint()
	if !ok || hint <= 0 {
		hint = DefaultRefresh
	}
	hint = min(max(hint, orDefault(r.MinRefresh, DefaultMinRefresh)), orDefault(r.MaxRefresh, DefaultMaxRefresh))
	if err := r.Store.RecordFederationBundle(ctx, f.TrustDomain, data, seq, now, now.Add(hint)); err != nil {
		if ctx.Err() == nil {
			log.Warn("federation: record bundle", "error", err)
		}
		return
	}
	if seq != f.BundleSequence || string(data) != string(f.Bundle) {
		log.Info("federation: bundle updated", "sequence", seq, "x509_authorities", len(b.X509Authorities()), "jwt_authorities", len(b.JWTAuthorities()))
	}
}

// backoff is the wait after failures+1 failures in a row: Retry doubling
// up to MaxRetry, jittered to between half and all of it.
func (r *Refresher) backoff(failures int) time.Duration {
	d, limit := orDefault(r.Retry, DefaultRetry), orDefault(r.MaxRetry, DefaultMaxRetry)
	for i := 0; i < failures && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d/2 + rand.N(d/2+1)
}

// Fetch fetches f's bundle from its endpoint under its profile and checks
// it (CheckBundle). With https_spiffe the endpoint must present an
// X509-SVID with f's endpoint SPIFFE ID, verified with f's last good bundle
// (go-spiffe's tlsconfig); with https_web a certificate for the URL's host
// from the system roots. The answer must be 200 within MaxBundleSize bytes;
// redirects are not followed (SPIFFE Federation 7.5.1).
func Fetch(ctx context.Context, f store.Federation) (*spiffebundle.Bundle, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	if f.Profile == store.ProfileHTTPSSPIFFE {
		if len(f.Bundle) == 0 {
			return nil, errNoBundle
		}
		cur, err := spiffebundle.Parse(f.TrustDomain, f.Bundle)
		if err != nil {
			return nil, fmt.Errorf("stored bundle: %w", err)
		}
		tr.TLSClientConfig = tlsconfig.TLSClientConfig(x509bundle.NewSet(cur.X509Bundle()), tlsconfig.AuthorizeID(f.EndpointSPIFFEID))
	}
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.BundleEndpointURL, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", f.BundleEndpointURL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", f.BundleEndpointURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: the endpoint answered %s (redirects are not followed)", f.BundleEndpointURL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", f.BundleEndpointURL, err)
	}
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("fetch %s: the bundle is larger than %d bytes", f.BundleEndpointURL, MaxBundleSize)
	}
	b, err := spiffebundle.Parse(f.TrustDomain, data)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: the answer is not a SPIFFE bundle: %w", f.BundleEndpointURL, err)
	}
	if err := CheckBundle(f.TrustDomain, b); err != nil {
		return nil, fmt.Errorf("refused the bundle from %s: %w", f.BundleEndpointURL, err)
	}
	return b, nil
}
