package adminapi

import (
	"context"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/errkind"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// RevokeSVIDs revokes one X509-SVID by serial, or every SVID of a SPIFFE
// ID, and has the server push the revocation to every agent before it
// returns (Changed).
func (a *Service) RevokeSVIDs(ctx context.Context, req *adminv1.RevokeSVIDsRequest) (*adminv1.RevokeSVIDsResponse, error) {
	var revs []store.Revocation
	switch t := req.GetTarget().(type) {
	case *adminv1.RevokeSVIDsRequest_Serial:
		serial, err := model.ParseSerial(t.Serial)
		if err != nil {
			return nil, errkind.New(errkind.InvalidArgument, "%v", err)
		}
		r, err := a.cfg.Store.RevokeSerial(ctx, serial)
		if err != nil {
			return nil, err
		}
		revs = []store.Revocation{r}
	case *adminv1.RevokeSVIDsRequest_SpiffeId:
		id, err := apiconv.ParseID("spiffe_id", t.SpiffeId)
		if err != nil {
			return nil, err
		}
		if id.TrustDomain() != a.cfg.TrustDomain {
			return nil, errkind.New(errkind.InvalidArgument, "spiffe_id: %s is not in this server's trust domain %s", id, a.cfg.TrustDomain)
		}
		if revs, err = a.cfg.Store.RevokeSPIFFEID(ctx, id); err != nil {
			return nil, err
		}
	default:
		return nil, errkind.New(errkind.InvalidArgument, "serial or spiffe_id is required")
	}
	a.cfg.Changed(ctx)
	resp := &adminv1.RevokeSVIDsResponse{Revocations: make([]*adminv1.SVIDRevocation, len(revs))}
	for i, r := range revs {
		resp.Revocations[i] = revocationToProto(r)
		a.cfg.Log.Info("svid revoked", "serial", r.Serial, "spiffe_id", r.SPIFFEID)
	}
	return resp, nil
}

// ListSVIDRevocations lists the revocations in force.
func (a *Service) ListSVIDRevocations(ctx context.Context, _ *adminv1.ListSVIDRevocationsRequest) (*adminv1.ListSVIDRevocationsResponse, error) {
	revs, err := a.cfg.Store.ListRevocations(ctx, a.cfg.Now())
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListSVIDRevocationsResponse{Revocations: make([]*adminv1.SVIDRevocation, len(revs))}
	for i, r := range revs {
		resp.Revocations[i] = revocationToProto(r)
	}
	return resp, nil
}

func revocationToProto(r store.Revocation) *adminv1.SVIDRevocation {
	return &adminv1.SVIDRevocation{Serial: r.Serial, SpiffeId: r.SPIFFEID, RevokedAt: r.RevokedAt.Unix(), ExpiresAt: r.ExpiresAt.Unix()}
}
