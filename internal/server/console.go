package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/signet-id/signet/internal/console"
	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/telemetry"
)

// UIAddr is the console listener's address, or nil when it is off.
func (s *Server) UIAddr() net.Addr {
	if s.uiLn == nil {
		return nil
	}
	return s.uiLn.Addr()
}

// consoleTLSConfig presents the server's SVID and requires a client
// certificate; the console itself verifies it as an X509-SVID against the
// bundle and checks that its ID is an admin entry's.
func (s *Server) consoleTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.tlsCert.Load(), nil },
		ClientAuth:     tls.RequireAnyClientCert,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// serveConsole serves the web console on ui_address until ctx is done:
// plain HTTP for loopback clients, TLS with admin SVIDs (ui_mtls), or TLS
// with its own certificate and OIDC sign-in (ui_oidc).
func (s *Server) serveConsole(ctx context.Context) error {
	cfg := console.Config{
		Store: s.store, TrustDomain: s.cfg.TrustDomain, ServerID: s.serverID,
		DefaultX509TTL: s.cfg.DefaultX509TTL, DefaultJWTTTL: s.cfg.DefaultJWTTTL,
		Now: s.cfg.Now, Log: s.log.With("component", "console"),
	}
	var tlsConf *tls.Config
	switch {
	case s.cfg.UIMTLS:
		cfg.IsAdmin, cfg.Bundle = s.cache.IsAdmin, s
		tlsConf = s.consoleTLSConfig()
	case s.cfg.UIOIDC != nil:
		cfg.OIDC = s.cfg.UIOIDC
		cert, err := loadTLSCert("ui_tls", s.cfg.UITLSCertFile, s.cfg.UITLSKeyFile)
		if err != nil {
			return err
		}
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}, NextProtos: []string{"h2", "http/1.1"}}
	}
	c, err := console.New(cfg)
	if err != nil {
		return err
	}
	srv := edge.HTTPServer(telemetry.HTTPHandler(s.cfg.TracerProvider, "console", c), consoleMaxBody)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	ln := edge.Limits{MaxConnections: consoleConnections}.Listen(s.uiLn)
	s.log.Info(console.LogMsgListening, console.LogKeyAddr, s.uiLn.Addr().String(), "mtls", s.cfg.UIMTLS, "oidc", s.cfg.UIOIDC != nil)
	if tlsConf != nil {
		srv.TLSConfig = tlsConf
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// consoleConnections bounds the console's open connections: a handful of
// operators' browsers, not a fleet.
const consoleConnections = 256

// consoleMaxBody bounds request bodies: the console is read-only (GET).
const consoleMaxBody = 4 << 10
