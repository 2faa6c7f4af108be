package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/federation"
)

// federationInterval is how often the server looks for due federated
// bundle refreshes and reloads the federated bundles from the store (which
// every replica does: one fetches, all serve).
const federationInterval = time.Second

// federationRefresher returns the server's refresher, made on first use.
func (s *Server) federationRefresher() *federation.Refresher {
	if s.fed == nil {
		s.fed = &federation.Refresher{Store: s.store, Log: s.log.With("component", "federation"), Now: s.cfg.Now}
	}
	return s.fed
}

// FederatedBundles returns the last good bundle of every federated trust
// domain, as last loaded from the store; nil before the first load.
func (s *Server) FederatedBundles() map[spiffeid.TrustDomain]*spiffebundle.Bundle {
	if m := s.fedBundles.Load(); m != nil {
		return *m
	}
	return nil
}

// runFederation refreshes due remote bundles and reloads the federated
// bundles every federationInterval until ctx is done.
func (s *Server) runFederation(ctx context.Context) error {
	r := s.federationRefresher()
	t := time.NewTicker(federationInterval)
	defer t.Stop()
	for {
		r.RefreshDue(ctx)
		s.loadFederatedBundles(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// loadFederatedBundles reads the relationships' last good bundles from the
// store; on a read error the previous set stays.
func (s *Server) loadFederatedBundles(ctx context.Context) {
	feds, err := s.store.ListFederations(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("federation: load federated bundles", "error", err)
		}
		return
	}
	m := make(map[spiffeid.TrustDomain]*spiffebundle.Bundle, len(feds))
	for _, f := range feds {
		if len(f.Bundle) == 0 {
			continue
		}
		b, err := spiffebundle.Parse(f.TrustDomain, f.Bundle)
		if err != nil {
			s.log.Warn("federation: stored bundle does not parse", "trust_domain", f.TrustDomain.Name(), "error", err)
			continue
		}
		m[f.TrustDomain] = b
	}
	s.fedBundles.Store(&m)
}

// GetBundleForTrustDomain implements spiffebundle.Source over the own
// bundle, for the bundle endpoint.
func (s *Server) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	b := s.bundle.Load()
	if b == nil || td != s.cfg.TrustDomain {
		return nil, fmt.Errorf("no bundle for trust domain %q", td)
	}
	return b, nil
}

// serveBundleEndpoint serves GET /bundle alone on bundle_endpoint_address,
// presenting the server's own SVID (https_spiffe), until ctx is done.
func (s *Server) serveBundleEndpoint(ctx context.Context) error {
	h, err := federation.NewHandler(s.cfg.TrustDomain, s, edge.NewPeerLimiter(discoveryPerSecond, discoveryBurst))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(federation.Path, h)
	srv := edge.HTTPServer(mux, 0)
	srv.TLSConfig = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.tlsCert.Load(), nil },
		NextProtos:     []string{"h2", "http/1.1"},
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err = srv.ServeTLS(edge.Limits{}.Listen(s.bundleLn), "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
