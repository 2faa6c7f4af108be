package ca

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
)

// TxnTokenType is the JWS typ header of transaction tokens
// (draft-ietf-oauth-transaction-tokens).
const TxnTokenType = "txntoken+jwt"

// TxnTokenParams says what a transaction token asserts.
type TxnTokenParams struct {
	// Subject is the sub claim: the calling workload.
	Subject spiffeid.ID
	// Audience is the aud claim: the trust domain the token is for.
	Audience string
	// TxnID is the txn claim, unique per transaction.
	TxnID string
	// RequestContext (rctx) and TransactionContext (tctx) are JSON objects.
	RequestContext     map[string]any
	TransactionContext map[string]any
	// TTL is the requested lifetime, capped like a JWT-SVID's.
	TTL time.Duration
}

type txnClaims struct {
	Issuer   string         `json:"iss"`
	Subject  string         `json:"sub"`
	Audience string         `json:"aud"`
	TxnID    string         `json:"txn"`
	IssuedAt int64          `json:"iat"`
	Expiry   int64          `json:"exp"`
	Rctx     map[string]any `json:"rctx,omitempty"`
	Tctx     map[string]any `json:"tctx,omitempty"`
}

// SignTxnToken mints a transaction token signed by the active JWT key (the
// same key set JWT-SVIDs verify against; header typ txntoken+jwt, kid the
// authority id). iss is the trust domain's SPIFFE ID (spiffe://<td>).
func (m *Manager) SignTxnToken(ctx context.Context, p TxnTokenParams) (token string, expiresAt time.Time, err error) {
	if err := m.checkSVIDParams(p.Subject, p.TTL); err != nil {
		return "", time.Time{}, fmt.Errorf("sign txn-token for %s: %w", p.Subject, err)
	}
	if p.TxnID == "" || p.Audience == "" {
		return "", time.Time{}, errkind.New(errkind.InvalidArgument, "sign txn-token for %s: txn and audience are required", p.Subject)
	}
	s := m.jwt.Load()
	if s == nil || s.txn == nil {
		return "", time.Time{}, errkind.New(errkind.FailedPrecondition, "sign txn-token: ca not initialized")
	}
	now := m.now()
	exp := now.Add(m.capTTL(p.TTL))
	if exp.After(s.notAfter) {
		exp = s.notAfter
	}
	exp = exp.Truncate(time.Second)
	if !exp.After(now) {
		return "", time.Time{}, errkind.New(errkind.Unavailable, "sign txn-token: active jwt authority %s has expired", s.id)
	}
	payload, err := json.Marshal(txnClaims{
		Issuer: p.Subject.TrustDomain().ID().String(), Subject: p.Subject.String(),
		Audience: p.Audience, TxnID: p.TxnID, IssuedAt: now.Unix(), Expiry: exp.Unix(),
		Rctx: p.RequestContext, Tctx: p.TransactionContext,
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign txn-token for %s: marshal claims: %w", p.Subject, err)
	}
	jws, err := s.txn.Sign(payload)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign txn-token for %s: %w", p.Subject, err)
	}
	token, err = jws.CompactSerialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign txn-token for %s: serialize: %w", p.Subject, err)
	}
	return token, exp, nil
}
