package exchange

import (
	"context"
	"crypto/rand"
	"time"

	"github.com/signet-id/signet/internal/broker/policy"
	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/tokenapi"
)

// TokenTypeTxnToken is the requested_token_type of transaction tokens
// (draft-ietf-oauth-transaction-tokens).
const TokenTypeTxnToken = "urn:ietf:params:oauth:token-type:txn_token"

// Transaction-token lifetimes: the default and the most a caller may ask.
const (
	DefaultTxnTTL = 5 * time.Minute
	MaxTxnTTL     = time.Hour
)

// TxnSigner signs transaction tokens (the server's *ca.Manager).
type TxnSigner interface {
	SignTxnToken(ctx context.Context, p ca.TxnTokenParams) (string, time.Time, error)
}

// Auditor appends audit records (the store).
type Auditor interface {
	AppendAudit(ctx context.Context, recs ...model.AuditRecord) error
}

// TxnIssuer mints transaction tokens for SPIFFE workloads: sub is the
// caller, txn a fresh id, tctx the request_context (the task context a
// policy sees), rctx how the caller authenticated; aud is the trust domain
// unless audience names another. Signed with the trust domain's JWT keys,
// so a downstream service verifies it against the same JWKS as JWT-SVIDs.
type TxnIssuer struct {
	Signer TxnSigner
	Audit  Auditor
}

// Register adds the issuer to m under TokenTypeTxnToken.
func (i *TxnIssuer) Register(m map[string]tokenapi.Issuer) { m[TokenTypeTxnToken] = i }

// Issue implements tokenapi.Issuer.
func (i *TxnIssuer) Issue(ctx context.Context, req *tokenapi.Request, sub *tokenapi.Subject) (*tokenapi.Response, error) {
	if sub.Kind != tokenapi.SubjectSPIFFE || sub.ID.IsZero() {
		return nil, tokenapi.Errorf(tokenapi.ErrUnauthorizedClient, "transaction tokens are issued to SPIFFE workloads: present an X509-SVID over mTLS or a JWT-SVID as subject_token")
	}
	aud := sub.ID.TrustDomain().Name()
	switch n := len(req.Audience); {
	case n == 1:
		aud = req.Audience[0]
	case n > 1:
		return nil, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "parameter audience: at most one for a transaction token, got %d", n)
	}
	var tctx map[string]any
	if raw := req.Param(ParamContext); raw != "" {
		c, err := policy.ParseContext([]byte(raw))
		if err != nil {
			return nil, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "parameter request_context: %v", err)
		}
		tctx = c
	}
	ttl := DefaultTxnTTL
	if raw := req.Param(ParamTTL); raw != "" {
		d, err := config.ParseDuration(raw)
		if err != nil || d <= 0 || d > MaxTxnTTL {
			return nil, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "parameter ttl %q: want a positive duration of at most 1h", shorten(raw))
		}
		ttl = d
	}
	if !sub.ExpiresAt.IsZero() {
		if left := time.Until(sub.ExpiresAt); left < ttl {
			ttl = left
		}
	}
	txn := rand.Text()
	rctx := map[string]any{"authn": sub.Via}
	tok, exp, err := i.Signer.SignTxnToken(ctx, ca.TxnTokenParams{
		Subject: sub.ID, Audience: aud, TxnID: txn, RequestContext: rctx, TransactionContext: tctx, TTL: ttl,
	})
	if err != nil {
		return nil, err
	}
	if err := i.Audit.AppendAudit(ctx, model.AuditRecord{Actor: "workload:" + sub.ID.String(), Action: "token.exchange.txn", Object: txn,
		Detail: map[string]string{"subject": sub.ID.String(), "audience": aud, "expires_at": exp.UTC().Format(time.RFC3339)}}); err != nil {
		return nil, err
	}
	return &tokenapi.Response{AccessToken: tok, IssuedTokenType: TokenTypeTxnToken, TokenType: "N_A", ExpiresAt: exp,
		Extra: map[string]any{"txn": txn}}, nil
}
