package workload

import (
	"log/slog"

	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// FetchX509SVID streams the caller's X.509-SVIDs with their trust domain
// bundles and the federated bundles.
func (a *api) FetchX509SVID(_ *workloadpb.X509SVIDRequest, stream grpc.ServerStreamingServer[workloadpb.X509SVIDResponse]) error {
	ctx := stream.Context()
	deadline := a.s.readyDeadline()
	if err := a.s.awaitReady(ctx, deadline); err != nil {
		return err
	}
	p, at, err := a.s.attestKeyed(ctx)
	if err != nil {
		return err
	}
	sels, key := at.sels, at.key
	return watch(ctx, a, p, deadline,
		func(changed <-chan struct{}) (prepared[*workloadpb.X509SVIDResponse], error) {
			return cached(&a.s.x509SVIDs, key, changed, func() (prepared[*workloadpb.X509SVIDResponse], error) {
				return prepareBuilt(a.s.x509SVIDResponse(sels))
			})
		},
		func(resp prepared[*workloadpb.X509SVIDResponse]) error {
			if a.s.log.Enabled(ctx, slog.LevelDebug) {
				ids := make([]string, len(resp.msg.Svids))
				for i, svid := range resp.msg.Svids {
					ids[i] = svid.SpiffeId
				}
				a.s.log.Debug("x509-svids sent", slog.Any(logKeySVIDs, ids), slog.String(logKeyPeer, p.String()))
			}
			return stream.SendMsg(resp.enc)
		})
}

// FetchX509Bundles streams the X.509 bundles of the trust domains the
// caller may see (see bundlesFor) to callers that have an identity.
func (a *api) FetchX509Bundles(_ *workloadpb.X509BundlesRequest, stream grpc.ServerStreamingServer[workloadpb.X509BundlesResponse]) error {
	ctx := stream.Context()
	deadline := a.s.readyDeadline()
	if err := a.s.awaitReady(ctx, deadline); err != nil {
		return err
	}
	p, at, err := a.s.attestKeyed(ctx)
	if err != nil {
		return err
	}
	sels, key := at.sels, at.key
	return watch(ctx, a, p, deadline,
		func(changed <-chan struct{}) (prepared[*workloadpb.X509BundlesResponse], error) {
			return cached(&a.s.x509Bundles, key, changed, func() (prepared[*workloadpb.X509BundlesResponse], error) {
				return prepareBuilt(a.s.x509BundlesResponse(sels))
			})
		},
		func(resp prepared[*workloadpb.X509BundlesResponse]) error { return stream.SendMsg(resp.enc) })
}

// x509SVIDResponse builds the complete X509SVIDResponse for sels. SVIDs that
// cannot be served (hint already used or too long, no bundle for their trust
// domain, unusable key or chain) are left out and logged; if none remains of
// a non-empty set the source is inconsistent and the caller gets Unavailable.
func (s *Server) x509SVIDResponse(sels []model.Selector) (*workloadpb.X509SVIDResponse, error) {
	svids := s.src.X509SVIDs(sels)
	if len(svids) == 0 {
		return nil, s.noIdentity(sels)
	}
	bs := newBundleSet(s.bundlesFor(sels))
	resp := &workloadpb.X509SVIDResponse{Svids: make([]*workloadpb.X509SVID, 0, len(svids))}
	hints := make(map[string]bool, len(svids))
	bundleDER := make(map[spiffeid.TrustDomain][]byte, 1)
	for _, svid := range svids {
		td := svid.ID.TrustDomain()
		switch {
		case svid.ID.IsZero() || len(svid.ChainDER) == 0 || len(svid.KeyDER) == 0:
			s.skipSVID(svid, "incomplete SVID: no SPIFFE ID, chain or key")
			continue
		case len(svid.Hint) > maxHintLen:
			s.skipSVID(svid, "hint longer than 1024 bytes")
			continue
		case svid.Hint != "" && hints[svid.Hint]:
			s.skipSVID(svid, "hint already used by an earlier SVID")
			continue
		case bs.byTD[td] == nil || len(bs.byTD[td].X509Authorities()) == 0:
			s.skipSVID(svid, "no X.509 bundle for the SVID's trust domain")
			continue
		}
		der, ok := bundleDER[td]
		if !ok {
			der = concatDER(bs.byTD[td].X509Authorities())
			bundleDER[td] = der
		}
		resp.Svids = append(resp.Svids, &workloadpb.X509SVID{
			SpiffeId:    svid.ID.String(),
			X509Svid:    svid.ChainDER,
			X509SvidKey: svid.KeyDER,
			Bundle:      der,
			Hint:        svid.Hint,
		})
		if svid.Hint != "" {
			hints[svid.Hint] = true
		}
	}
	if len(resp.Svids) == 0 {
		return nil, errkind.New(errkind.Unavailable, "identities not ready to serve; retry with backoff")
	}
	for _, b := range bs.list {
		if _, served := bundleDER[b.TrustDomain()]; served {
			continue
		}
		if certs := b.X509Authorities(); len(certs) > 0 {
			if resp.FederatedBundles == nil {
				resp.FederatedBundles = make(map[string][]byte)
			}
			resp.FederatedBundles[b.TrustDomain().IDString()] = concatDER(certs)
		}
	}
	return resp, nil
}

func (s *Server) skipSVID(svid X509SVID, why string) {
	s.log.Warn("x509-svid not served: "+why, slog.Any(logKeySVID, svid))
}

// x509BundlesResponse builds the X509BundlesResponse for a caller with
// selectors sels: the X.509 authorities of every trust domain it may see,
// the own trust domain always included.
func (s *Server) x509BundlesResponse(sels []model.Selector) (*workloadpb.X509BundlesResponse, error) {
	if len(s.src.X509SVIDs(sels)) == 0 {
		return nil, s.noIdentity(sels)
	}
	bs := newBundleSet(s.bundlesFor(sels))
	own := bs.own()
	if own == nil {
		return nil, errNotReady
	}
	resp := &workloadpb.X509BundlesResponse{Bundles: make(map[string][]byte, len(bs.list))}
	for _, b := range bs.list {
		if certs := b.X509Authorities(); len(certs) > 0 || b == own {
			resp.Bundles[b.TrustDomain().IDString()] = concatDER(certs)
		}
	}
	return resp, nil
}
