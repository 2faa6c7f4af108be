package server

import (
	"github.com/signet-id/signet/internal/tokenapi"
	"github.com/signet-id/signet/internal/tokenapi/svidissuer"
)

// buildTokenAPI assembles the token endpoint's seam: subject verifiers and
// issuers by requested_token_type.
func (s *Server) buildTokenAPI() error {
	s.tokenVerifiers = append(s.tokenVerifiers, s.cfg.TokenVerifiers...)
	s.tokenIssuers = map[string]tokenapi.Issuer{}
	svidissuer.New(svidissuer.Config{
		CA: s.ca, Entries: s.cache, Store: s.store, Bundle: s.Bundle,
		DefaultX509TTL: s.cfg.DefaultX509TTL, DefaultJWTTTL: s.cfg.DefaultJWTTTL,
		Now: s.cfg.Now, Log: s.log.With("component", "token endpoint"),
	}).Register(s.tokenIssuers)
	return nil
}
