// Package brokerapi is the admin API of the credential broker (service
// signet.broker.v1.Broker): operators put and rotate sealed static secrets
// and list, revoke and renew leases. Every method needs an administrator;
// none returns a secret value or an issued credential. Without a
// configured broker every method fails with FailedPrecondition.
package brokerapi

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/signet-id/signet/internal/broker"
	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/errkind"
	brokerv1 "github.com/signet-id/signet/internal/gen/signet/broker/v1"
	"github.com/signet-id/signet/internal/store"
)

// maxListLeases bounds one ListLeases answer.
const maxListLeases = 10000

// Register serves the Broker service on g, backed by b (nil: no broker).
func Register(g *grpc.Server, b *broker.Broker) {
	brokerv1.RegisterBrokerServer(g, &api{b: b})
}

// Methods returns the service's method table: every method needs an
// administrator.
func Methods() edge.Table {
	return edge.Table{}.Service(brokerv1.Broker_ServiceDesc, edge.Admin)
}

type api struct {
	brokerv1.UnimplementedBrokerServer
	b *broker.Broker
}

var errNoBroker = errkind.New(errkind.FailedPrecondition, "this server has no credential broker: configure the broker section (kek_file, policy_file, credentials)")

func (a *api) broker() (*broker.Broker, error) {
	if a.b == nil {
		return nil, errNoBroker
	}
	return a.b, nil
}

func secretPB(s store.Secret) *brokerv1.Secret {
	return &brokerv1.Secret{Name: s.Name, Version: s.Version, KeyId: s.KeyID, CreatedAt: s.CreatedAt.Unix()}
}

func leasePB(l store.Lease) *brokerv1.Lease {
	ctx, _ := json.Marshal(l.Context)
	out := &brokerv1.Lease{
		Id: l.ID, Credential: l.Credential, Provider: l.Provider, SpiffeId: l.Subject.String(), ContextJson: string(ctx),
		SecretVersion: l.SecretVersion, State: string(l.State), IssuedAt: l.IssuedAt.Unix(), ExpiresAt: l.ExpiresAt.Unix(), Reason: l.Reason,
	}
	if !l.Node.IsZero() {
		out.NodeId = l.Node.String()
	}
	return out
}

func leasesPB(ls []store.Lease) []*brokerv1.Lease {
	out := make([]*brokerv1.Lease, len(ls))
	for i, l := range ls {
		out[i] = leasePB(l)
	}
	return out
}

func (a *api) PutSecret(ctx context.Context, req *brokerv1.PutSecretRequest) (*brokerv1.Secret, error) {
	b, err := a.broker()
	if err != nil {
		return nil, err
	}
	s, err := b.PutSecret(ctx, req.GetName(), req.GetValue())
	if err != nil {
		return nil, err
	}
	return secretPB(s), nil
}

func (a *api) RotateSecret(ctx context.Context, req *brokerv1.PutSecretRequest) (*brokerv1.RotateSecretResponse, error) {
	b, err := a.broker()
	if err != nil {
		return nil, err
	}
	s, stale, err := b.RotateSecret(ctx, req.GetName(), req.GetValue())
	if err != nil {
		return nil, err
	}
	return &brokerv1.RotateSecretResponse{Secret: secretPB(s), Stale: leasesPB(stale)}, nil
}

func (a *api) ListSecrets(ctx context.Context, req *brokerv1.ListSecretsRequest) (*brokerv1.ListSecretsResponse, error) {
	b, err := a.broker()
	if err != nil {
		return nil, err
	}
	limit := int(req.GetPageSize())
	switch {
	case limit < 0:
		return nil, errkind.New(errkind.InvalidArgument, "page_size %d is negative", limit)
	case limit == 0:
		limit = defaultListSecrets
	}
	limit = min(limit, maxListLeases)
	// Page tokens are the last secret's name.
	ss, err := b.ListSecretsPage(ctx, req.GetPageToken(), limit)
	if err != nil {
		return nil, err
	}
	out := &brokerv1.ListSecretsResponse{}
	for _, s := range ss {
		out.Secrets = append(out.Secrets, secretPB(s))
	}
	if len(ss) == limit {
		out.NextPageToken = ss[len(ss)-1].Name
	}
	return out, nil
}

// defaultListSecrets is ListSecrets' page size when the request sets none.
const defaultListSecrets = 1000

func parseID(field, s string) (spiffeid.ID, error) {
	if s == "" {
		return spiffeid.ID{}, nil
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return id, errkind.New(errkind.InvalidArgument, "%s %q: not a SPIFFE ID (%v)", field, s, err)
	}
	return id, nil
}

func (a *api) ListLeases(ctx context.Context, req *brokerv1.ListLeasesRequest) (*brokerv1.ListLeasesResponse, error) {
	b, err := a.broker()
	if err != nil {
		return nil, err
	}
	id, err := parseID("spiffe_id", req.GetSpiffeId())
	if err != nil {
		return nil, err
	}
	f := store.LeaseFilter{Credential: req.GetCredential(), Subject: id, Limit: int(req.GetLimit())}
	if f.Limit <= 0 || f.Limit > maxListLeases {
		f.Limit = maxListLeases
	}
	if f.After, err = parseLeaseCursor(req.GetPageToken()); err != nil {
		return nil, err
	}
	for _, st := range req.GetStates() {
		switch s := store.LeaseState(st); s {
		case store.LeasePending, store.LeaseActive, store.LeaseRevoked, store.LeaseExpired:
			f.States = append(f.States, s)
		default:
			return nil, errkind.New(errkind.InvalidArgument, "states: %q is not a lease state: use pending, active, revoked or expired", st)
		}
	}
	ls, err := b.ListLeases(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := &brokerv1.ListLeasesResponse{Leases: leasesPB(ls)}
	if len(ls) == f.Limit {
		last := ls[len(ls)-1]
		resp.NextPageToken = strconv.FormatInt(last.IssuedAt.UnixNano(), 10) + "." + last.ID
	}
	return resp, nil
}

// parseLeaseCursor reads a lease page token: the last lease's issue time
// in unix nanoseconds, a dot, and its ID.
func parseLeaseCursor(tok string) (store.LeaseCursor, error) {
	if tok == "" {
		return store.LeaseCursor{}, nil
	}
	ns, id, ok := strings.Cut(tok, ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || id == "" || len(id) > 128 {
		return store.LeaseCursor{}, errkind.New(errkind.InvalidArgument,
			"page_token %q is not a lease page token: pass next_page_token of the previous page", tok)
	}
	return store.LeaseCursor{IssuedAt: time.Unix(0, n), ID: id}, nil
}

func (a *api) RevokeLeases(ctx context.Context, req *brokerv1.RevokeLeasesRequest) (*brokerv1.RevokeLeasesResponse, error) {
	b, err := a.broker()
	if err != nil {
		return nil, err
	}
	n := 0
	for _, s := range []string{req.GetLeaseId(), req.GetSpiffeId(), req.GetCredential()} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return nil, errkind.New(errkind.InvalidArgument, "name exactly one of lease_id, spiffe_id and credential")
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "revoked by an operator"
	}
	if req.GetLeaseId() != "" {
		l, err := b.Revoke(ctx, req.GetLeaseId(), reason)
		if err != nil {
			return nil, err
		}
		return &brokerv1.RevokeLeasesResponse{Revoked: []*brokerv1.Lease{leasePB(l)}}, nil
	}
	id, err := parseID("spiffe_id", req.GetSpiffeId())
	if err != nil {
		return nil, err
	}
	ls, err := b.RevokeAll(ctx, store.LeaseFilter{Subject: id, Credential: req.GetCredential()}, reason)
	if err != nil {
		return nil, err
	}
	return &brokerv1.RevokeLeasesResponse{Revoked: leasesPB(ls)}, nil
}

func (a *api) RenewLease(ctx context.Context, req *brokerv1.RenewLeaseRequest) (*brokerv1.Lease, error) {
	b, err := a.broker()
	if err != nil {
		return nil, err
	}
	if req.GetTtlSeconds() < 0 {
		return nil, errkind.New(errkind.InvalidArgument, "ttl_seconds: must not be negative")
	}
	l, err := b.Renew(ctx, req.GetLeaseId(), time.Duration(req.GetTtlSeconds())*time.Second)
	if err != nil {
		return nil, err
	}
	return leasePB(l), nil
}
