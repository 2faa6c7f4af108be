package adminapi

import (
	"context"
	"strings"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/errkind"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	"github.com/signet-id/signet/internal/store"
)

func allowanceToProto(a store.NodeAllowance) *adminv1.NodeAllowance {
	return &adminv1.NodeAllowance{AttestationType: a.AttestationType, Value: a.Value, CreatedAt: apiconv.UnixOrZero(a.CreatedAt)}
}

// AllowNode records an operator's consent for nodes proving a value.
func (a *Service) AllowNode(ctx context.Context, req *adminv1.NodeAllowance) (*adminv1.NodeAllowance, error) {
	al, err := a.cfg.Store.AllowNode(ctx, req.GetAttestationType(), req.GetValue())
	if err != nil {
		return nil, err
	}
	a.cfg.Log.Info("node allowed", "attestation_type", al.AttestationType, "value", al.Value)
	return allowanceToProto(al), nil
}

// DisallowNode removes an allowance.
func (a *Service) DisallowNode(ctx context.Context, req *adminv1.NodeAllowance) (*adminv1.NodeAllowance, error) {
	if err := a.cfg.Store.DisallowNode(ctx, req.GetAttestationType(), req.GetValue()); err != nil {
		return nil, err
	}
	a.cfg.Log.Info("node disallowed", "attestation_type", req.GetAttestationType(), "value", req.GetValue())
	return &adminv1.NodeAllowance{AttestationType: req.GetAttestationType(), Value: req.GetValue()}, nil
}

// ListNodeAllowances lists the allowances, of one method or all.
func (a *Service) ListNodeAllowances(ctx context.Context, req *adminv1.ListNodeAllowancesRequest) (*adminv1.ListNodeAllowancesResponse, error) {
	limit, err := pageLimit(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	var after store.NodeAllowance
	if tok := req.GetPageToken(); tok != "" { // method "/" value of the last allowance
		var ok bool
		if after.AttestationType, after.Value, ok = strings.Cut(tok, "/"); !ok || after.AttestationType == "" {
			return nil, errkind.New(errkind.InvalidArgument,
				"page_token %q is not an allowance page token: pass next_page_token of the previous page", tok)
		}
	}
	list, err := a.cfg.Store.ListNodeAllowancesPage(ctx, req.GetAttestationType(), after, limit)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListNodeAllowancesResponse{Allowances: make([]*adminv1.NodeAllowance, len(list))}
	for i, al := range list {
		resp.Allowances[i] = allowanceToProto(al)
	}
	if len(list) == limit {
		last := list[len(list)-1]
		resp.NextPageToken = last.AttestationType + "/" + last.Value
	}
	return resp, nil
}
