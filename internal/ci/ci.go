// Package ci admits CI/CD jobs without an agent: it verifies the OIDC
// tokens GitHub Actions, GitLab CI (or another configured OIDC issuer) hand
// every job, and turns their claims into selectors, as the token endpoint's
// subject verifier (tokenapi.SubjectVerifier). The SVIDs themselves are
// issued by internal/tokenapi/svidissuer from the entries parented to
// spiffe://<td>/signet/ci/<issuer name>.
//
// Verification: the issuer's discovery document and JWKS are fetched over
// HTTPS (with the configured CA bundle), cached for the JWKS's max-age
// (1 min to 24 h, default 1 h) and refetched on an unknown kid at most every
// 10 s. Only asymmetric algorithms are accepted (RS*, PS*, ES*, EdDSA; a
// JWK's declared alg must match); none and HMAC never are. go-oidc checks
// the signature, iss, aud and exp; this package then requires aud to be
// exactly the configured audience, iat and nbf not in the future beyond a
// minute of leeway, and a lifetime (exp − iat) of at most an hour. Each
// token is accepted once: its jti (or, without one, its SHA-256) is
// recorded in the store until it expires, which every replica sharing the
// store sees; a second use is refused and audited (token.exchange.replay).
package ci

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/tokenapi"
)

// Verification bounds.
const (
	// Leeway is the clock skew allowed on iat and nbf.
	Leeway = time.Minute
	// MaxTokenLifetime is the longest exp − iat accepted.
	MaxTokenLifetime = time.Hour
	// MaxTokenSize bounds a subject token.
	MaxTokenSize = 16 << 10
)

// Replay records used tokens, and audits replays (the store).
type Replay interface {
	MarkTokenUsed(ctx context.Context, issuer, id string, expires time.Time) error
	RecordIssuance(ctx context.Context, iss store.Issuance) error
}

// Config configures a Verifier.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// Issuers are the oidc_issuers section, by name.
	Issuers map[string]config.OIDCIssuer
	Replay  Replay
	Now     func() time.Time
	Log     *slog.Logger
}

// Verifier verifies CI jobs' OIDC tokens. Build it with New.
type Verifier struct {
	byIssuer map[string]*issuer // by iss claim
	parents  []spiffeid.ID
	replay   Replay
	now      func() time.Time
	log      *slog.Logger
}

type issuer struct {
	s      issuerSettings
	keys   *keySet
	verify *oidc.IDTokenVerifier
}

// New validates the issuers and builds the verifier. Nothing is fetched
// until the first token of an issuer arrives, so an unreachable issuer does
// not stop the server.
func New(cfg Config) (*Verifier, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	sets, err := settings(cfg.TrustDomain, cfg.Issuers)
	if err != nil {
		return nil, err
	}
	v := &Verifier{byIssuer: map[string]*issuer{}, replay: cfg.Replay, now: cfg.Now, log: cfg.Log}
	for i := range sets {
		is := &issuer{s: sets[i]}
		is.keys = newKeySet(&is.s, cfg.Now)
		is.verify = oidc.NewVerifier(is.s.issuer, is.keys, &oidc.Config{
			ClientID: is.s.audience, SupportedSigningAlgs: algNames(), Now: cfg.Now,
		})
		v.byIssuer[is.s.issuer] = is
		v.parents = append(v.parents, is.s.parent)
	}
	return v, nil
}

// Validate checks the issuers' settings as New does, without building a
// verifier: the server runs it before it creates anything, so a bad
// oidc_issuers section leaves no data dir, store or keys behind.
func Validate(td spiffeid.TrustDomain, issuers map[string]config.OIDCIssuer) error {
	_, err := settings(td, issuers)
	return err
}

// Parents are the IDs the configured issuers' entries are parented to.
func (v *Verifier) Parents() []spiffeid.ID { return v.parents }

var _ tokenapi.SubjectVerifier = (*Verifier)(nil)

// VerifySubject verifies a CI job's token; tokens of issuers not
// configured are ErrNotMine.
func (v *Verifier) VerifySubject(ctx context.Context, tokenType, token string) (*tokenapi.Subject, error) {
	if tokenType != tokenapi.TokenTypeIDToken && tokenType != tokenapi.TokenTypeJWT {
		return nil, tokenapi.ErrNotMine
	}
	if len(token) > MaxTokenSize {
		return nil, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "subject_token is larger than %d bytes", MaxTokenSize)
	}
	iss, err := unverifiedIssuer(token)
	if err != nil {
		return nil, err
	}
	is := v.byIssuer[iss]
	if is == nil {
		return nil, tokenapi.ErrNotMine
	}
	return is.subject(ctx, v, tokenType, token)
}

// unverifiedIssuer reads the iss claim to route the token to its issuer;
// nothing else of the unverified payload is used.
func unverifiedIssuer(token string) (string, error) {
	parts := strings.Split(token, ".")
	notJWT := tokenapi.Errorf(tokenapi.ErrInvalidRequest, "subject_token is not a signed JWT (three base64url parts)")
	if len(parts) != 3 {
		return "", notJWT
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", notJWT
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", tokenapi.Errorf(tokenapi.ErrInvalidRequest, "subject_token's payload is not a JSON claim set")
	}
	return c.Iss, nil
}

func (is *issuer) subject(ctx context.Context, v *Verifier, tokenType, token string) (*tokenapi.Subject, error) {
	refuse := func(why string) error {
		v.log.InfoContext(ctx, "ci token refused", "issuer", is.s.name, "reason", logsafe.Truncate(why))
		return tokenapi.Errorf(tokenapi.ErrInvalidGrant, "subject_token from %s refused: %s", is.s.name, why)
	}
	keysFailed := false
	idt, err := is.verify.Verify(context.WithValue(ctx, keysFailedKey{}, &keysFailed), token)
	if err != nil {
		var expired *oidc.TokenExpiredError
		switch {
		case keysFailed:
			v.log.WarnContext(ctx, "ci issuer keys unavailable", "issuer", is.s.name, "error", err)
			return nil, tokenapi.Errorf(tokenapi.ErrTemporarilyUnavailable, "the keys of issuer %s could not be fetched; retry later", is.s.name)
		case errors.As(err, &expired):
			return nil, refuse("the token has expired")
		}
		return nil, refuse(strings.TrimPrefix(err.Error(), "oidc: "))
	}
	now := v.now()
	if len(idt.Audience) != 1 || idt.Audience[0] != is.s.audience {
		return nil, refuse(fmt.Sprintf("aud must be exactly %q", is.s.audience))
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, refuse("claims are not a JSON object")
	}
	if idt.IssuedAt.IsZero() {
		return nil, refuse("the token has no iat")
	}
	if idt.IssuedAt.After(now.Add(Leeway)) {
		return nil, refuse("iat is in the future")
	}
	if nbf, ok := claims["nbf"].(float64); ok && time.Unix(int64(nbf), 0).After(now.Add(Leeway)) {
		return nil, refuse("nbf is in the future")
	}
	if idt.Expiry.Sub(idt.IssuedAt) > MaxTokenLifetime {
		return nil, refuse(fmt.Sprintf("it lives %s, longer than the %s accepted", idt.Expiry.Sub(idt.IssuedAt), MaxTokenLifetime))
	}
	id, _ := claims["jti"].(string)
	if id == "" || len(id) > 256 {
		sum := sha256.Sum256([]byte(token))
		id = "sha256:" + hex.EncodeToString(sum[:])
	}
	if err := v.replay.MarkTokenUsed(ctx, is.s.issuer, id, idt.Expiry); err != nil {
		if errors.Is(err, store.ErrReplayed) {
			v.log.WarnContext(ctx, "ci token replayed", "issuer", is.s.name, "jti", logsafe.Truncate(id), "sub", logsafe.Truncate(idt.Subject))
			detail := is.s.detail(claims)
			detail["issuer"], detail["jti"], detail["subject"] = is.s.name, logsafe.Truncate(id), logsafe.Truncate(is.s.name+":"+idt.Subject)
			rec := model.AuditRecord{Actor: "token:" + detail["subject"], Action: "token.exchange.replay", Object: is.s.parent.String(), Detail: detail}
			if err := v.replay.RecordIssuance(ctx, store.Issuance{Records: []model.AuditRecord{rec}, At: now}); err != nil {
				v.log.ErrorContext(ctx, "cannot audit a replayed ci token", "error", err)
			}
			return nil, tokenapi.Errorf(tokenapi.ErrInvalidGrant, "subject_token was already used: each CI token is exchanged once; request a fresh one")
		}
		return nil, errkind.Wrap(errkind.Unavailable, err, "cannot record the token's use; retry")
	}
	detail := is.s.detail(claims)
	detail["jti"] = logsafe.Truncate(id)
	return &tokenapi.Subject{
		Kind: tokenapi.SubjectOIDC, Issuer: is.s.name, Parent: is.s.parent, Claims: claims,
		Selectors: is.s.selectors(claims), ExpiresAt: idt.Expiry, Via: tokenType, Detail: detail,
	}, nil
}
