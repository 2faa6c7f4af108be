package server

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	sshprovider "github.com/signet-id/signet/internal/broker/provider/ssh"
	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/federation"
	"github.com/signet-id/signet/internal/keyfile"
	"github.com/signet-id/signet/internal/oidcdiscovery"
	"github.com/signet-id/signet/internal/telemetry"
	"github.com/signet-id/signet/internal/tokenapi"
)

// DefaultTokenRatePerSecond is the token endpoint's requests per client
// address (burst twice that): generous enough for a fleet of CI jobs behind
// one NAT, not a flood.
const DefaultTokenRatePerSecond = 200

// loadHTTPCert reads http_tls's certificate and key, when configured.
func loadHTTPCert(certFile, keyFile string) (*tls.Certificate, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("invalid server configuration: http_tls: set both cert_file and key_file, or neither (to present the server's own SVID)")
	}
	return loadTLSCert("http_tls", certFile, keyFile)
}

// loadTLSCert reads a certificate chain and its private key (0600) for a
// listener, naming section's keys in errors.
func loadTLSCert(section, certFile, keyFile string) (*tls.Certificate, error) {
	pemCerts, err := keyfile.Read(certFile)
	if err != nil {
		return nil, fmt.Errorf("%s.cert_file: %w", section, err)
	}
	certs, err := keyfile.Certificates(certFile, pemCerts)
	if err != nil {
		return nil, fmt.Errorf("%s.cert_file: %w", section, err)
	}
	pemKey, err := keyfile.ReadPrivate(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s.key_file: %w", section, err)
	}
	key, err := keyfile.Signer(keyFile, pemKey)
	clear(pemKey)
	if err != nil {
		return nil, fmt.Errorf("%s.key_file: %w", section, err)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("%s: key_file %s is not the key of cert_file %s's first certificate", section, keyFile, certFile)
	}
	return cert, nil
}

// httpTLSConfig presents http_tls's certificate (or the server's own SVID,
// renewed with it) and asks for, but does not require, a client
// certificate: one presented must be an X509-SVID of the trust domain, and
// the token endpoint then knows the caller by it.
func (s *Server) httpTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if s.httpCert != nil {
				return s.httpCert, nil
			}
			return s.tlsCert.Load(), nil
		},
		ClientAuth: tls.RequestClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return nil
			}
			_, _, err := x509svid.ParseAndVerify(raw, s, x509svid.WithTime(s.cfg.Now()))
			return err
		},
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// Discovery requests per client address: relying parties fetch the two
// documents every few minutes; a small burst covers a fleet behind a NAT.
const (
	discoveryPerSecond = 50
	discoveryBurst     = 100
)

// httpHandler is the HTTPS listener's mux: the token endpoint and, with
// jwt_issuer, OIDC discovery.
func (s *Server) httpHandler() (http.Handler, error) {
	rate := s.cfg.TokenRatePerSecond
	if rate <= 0 {
		rate = DefaultTokenRatePerSecond
	}
	mux := http.NewServeMux()
	if s.cfg.JWTIssuer != "" {
		d, err := oidcdiscovery.New(oidcdiscovery.Config{
			Issuer: s.cfg.JWTIssuer, Bundle: s.Bundle,
			// internal/ca publishes a new JWT key a third of its lifetime
			// before it signs.
			KeyLead: s.cfg.JWTKeyTTL / 3,
			Limit:   edge.NewPeerLimiter(discoveryPerSecond, discoveryBurst),
		})
		if err != nil {
			return nil, err
		}
		for _, p := range d.Paths() {
			mux.Handle(p, d)
		}
	}
	// The SPIFFE bundle endpoint (federation): under https_web with
	// http_tls's certificate, under https_spiffe with the server's SVID.
	bundleHandler, err := federation.NewHandler(s.cfg.TrustDomain, s, edge.NewPeerLimiter(discoveryPerSecond, discoveryBurst))
	if err != nil {
		return nil, err
	}
	mux.Handle(federation.Path, http.MaxBytesHandler(bundleHandler, 0))
	mux.Handle(tokenapi.Path, tokenapi.New(tokenapi.Config{
		Verifiers: s.tokenVerifiers, Issuers: s.tokenIssuers, Peers: s,
		Limit: edge.NewPeerLimiter(rate, int(2*rate)), Now: s.cfg.Now,
		Observe: func(typ, code string) { s.metrics.tokenRequests.WithLabelValues(typ, code).Inc() },
		Log:     s.log.With("component", "token endpoint"),
	}))
	if len(s.sshCAs) > 0 {
		// Public: the SSH user CAs' keys and their KRL, for sshd hosts.
		h := limitPerPeer(edge.NewPeerLimiter(sshPerSecond, sshBurst), sshprovider.Handler(s.sshCAs, s.cfg.Now, s.revokedSSHLeases))
		mux.Handle(sshprovider.PathCA, h)
		mux.Handle(sshprovider.PathKRL, h)
	}
	return mux, nil
}

// Requests per second (and burst) each client address may make for the
// SSH CA keys and KRL: hosts poll them, a few times a minute at most.
const (
	sshPerSecond = 5
	sshBurst     = 20
)

// limitPerPeer answers 429 to a client address over l's rate.
func limitPerPeer(l *edge.PeerLimiter, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		if !l.AllowAddr(host) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveHTTP serves the HTTPS listener until ctx is done.
func (s *Server) serveHTTP(ctx context.Context) error {
	h, err := s.httpHandler()
	if err != nil {
		return err
	}
	srv := edge.HTTPServer(telemetry.HTTPHandler(s.cfg.TracerProvider, "https", h), tokenapi.MaxBodySize)
	srv.TLSConfig = s.httpTLSConfig()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err = srv.ServeTLS(edge.Limits{}.Listen(s.httpLn), "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
