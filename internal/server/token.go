package server

import (
	"fmt"

	"github.com/signet-id/signet/internal/ci"
	"github.com/signet-id/signet/internal/tokenapi"
	"github.com/signet-id/signet/internal/tokenapi/svidissuer"
)

// buildTokenAPI assembles the token endpoint's seam: subject verifiers (the
// CI issuers of oidc_issuers, then Config.TokenVerifiers) and issuers by
// requested_token_type.
func (s *Server) buildTokenAPI() error {
	log := s.log.With("component", "token endpoint")
	v, err := ci.New(ci.Config{TrustDomain: s.cfg.TrustDomain, Issuers: s.cfg.OIDCIssuers, Replay: s.store, Now: s.cfg.Now, Log: log})
	if err != nil {
		return fmt.Errorf("invalid server configuration:\n%w", err)
	}
	if len(s.cfg.OIDCIssuers) > 0 {
		s.tokenVerifiers = append(s.tokenVerifiers, v)
	}
	s.tokenVerifiers = append(s.tokenVerifiers, s.cfg.TokenVerifiers...)
	s.tokenIssuers = map[string]tokenapi.Issuer{}
	svidissuer.New(svidissuer.Config{
		CA: s.ca, Entries: s.cache, Store: s.store, Bundle: s.Bundle, AgentlessParents: v.Parents(),
		DefaultX509TTL: s.cfg.DefaultX509TTL, DefaultJWTTTL: s.cfg.DefaultJWTTTL,
		Now: s.cfg.Now, Log: log,
	}).Register(s.tokenIssuers)
	return nil
}
