package helper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-id/signet/internal/atomicfile"
	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/credtemplate"
)

// unknownLifetime stands in for the lifetime of a lease whose expiry the
// broker did not state in a form the helper reads (the broker's own
// default_ttl default).
const unknownLifetime = 15 * time.Minute

// maxBackoff bounds the wait between the daemon's attempts to get a
// credential it could not get.
const maxBackoff = 30 * time.Second

// parseTemplates reads and parses the template file of every credential.
func parseTemplates(creds []Credential) ([]*credtemplate.Template, error) {
	var errs []error
	out := make([]*credtemplate.Template, len(creds))
	for i, cr := range creds {
		key := fmt.Sprintf("credentials[%d].template", i)
		text, err := config.ReadFile(key, cr.Template)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if out[i], err = credtemplate.Parse(key, string(text)); err != nil {
			errs = append(errs, fmt.Errorf("%w (in %s)", err, cr.Template))
		}
	}
	return out, errors.Join(errs...)
}

// permanentError is a failure that trying again will not cure: the
// broker's refusal, or a template that does not fit the credential.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func isPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// brokerURL resolves the broker's base URL as `signet credential get`
// does: broker_url, else $SIGNET_BROKER_URL, else what the agent on the
// helper's socket learned from its server.
func (h *Helper) brokerURL(ctx context.Context) (*url.URL, error) {
	return brokerclient.ResolveURL(ctx, "broker_url", h.cfg.BrokerURL, brokerclient.FromAgent(h.opts.Addr))
}

// writeCredential requests credentials[i] from bc, renders it through its
// template and writes its file; it returns the lease's expiry. A refusal
// or a template error is a *permanentError.
func (h *Helper) writeCredential(ctx context.Context, bc *brokerclient.Client, i int) (time.Time, error) {
	cr := h.cfg.Credentials[i]
	res, err := bc.Get(ctx, brokerclient.Request{Credential: cr.Name, Context: cr.Context, TTL: time.Duration(cr.TTL)})
	switch {
	case brokerclient.IsDenied(err):
		return time.Time{}, &permanentError{fmt.Errorf("credentials[%d] %s: the broker at %s refused: %w", i, cr.Name, bc.Host(), err)}
	case err != nil:
		return time.Time{}, fmt.Errorf("credentials[%d] %s: %w", i, cr.Name, err)
	}
	out, err := h.tmpls[i].Execute(credtemplate.Fields(res.LeaseID, res.Credential, res.ExpiresAt, res.Data))
	if err != nil {
		return time.Time{}, &permanentError{fmt.Errorf("credential %s: %w", cr.Name, err)}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := atomicfile.WriteFile(cr.File, out, 0o600); err != nil {
		return time.Time{}, fmt.Errorf("credentials[%d].file: %w", i, err)
	}
	exp := res.Expiry()
	h.log.Info("credential file written", slog.String(logKeyCredential, cr.Name), slog.String(logKeyFile, cr.File),
		slog.String(logKeyExpires, res.ExpiresAt))
	return exp, nil
}

// renewAfter is how long after now to replace a lease that expires at exp:
// at two thirds of its remaining lifetime, and not sooner than floor. A
// zero exp (not stated) counts as unknownLifetime.
func renewAfter(now, exp time.Time, floor time.Duration) time.Duration {
	life := exp.Sub(now)
	if exp.IsZero() {
		life = unknownLifetime
	}
	return max(life*2/3, floor)
}

// credentialsLoop keeps every credential file fresh once the first X.509
// context arrived: it resolves the broker's URL (retrying), then runs
// credentialLoop for each credential. It returns a template error at a
// credential's first render, nil when ctx is done.
func (h *Helper) credentialsLoop(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-h.firstX509:
	}
	var u *url.URL
	if !h.keepTrying(ctx, "broker url not resolved; retrying", func() (err error) {
		u, err = h.brokerURL(ctx)
		return err
	}) {
		return nil
	}
	bc, err := brokerclient.New(u, liveSource{h})
	if err != nil {
		return err
	}
	defer bc.Close()
	h.log.Info("requesting credentials", slog.String(logKeyBroker, u.String()), slog.Int(logKeyCount, len(h.cfg.Credentials)))
	errc := make(chan error, len(h.cfg.Credentials))
	for i := range h.cfg.Credentials {
		go func() { errc <- h.credentialLoop(ctx, bc, i) }()
	}
	var errs []error
	for range h.cfg.Credentials {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

// keepTrying calls f until it succeeds (true) or ctx is done (false),
// logging each failure with msg and backing off from Retry to maxBackoff.
func (h *Helper) keepTrying(ctx context.Context, msg string, f func() error) bool {
	wait := h.opts.Retry
	for {
		err := f()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		h.log.Warn(msg, slog.String(logKeyErr, err.Error()))
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(wait*2, max(maxBackoff, h.opts.Retry))
	}
}

// credentialLoop keeps credentials[i]'s file fresh: a new lease at two
// thirds of the current one's lifetime. Failures are logged and retried,
// backing off to maxBackoff; a template that does not fit the credential
// at its first render ends the loop with that error.
func (h *Helper) credentialLoop(ctx context.Context, bc *brokerclient.Client, i int) error {
	cr := h.cfg.Credentials[i]
	source := "credential:" + cr.File
	backoff := h.opts.Retry
	first := true
	for {
		h.begin()
		exp, err := h.writeCredential(ctx, bc, i)
		now := time.Now()
		h.done(source, err == nil)
		var wait time.Duration
		switch {
		case err == nil:
			first, backoff = false, h.opts.Retry
			wait = renewAfter(now, exp, h.opts.Retry)
		case ctx.Err() != nil:
			return nil
		case first && isTemplateError(err):
			return err
		default:
			h.log.Error("credential file not updated", slog.String(logKeyCredential, cr.Name), slog.String(logKeyFile, cr.File),
				slog.String(logKeyErr, err.Error()))
			wait, backoff = backoff, min(backoff*2, max(maxBackoff, h.opts.Retry))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func isTemplateError(err error) bool {
	return isPermanent(err) && !brokerclient.IsDenied(err)
}

// contextSource is the brokerclient.Source of one X.509 context: its
// default SVID and its bundles.
type contextSource struct{ x *workloadapi.X509Context }

func (s contextSource) GetX509SVID() (*x509svid.SVID, error) { return s.x.DefaultSVID(), nil }

func (s contextSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.x.Bundles.GetX509BundleForTrustDomain(td)
}

// liveSource is the brokerclient.Source of the latest X.509 context the
// helper's Workload API watch delivered, so that the broker client
// presents a rotated SVID on its next connection.
type liveSource struct{ h *Helper }

func (s liveSource) current() (*workloadapi.X509Context, error) {
	x := s.h.latest.Load()
	if x == nil {
		return nil, errors.New("no X.509-SVID from the agent yet")
	}
	return x, nil
}

func (s liveSource) GetX509SVID() (*x509svid.SVID, error) {
	x, err := s.current()
	if err != nil {
		return nil, err
	}
	return x.DefaultSVID(), nil
}

func (s liveSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	x, err := s.current()
	if err != nil {
		return nil, err
	}
	return x.Bundles.GetX509BundleForTrustDomain(td)
}

var (
	_ brokerclient.Source = contextSource{}
	_ brokerclient.Source = liveSource{}
)
