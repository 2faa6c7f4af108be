package adminapi

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/federation"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	"github.com/signet-id/signet/internal/store"
)

// federationToProto converts a stored relationship; the stored bundle is
// re-read as SPIFFE bundle JSON.
func federationToProto(f store.Federation) (*adminv1.Federation, error) {
	out := &adminv1.Federation{
		TrustDomain: f.TrustDomain.Name(), BundleEndpointUrl: f.BundleEndpointURL, Profile: f.Profile,
		LastRefresh: apiconv.UnixOrZero(f.LastRefresh), LastAttempt: apiconv.UnixOrZero(f.LastAttempt),
		LastError: f.LastError, Failures: int64(f.Failures),
		NextRefresh: apiconv.UnixOrZero(f.NextRefresh), CreatedAt: apiconv.UnixOrZero(f.CreatedAt),
	}
	if !f.EndpointSPIFFEID.IsZero() {
		out.EndpointSpiffeId = f.EndpointSPIFFEID.String()
	}
	if len(f.Bundle) > 0 {
		b, err := spiffebundle.Parse(f.TrustDomain, f.Bundle)
		if err != nil {
			return nil, errkind.New(errkind.Internal, "stored bundle of %s: %v", f.TrustDomain.Name(), err)
		}
		if out.Bundle, err = apiconv.BundleToProto(b); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func parseTrustDomainField(s string) (spiffeid.TrustDomain, error) {
	if s == "" {
		return spiffeid.TrustDomain{}, errkind.New(errkind.InvalidArgument, "trust_domain: required")
	}
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil {
		return spiffeid.TrustDomain{}, errkind.New(errkind.InvalidArgument, "trust_domain %q: %v", s, err)
	}
	return td, nil
}

// CreateFederation stores a relationship after checking it (federation.
// Relationship.Validate); its first fetch is due at once.
func (a *Service) CreateFederation(ctx context.Context, req *adminv1.CreateFederationRequest) (*adminv1.Federation, error) {
	f, err := federation.Relationship{
		TrustDomain: req.GetTrustDomain(), BundleEndpointURL: req.GetBundleEndpointUrl(), Profile: req.GetProfile(),
		EndpointSPIFFEID: req.GetEndpointSpiffeId(), TrustBundle: req.GetTrustBundle(),
	}.Validate(a.cfg.TrustDomain)
	if err != nil {
		return nil, err
	}
	if err := a.cfg.Store.CreateFederation(ctx, f); err != nil {
		return nil, err
	}
	a.cfg.Changed(ctx)
	stored, err := a.cfg.Store.GetFederation(ctx, f.TrustDomain)
	if err != nil {
		return nil, err
	}
	return federationToProto(stored)
}

func (a *Service) ListFederations(ctx context.Context, req *adminv1.ListFederationsRequest) (*adminv1.ListFederationsResponse, error) {
	limit, err := pageLimit(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after := req.GetPageToken() // the last relationship's trust domain
	if after != "" {
		if _, err := spiffeid.TrustDomainFromString(after); err != nil {
			return nil, errkind.New(errkind.InvalidArgument,
				"page_token %q is not a federation page token: pass next_page_token of the previous page", after)
		}
	}
	feds, err := a.cfg.Store.ListFederationsPage(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListFederationsResponse{Federations: make([]*adminv1.Federation, 0, len(feds))}
	for _, f := range feds {
		pf, err := federationToProto(f)
		if err != nil {
			return nil, err
		}
		resp.Federations = append(resp.Federations, pf)
	}
	if len(feds) == limit {
		resp.NextPageToken = feds[len(feds)-1].TrustDomain.Name()
	}
	return resp, nil
}

func (a *Service) GetFederation(ctx context.Context, req *adminv1.FederationRequest) (*adminv1.Federation, error) {
	td, err := parseTrustDomainField(req.GetTrustDomain())
	if err != nil {
		return nil, err
	}
	f, err := a.cfg.Store.GetFederation(ctx, td)
	if err != nil {
		return nil, err
	}
	return federationToProto(f)
}

// RefreshFederation fetches the remote bundle now; a failed fetch is no
// RPC error: it shows in last_error, and the last good bundle is kept.
func (a *Service) RefreshFederation(ctx context.Context, req *adminv1.FederationRequest) (*adminv1.Federation, error) {
	td, err := parseTrustDomainField(req.GetTrustDomain())
	if err != nil {
		return nil, err
	}
	if a.cfg.Federation == nil {
		return nil, errkind.New(errkind.FailedPrecondition, "this server does not refresh federated bundles")
	}
	f, err := a.cfg.Federation.RefreshNow(ctx, td)
	if err != nil {
		return nil, err
	}
	a.cfg.Changed(ctx)
	return federationToProto(f)
}

func (a *Service) DeleteFederation(ctx context.Context, req *adminv1.FederationRequest) (*adminv1.Federation, error) {
	td, err := parseTrustDomainField(req.GetTrustDomain())
	if err != nil {
		return nil, err
	}
	f, err := a.cfg.Store.GetFederation(ctx, td)
	if err != nil {
		return nil, err
	}
	if err := a.cfg.Store.DeleteFederation(ctx, td); err != nil {
		return nil, err
	}
	a.cfg.Changed(ctx)
	return federationToProto(f)
}
