// Package sds serves Envoy's Secret Discovery Service
// (envoy.service.secret.v3.SecretDiscoveryService) on the agent's Workload
// API socket, so that an Envoy beside a workload gets the workload's
// X.509-SVIDs and trust bundles with no helper in between.
//
// Callers are identified as every Workload API caller is (the kernel's peer
// credentials and the agent's workload attestors); a caller gets only its
// own SVIDs. Resource names follow the reference implementation's, so that
// Envoy configurations written for it work unchanged:
//
//   - a SPIFFE ID the caller holds: a tls_certificate secret with that
//     SVID's chain and key;
//   - "default": a tls_certificate secret with the caller's default (first)
//     SVID;
//   - "ROOTCA": a validation_context with the agent's own trust domain's
//     X.509 authorities as trusted_ca;
//   - "ALL": a validation_context whose custom validator is Envoy's SPIFFE
//     validator (envoy.tls.cert_validator.spiffe) with every trust domain
//     the caller may see (the agent's own and those the caller's entries
//     federate with: workload.Host.BundlesFor) and its authorities;
//   - a trust domain's ID ("spiffe://example.org") or name ("example.org"):
//     a validation_context with that trust domain's authorities.
//
// A request that names no resource gets every SVID of the caller (by SPIFFE
// ID), ROOTCA, ALL and every trust domain by ID. Names the caller cannot
// have are left out of stream responses (Envoy keeps waiting for them) and
// logged; FetchSecrets fails with NotFound naming them.
//
// StreamSecrets sends a response when the request's names change and
// whenever the caller's SVIDs or the bundles change (a rotated SVID, a new
// authority); every response is complete for the names requested, with a
// new version_info and nonce. ACKs are recognised by their nonce and
// answered with nothing; a NACK is logged. DeltaSecrets is not offered
// (Unimplemented): Envoy uses StreamSecrets unless told otherwise.
//
// Private keys are sent only to the caller they belong to and never logged.
//
// The messages are internal/gen/signet/envoysds/v1's: Envoy's field numbers
// and wire encoding, without linking go-control-plane's Go types of Envoy's
// whole API (they register hundreds of descriptors at start-up, which the
// slim agent would pay for in memory on every node). The gRPC service is
// described by hand under Envoy's name (see desc.go); wire_test.go checks
// the encoding byte for byte against go-control-plane's.
package sds

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/signet-id/signet/internal/errkind"
	sdsv1 "github.com/signet-id/signet/internal/gen/signet/envoysds/v1"
	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workload"
)

// Resource names with a fixed meaning, as the reference implementation
// names them.
const (
	DefaultSVIDName   = "default"
	RootCAName        = "ROOTCA"
	AllBundlesName    = "ALL"
	SecretTypeURL     = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
	spiffeConfigURL   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig"
	spiffeValidator   = "envoy.tls.cert_validator.spiffe"
	maxResourceNames  = 256
	maxResourceLength = 2048
)

// Log keys.
const (
	logKeyPeer    = "peer"
	logKeyMissing = "missing"
	logKeyNACK    = "error_detail"
	logKeyVersion = "version"
)

// Service is Envoy SDS as a workload.Service. The zero value is not usable;
// create it with New.
type Service struct {
	log *slog.Logger
}

var _ workload.Service = (*Service)(nil)

// New returns the SDS service. A nil logger discards.
func New(log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{log: log.With("component", "envoy_sds")}
}

// ServiceName implements workload.Service.
func (*Service) ServiceName() string { return serviceDesc.ServiceName }

// Register implements workload.Service.
func (s *Service) Register(r grpc.ServiceRegistrar, h workload.Host) {
	r.RegisterService(&serviceDesc, &handler{log: s.log, h: h})
}

type handler struct {
	log *slog.Logger
	h   workload.Host
}

// FetchSecrets answers one request with every secret it names; a name the
// caller cannot have fails the call with NotFound.
func (h *handler) FetchSecrets(ctx context.Context, req *sdsv1.DiscoveryRequest) (*sdsv1.DiscoveryResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	if err := h.h.AwaitReady(ctx); err != nil {
		return nil, err
	}
	_, sels, err := h.h.Attest(ctx)
	if err != nil {
		return nil, err
	}
	secrets, missing, err := h.build(sels, req.ResourceNames)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, errkind.New(errkind.NotFound, "no secret for resource names %q: not an SVID of the caller, %q, %q, %q or a known trust domain",
			missing, DefaultSVIDName, RootCAName, AllBundlesName)
	}
	return response(secrets, "1", "1")
}

// StreamSecrets runs an SDS stream for the caller (see the package doc).
func (h *handler) StreamSecrets(stream grpc.BidiStreamingServer[sdsv1.DiscoveryRequest, sdsv1.DiscoveryResponse]) error {
	ctx := stream.Context()
	src := h.h.Source()
	if err := h.h.AwaitReady(ctx); err != nil {
		return err
	}
	p, sels, err := h.h.Attest(ctx)
	if err != nil {
		return err
	}

	reqs := make(chan *sdsv1.DiscoveryRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()

	var (
		names      []string
		subscribed bool
		version    int
		nonce      string
		last       []*sdsv1.Secret
		changed    = src.Changed()
	)
	send := func(force bool) error {
		secrets, missing, err := h.build(sels, names)
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			h.log.Warn("envoy asked for secrets it cannot have", slog.String(logKeyMissing, logsafe.Truncate(fmt.Sprint(missing))),
				slog.String(logKeyPeer, p.String()))
		}
		if !force && equalSecrets(secrets, last) {
			return nil
		}
		version++
		nonce = strconv.Itoa(version)
		resp, err := response(secrets, strconv.Itoa(version), nonce)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		last = secrets
		return nil
	}
	for {
		select {
		case req := <-reqs:
			if err := checkRequest(req); err != nil {
				return err
			}
			if req.ErrorDetail != nil {
				h.log.Warn("envoy rejected secrets", slog.String(logKeyNACK, logsafe.Truncate(req.ErrorDetail.GetMessage())),
					slog.String(logKeyVersion, req.VersionInfo), slog.String(logKeyPeer, p.String()))
				continue
			}
			if subscribed && req.ResponseNonce != nonce {
				continue // stale: answers an earlier response
			}
			if subscribed && slices.Equal(req.ResourceNames, names) {
				continue // ACK
			}
			names, subscribed = slices.Clone(req.ResourceNames), true
			if err := send(true); err != nil {
				return err
			}
		case <-changed:
			changed = src.Changed()
			if err := p.CheckAlive(); err != nil {
				return err
			}
			if !subscribed {
				continue
			}
			if err := send(false); err != nil {
				return err
			}
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-h.h.Stopping():
			return workload.ErrStopping
		}
	}
}

// checkRequest refuses requests for other resource types and oversized
// name lists.
func checkRequest(req *sdsv1.DiscoveryRequest) error {
	if req.TypeUrl != "" && req.TypeUrl != SecretTypeURL {
		return errkind.New(errkind.InvalidArgument, "type_url %q: this service serves only %s", logsafe.Truncate(req.TypeUrl), SecretTypeURL)
	}
	if len(req.ResourceNames) > maxResourceNames {
		return errkind.New(errkind.InvalidArgument, "resource_names: %d names, at most %d are accepted", len(req.ResourceNames), maxResourceNames)
	}
	for _, n := range req.ResourceNames {
		if len(n) > maxResourceLength {
			return errkind.New(errkind.InvalidArgument, "resource_names: a name of %d bytes, at most %d are accepted", len(n), maxResourceLength)
		}
	}
	return nil
}

// build returns the secrets names ask for (every one the caller may have
// when names is empty), in the order asked, and the names it has nothing
// for.
func (h *handler) build(sels []model.Selector, names []string) (secrets []*sdsv1.Secret, missing []string, err error) {
	src := h.h.Source()
	svids := src.X509SVIDs(sels)
	if len(svids) == 0 {
		return nil, nil, h.h.NoIdentity(sels)
	}
	bundles := h.h.BundlesFor(sels)
	if len(bundles) == 0 || bundles[0] == nil {
		return nil, nil, workload.ErrNotReady
	}
	byTD := make(map[spiffeid.TrustDomain]*spiffebundle.Bundle, len(bundles))
	var tds []*spiffebundle.Bundle
	for _, b := range bundles {
		if b != nil && byTD[b.TrustDomain()] == nil {
			byTD[b.TrustDomain()] = b
			tds = append(tds, b)
		}
	}
	if len(names) == 0 {
		for _, s := range svids {
			names = append(names, s.ID.String())
		}
		names = append(names, RootCAName, AllBundlesName)
		for _, b := range tds {
			names = append(names, b.TrustDomain().IDString())
		}
	}
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		sec, err := secretFor(name, svids, tds, byTD)
		if err != nil {
			return nil, nil, err
		}
		if sec == nil {
			missing = append(missing, name)
			continue
		}
		secrets = append(secrets, sec)
	}
	return secrets, missing, nil
}

// secretFor builds the secret called name, nil when there is none.
func secretFor(name string, svids []workload.X509SVID, tds []*spiffebundle.Bundle, byTD map[spiffeid.TrustDomain]*spiffebundle.Bundle) (*sdsv1.Secret, error) {
	switch name {
	case DefaultSVIDName:
		return tlsSecret(name, svids[0])
	case RootCAName:
		return validationSecret(name, tds[0]), nil
	case AllBundlesName:
		return allSecret(tds)
	}
	for _, s := range svids {
		if s.ID.String() == name {
			return tlsSecret(name, s)
		}
	}
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil || (name != td.Name() && name != td.IDString()) {
		return nil, nil // not a trust domain (a SPIFFE ID with a path, say)
	}
	if b := byTD[td]; b != nil {
		return validationSecret(name, b), nil
	}
	return nil, nil
}

func tlsSecret(name string, s workload.X509SVID) (*sdsv1.Secret, error) {
	certs, err := x509.ParseCertificates(s.ChainDER)
	if err != nil {
		return nil, fmt.Errorf("sds: parse chain of %s: %w", s.ID, err)
	}
	return &sdsv1.Secret{
		Name: name,
		Type: &sdsv1.Secret_TlsCertificate{TlsCertificate: &sdsv1.TlsCertificate{
			CertificateChain: inline(certsPEM(certs)),
			PrivateKey:       inline(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: s.KeyDER})),
		}},
	}, nil
}

func validationSecret(name string, b *spiffebundle.Bundle) *sdsv1.Secret {
	return &sdsv1.Secret{
		Name: name,
		Type: &sdsv1.Secret_ValidationContext{ValidationContext: &sdsv1.CertificateValidationContext{
			TrustedCa: inline(certsPEM(b.X509Authorities())),
		}},
	}
}

func allSecret(tds []*spiffebundle.Bundle) (*sdsv1.Secret, error) {
	cfg := &sdsv1.SPIFFECertValidatorConfig{}
	for _, b := range tds {
		cfg.TrustDomains = append(cfg.TrustDomains, &sdsv1.SPIFFECertValidatorConfig_TrustDomain{
			Name:        b.TrustDomain().Name(),
			TrustBundle: inline(certsPEM(b.X509Authorities())),
		})
	}
	typed, err := anyOf(spiffeConfigURL, cfg)
	if err != nil {
		return nil, fmt.Errorf("sds: encode spiffe validator config: %w", err)
	}
	return &sdsv1.Secret{
		Name: AllBundlesName,
		Type: &sdsv1.Secret_ValidationContext{ValidationContext: &sdsv1.CertificateValidationContext{
			CustomValidatorConfig: &sdsv1.TypedExtensionConfig{Name: spiffeValidator, TypedConfig: typed},
		}},
	}, nil
}

func inline(b []byte) *sdsv1.DataSource {
	return &sdsv1.DataSource{Specifier: &sdsv1.DataSource_InlineBytes{InlineBytes: b}}
}

func certsPEM(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func equalSecrets(a, b []*sdsv1.Secret) bool {
	return slices.EqualFunc(a, b, func(x, y *sdsv1.Secret) bool { return proto.Equal(x, y) })
}

func response(secrets []*sdsv1.Secret, version, nonce string) (*sdsv1.DiscoveryResponse, error) {
	resp := &sdsv1.DiscoveryResponse{VersionInfo: version, TypeUrl: SecretTypeURL, Nonce: nonce}
	for _, s := range secrets {
		a, err := anyOf(SecretTypeURL, s)
		if err != nil {
			return nil, fmt.Errorf("sds: encode secret: %w", err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	return resp, nil
}

// anyOf packs m as an Any of Envoy's type url: m's own full name is
// Signet's (signet.envoysds.v1), its encoding Envoy's.
func anyOf(url string, m proto.Message) (*anypb.Any, error) {
	b, err := proto.Marshal(m) // as anypb.New

	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: url, Value: b}, nil
}
