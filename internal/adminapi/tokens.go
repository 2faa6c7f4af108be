package adminapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/errkind"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/store"
)

// joinTokenToProto describes a stored token by its ref, never the token:
// the store holds only its hash. A token that names no agent ID shows the
// one its node will receive.
func (a *Service) joinTokenToProto(t model.JoinToken) (*adminv1.JoinToken, error) {
	id := t.SPIFFEID
	if id.IsZero() {
		var err error
		if id, err = jointoken.AgentID(a.cfg.TrustDomain, t.Hash); err != nil {
			return nil, err
		}
	}
	return &adminv1.JoinToken{Ref: store.TokenRef(t.Hash), SpiffeId: id.String(),
		ExpiresAt: apiconv.UnixOrZero(t.ExpiresAt), CreatedAt: apiconv.UnixOrZero(t.CreatedAt)}, nil
}

// ListJoinTokens lists the join tokens not used yet and not expired.
func (a *Service) ListJoinTokens(ctx context.Context, req *adminv1.ListJoinTokensRequest) (*adminv1.ListJoinTokensResponse, error) {
	limit, err := pageLimit(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := parseTokenCursor(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	toks, err := a.cfg.Store.ListJoinTokensPage(ctx, a.cfg.Now(), after, limit)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListJoinTokensResponse{Tokens: make([]*adminv1.JoinToken, 0, len(toks))}
	for _, t := range toks {
		pt, err := a.joinTokenToProto(t)
		if err != nil {
			return nil, err
		}
		resp.Tokens = append(resp.Tokens, pt)
	}
	if len(toks) == limit {
		last := toks[len(toks)-1]
		resp.NextPageToken = fmt.Sprintf("%d.%x", last.CreatedAt.UnixNano(), last.Hash)
	}
	return resp, nil
}

// parseTokenCursor reads a join token page token: the last token's
// creation time in unix nanoseconds, a dot, and its hash in hex (a hash is
// no secret: it is how the store keeps the token).
func parseTokenCursor(tok string) (store.JoinTokenCursor, error) {
	if tok == "" {
		return store.JoinTokenCursor{}, nil
	}
	bad := errkind.New(errkind.InvalidArgument, "page_token %q is not a join token page token: pass next_page_token of the previous page", tok)
	ns, h, ok := strings.Cut(tok, ".")
	if !ok || len(h) != 2*sha256.Size {
		return store.JoinTokenCursor{}, bad
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return store.JoinTokenCursor{}, bad
	}
	hash, err := hex.DecodeString(h)
	if err != nil {
		return store.JoinTokenCursor{}, bad
	}
	return store.JoinTokenCursor{CreatedAt: time.Unix(0, n), Hash: hash}, nil
}

// RevokeJoinToken deletes the unused join token whose ref starts with the
// request's prefix; the store records token.revoke.
func (a *Service) RevokeJoinToken(ctx context.Context, req *adminv1.RevokeJoinTokenRequest) (*adminv1.JoinToken, error) {
	if req.GetRefPrefix() == "" {
		return nil, errkind.New(errkind.InvalidArgument, "ref_prefix is required: the token's ref as token list prints it")
	}
	t, err := a.cfg.Store.RevokeJoinToken(ctx, req.GetRefPrefix())
	if err != nil {
		return nil, err
	}
	a.cfg.Log.Info("join token revoked", "token_ref", store.TokenRef(t.Hash))
	return a.joinTokenToProto(t)
}
