package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

const cryptoSHA256 = crypto.SHA256

// JWTParams says what a JWT-SVID asserts.
type JWTParams struct {
	// ID is the sub claim: in the CA's trust domain, with a path.
	ID spiffeid.ID
	// Audience is the aud claim; at least one non-empty value. The JWT-SVID
	// specification strongly recommends exactly one.
	Audience []string
	// TTL is the requested lifetime; exp never passes the signing key's
	// NotAfter, and Config.MaxSVIDTTL caps it when set.
	TTL time.Duration
}

// jwtClaims is the JWT-SVID claim set: sub, aud, exp (required by the
// specification), iat, jti and, when the CA has a JWT issuer, iss. jti is
// 128 random bits, so no two tokens are alike even when minted for the same
// ID and audience in the same second with a deterministic signature
// (RS256): each token names the one entry and node it was minted for
// (store.SVIDBinding), and a verifier can detect replays.
type jwtClaims struct {
	Issuer   string       `json:"iss,omitempty"`
	Subject  string       `json:"sub"`
	Audience jwt.Audience `json:"aud"`
	Expiry   int64        `json:"exp"`
	IssuedAt int64        `json:"iat"`
	ID       string       `json:"jti"`
}

// SignJWTSVID mints a JWT-SVID signed by this server's active JWT key: a
// JWS compact serialization whose protected header holds only alg (ES256,
// ES384 or RS256 by key type), kid (the authority id) and typ "JWT". It
// returns the token and its expiry, which is the exp claim.
func (m *Manager) SignJWTSVID(ctx context.Context, p JWTParams) (token string, expiresAt time.Time, err error) {
	if err := m.checkSVIDParams(p.ID, p.TTL); err != nil {
		return "", time.Time{}, fmt.Errorf("sign jwt-svid for %s: %w", p.ID, err)
	}
	if len(p.Audience) == 0 {
		return "", time.Time{}, errkind.New(errkind.InvalidArgument,
			"sign jwt-svid for %s: audience is required, for example spiffe://example.org/reports", p.ID)
	}
	for _, a := range p.Audience {
		if a == "" {
			return "", time.Time{}, errkind.New(errkind.InvalidArgument, "sign jwt-svid for %s: empty audience value", p.ID)
		}
	}
	s := m.jwt.Load()
	if s == nil {
		return "", time.Time{}, errkind.New(errkind.FailedPrecondition, "sign jwt-svid for %s: ca not initialized", p.ID)
	}
	now := m.now()
	exp := now.Add(m.capTTL(p.TTL))
	if exp.After(s.notAfter) {
		exp = s.notAfter
	}
	exp = exp.Truncate(time.Second) // NumericDate has whole seconds
	if !exp.After(now) {
		return "", time.Time{}, errkind.New(errkind.Unavailable,
			"sign jwt-svid for %s: active jwt authority %s has expired", p.ID, s.id)
	}
	payload, err := json.Marshal(jwtClaims{
		Issuer:   m.jwtIssuer,
		Subject:  p.ID.String(),
		Audience: jwt.Audience(p.Audience),
		Expiry:   exp.Unix(),
		IssuedAt: now.Unix(),
		ID:       rand.Text(),
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign jwt-svid for %s: marshal claims: %w", p.ID, err)
	}
	jws, err := s.signer.Sign(payload)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign jwt-svid for %s: %w", p.ID, err)
	}
	token, err = jws.CompactSerialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign jwt-svid for %s: serialize: %w", p.ID, err)
	}
	return token, exp, nil
}

// newJWTSigner builds the go-jose signer of JWT authority a once, for
// every mint.
func newJWTSigner(a model.Authority, key privateKey) (*jwtSigner, error) {
	alg, err := jwsAlgorithm(key.signer.Public())
	if err != nil {
		return nil, fmt.Errorf("jwt authority %s: %w", a.ID, err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key.signer, KeyID: a.ID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("jwt authority %s: new signer: %w", a.ID, err)
	}
	txn, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key.signer, KeyID: a.ID}},
		(&jose.SignerOptions{}).WithType(TxnTokenType))
	if err != nil {
		return nil, fmt.Errorf("jwt authority %s: new txn-token signer: %w", a.ID, err)
	}
	return &jwtSigner{id: a.ID, notAfter: a.NotAfter, signer: signer, txn: txn}, nil
}

// jwsAlgorithm picks the JWS algorithm for a public key among those the
// JWT-SVID specification allows.
func jwsAlgorithm(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
	case *rsa.PublicKey:
		return jose.RS256, nil
	}
	return "", fmt.Errorf("no JWT-SVID signature algorithm for key type %T", pub)
}

// base64URL encodes b without padding, as JWK thumbprints are written.
func base64URL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
