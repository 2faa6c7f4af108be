package ciclient

import (
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workload"
	"github.com/signet-id/signet/internal/workloadattest"
)

// SessionSelectorType is the selector type of signet ci run's private
// Workload API: callers running as the same user get the job's SVIDs.
const SessionSelectorType = "ci_run"

// SessionAttestor admits callers of the private socket that run as this
// process's user (the socket's directory is private to it as well).
type SessionAttestor struct{}

// Name implements workloadattest.Attestor.
func (SessionAttestor) Name() string { return SessionSelectorType }

// Attest implements workloadattest.Attestor.
func (SessionAttestor) Attest(_ context.Context, p workloadattest.Peer) ([]model.Selector, error) {
	if p.UID != uint32(os.Getuid()) {
		return nil, nil
	}
	return []model.Selector{sessionSelector()}, nil
}

func sessionSelector() model.Selector {
	return model.Selector{Type: SessionSelectorType, Value: "uid:" + strconv.Itoa(os.Getuid())}
}

// Source serves the job's SVID through internal/workload's server: the
// X509-SVID of the exchange, JWT-SVIDs traded for it over mTLS (cached to
// half their life), and the trust bundle. Refresh exchanges a CI token
// again; Run does so before the SVID expires while the token source can
// give fresh tokens.
type Source struct {
	Client   *Client
	Tokens   TokenSource
	Audience string // the CI token's audience
	SPIFFEID string // optional entry choice
	Log      *slog.Logger

	mu      sync.Mutex
	svid    *SVID
	fetched time.Time // when svid was received
	x509    workload.X509SVID
	changed chan struct{}
	jwts    map[string]workload.JWTSVID
}

var _ workload.Source = (*Source)(nil)

// Refresh fetches a CI token and exchanges it for a new X509-SVID.
func (s *Source) Refresh(ctx context.Context) error {
	tok, err := s.Tokens.Get(ctx, s.Audience)
	if err != nil {
		return err
	}
	svid, err := s.Client.ExchangeX509(ctx, tok, s.SPIFFEID)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(svid.Key)
	if err != nil {
		return err
	}
	var chain []byte
	for _, c := range svid.Chain {
		chain = append(chain, c.Raw...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.svid, s.fetched = svid, time.Now()
	s.x509 = workload.X509SVID{EntryID: "ci", ID: svid.ID, ChainDER: chain, KeyDER: keyDER, ExpiresAt: svid.Chain[0].NotAfter}
	s.jwts = map[string]workload.JWTSVID{}
	if s.changed != nil {
		close(s.changed)
	}
	s.changed = make(chan struct{})
	return nil
}

// SVID is the current X509-SVID.
func (s *Source) SVID() *SVID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svid
}

// Run renews the SVID at two thirds of its remaining life (from receipt) until ctx is done, when
// the token source gives fresh tokens; otherwise it only warns before the
// SVID expires.
func (s *Source) Run(ctx context.Context) {
	for {
		s.mu.Lock()
		leaf, fetched := s.svid.Chain[0], s.fetched
		s.mu.Unlock()
		// NotBefore is backdated for clock skew; count from receipt.
		at := fetched.Add(leaf.NotAfter.Sub(fetched) * 2 / 3)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		if !s.Tokens.Fresh {
			s.Log.Warn("the SVID expires soon and the CI token cannot be renewed from "+s.Tokens.Describe, "expires_at", leaf.NotAfter)
			select {
			case <-ctx.Done():
			case <-time.After(time.Until(leaf.NotAfter)):
			}
			return
		}
		for attempt := 0; ; attempt++ {
			err := s.Refresh(ctx)
			if err == nil {
				s.Log.Info("renewed the job's SVID", "spiffe_id", s.SVID().ID.String(), "expires_at", s.SVID().Chain[0].NotAfter)
				break
			}
			s.Log.Warn("renew the job's SVID", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(time.Duration(attempt+1)*2*time.Second, 30*time.Second)):
			}
			if time.Now().After(leaf.NotAfter) {
				break
			}
		}
	}
}

// Ready implements workload.Source.
func (s *Source) Ready() bool { return s.SVID() != nil }

func allowed(sels []model.Selector) bool { return slices.Contains(sels, sessionSelector()) }

// X509SVIDs implements workload.Source.
func (s *Source) X509SVIDs(sels []model.Selector) []workload.X509SVID {
	if !allowed(sels) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svid == nil || !time.Now().Before(s.x509.ExpiresAt) {
		return nil // an expired SVID is no identity
	}
	return []workload.X509SVID{s.x509}
}

// FetchJWTSVIDs implements workload.Source.
func (s *Source) FetchJWTSVIDs(ctx context.Context, sels []model.Selector, id spiffeid.ID, audience []string) ([]workload.JWTSVID, error) {
	svid := s.SVID()
	if !allowed(sels) || svid == nil || (!id.IsZero() && id != svid.ID) || !time.Now().Before(svid.Chain[0].NotAfter) {
		return nil, nil
	}
	key := strings.Join(audience, "\x00")
	s.mu.Lock()
	cached, ok := s.jwts[key]
	s.mu.Unlock()
	if ok && time.Until(cached.ExpiresAt) > 30*time.Second {
		return []workload.JWTSVID{cached}, nil
	}
	tok, exp, err := s.Client.JWT(ctx, svid, audience)
	if err != nil {
		return nil, errkind.New(errkind.Unavailable, "fetch jwt-svid: %v", err)
	}
	j := workload.JWTSVID{ID: svid.ID, Token: tok, ExpiresAt: exp}
	s.mu.Lock()
	if s.svid == svid {
		s.jwts[key] = j
	}
	s.mu.Unlock()
	return []workload.JWTSVID{j}, nil
}

// Bundles implements workload.Source.
func (s *Source) Bundles() []*spiffebundle.Bundle {
	svid := s.SVID()
	if svid == nil {
		return nil
	}
	return []*spiffebundle.Bundle{svid.SPIFFEBundle}
}

// Changed implements workload.Source.
func (s *Source) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}
