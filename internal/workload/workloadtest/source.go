// Package workloadtest provides an in-memory workload.Source and a test CA
// that mints SVIDs and bundles following the SPIFFE profiles, for tests of
// the Workload API server and of its clients.
package workloadtest

import (
	"context"
	"crypto"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workload"
)

// DefaultJWTTTL is the lifetime of minted JWT-SVIDs when an Entry sets none.
const DefaultJWTTTL = 5 * time.Minute

// Entry is one identity the Source serves: the workloads whose selectors
// include Selectors get SVID, and JWT-SVIDs for SVID.ID.
type Entry struct {
	Selectors []model.Selector
	SVID      workload.X509SVID
	// JWTTTL is the lifetime of minted JWT-SVIDs; zero means DefaultJWTTTL.
	JWTTTL time.Duration
}

// Source is an in-memory workload.Source. The zero value is not usable; call
// NewSource. A new Source is not ready, has no entries, no bundles and no
// JWT signer. SetReady, SetEntries and SetBundles close the channel Changed
// returned. It is safe for concurrent use.
type Source struct {
	mu      sync.Mutex
	ready   bool
	entries []Entry
	bundles []*spiffebundle.Bundle
	signer  jose.Signer
	jwtErr  error
	health  error
	now     func() time.Time
	changed chan struct{}
}

var (
	_ workload.Source         = (*Source)(nil)
	_ workload.HealthReporter = (*Source)(nil)
)

// NewSource returns an empty Source that is not ready.
func NewSource() *Source {
	return &Source{now: time.Now, changed: make(chan struct{})}
}

// SetReady sets what Ready reports.
func (s *Source) SetReady(ready bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready = ready
	s.notify()
}

// SetHealth sets what Health reports (nil: healthy).
func (s *Source) SetHealth(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.health = err
}

// Health implements workload.HealthReporter.
func (s *Source) Health(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.health
}

// SetEntries replaces the entries. Each entry's selectors are put in
// canonical order.
func (s *Source) SetEntries(entries ...Entry) {
	cp := make([]Entry, len(entries))
	for i, e := range entries {
		e.Selectors = model.SortSelectors(slices.Clone(e.Selectors))
		cp[i] = e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = cp
	s.notify()
}

// SetBundles replaces the bundles: the own trust domain's first.
func (s *Source) SetBundles(bundles ...*spiffebundle.Bundle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bundles = slices.Clone(bundles)
	s.notify()
}

// SetJWTSigner sets the key JWT-SVIDs are signed with (ECDSA: ES256, ES384
// or ES512 by curve; RSA: RS256) and its key ID.
func (s *Source) SetJWTSigner(kid string, key crypto.Signer) error {
	alg, err := jwtAlgorithm(key)
	if err != nil {
		return err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid))
	if err != nil {
		return fmt.Errorf("jwt signer: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signer = signer
	return nil
}

// SetJWTError makes FetchJWTSVIDs fail with err (nil restores minting).
func (s *Source) SetJWTError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jwtErr = err
}

// SetClock sets the clock JWT-SVID lifetimes are computed from.
func (s *Source) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// notify closes the current Changed channel. s.mu must be held.
func (s *Source) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Ready reports what SetReady set.
func (s *Source) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// X509SVIDs returns the SVIDs of the entries whose selectors are a subset of
// sels, in entry order.
func (s *Source) X509SVIDs(sels []model.Selector) []workload.X509SVID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []workload.X509SVID
	for _, e := range s.entries {
		if model.WorkloadMatches(e.Selectors, sels) {
			out = append(out, e.SVID)
		}
	}
	return out
}

// FetchJWTSVIDs mints a JWT-SVID for the audience for each matching entry
// (only those for id when id is non-zero).
func (s *Source) FetchJWTSVIDs(ctx context.Context, sels []model.Selector, id spiffeid.ID, audience []string) ([]workload.JWTSVID, error) {
	s.mu.Lock()
	entries, signer, jwtErr, now := s.entries, s.signer, s.jwtErr, s.now()
	s.mu.Unlock()
	if jwtErr != nil {
		return nil, jwtErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []workload.JWTSVID
	for _, e := range entries {
		if !model.WorkloadMatches(e.Selectors, sels) || (!id.IsZero() && e.SVID.ID != id) {
			continue
		}
		if signer == nil {
			return nil, errkind.New(errkind.Unavailable, "no jwt signing key yet")
		}
		ttl := e.JWTTTL
		if ttl == 0 {
			ttl = DefaultJWTTTL
		}
		exp := now.Add(ttl).Truncate(time.Second)
		token, err := jwt.Signed(signer).Claims(jwt.Claims{
			Subject:  e.SVID.ID.String(),
			Audience: jwt.Audience(audience),
			IssuedAt: jwt.NewNumericDate(now),
			Expiry:   jwt.NewNumericDate(exp),
		}).Serialize()
		if err != nil {
			return nil, fmt.Errorf("sign jwt-svid for %s: %w", e.SVID.ID, err)
		}
		out = append(out, workload.JWTSVID{ID: e.SVID.ID, Token: token, ExpiresAt: exp, Hint: e.SVID.Hint})
	}
	return out, nil
}

// Bundles returns the bundles SetBundles set.
func (s *Source) Bundles() []*spiffebundle.Bundle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.bundles)
}

// Changed returns a channel closed by the next Set call.
func (s *Source) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}
