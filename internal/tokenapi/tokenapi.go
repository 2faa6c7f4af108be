// Package tokenapi is the server's OAuth 2.0 Token Exchange endpoint
// (RFC 8693): POST /oauth2/token on the HTTPS listener. It is the one front
// door through which callers that do not run a Signet agent trade what they
// can prove for what Signet issues: a CI job its OIDC token for SVIDs, a
// workload its SVID for a brokered credential or a transaction token.
//
// A request passes through three steps, each a small seam:
//
//  1. Parsing (ParseRequest): POST, application/x-www-form-urlencoded only,
//     a body of at most MaxBodySize, no parameter twice (but audience and
//     resource, which RFC 8693 lets repeat), grant_type token exchange.
//  2. Subject authentication: who the caller is, as one Subject. With a
//     subject_token, each SubjectVerifier of Config.Verifiers is asked in
//     turn; the first that does not answer ErrNotMine decides (the CI
//     verifier claims tokens whose iss is a configured OIDC issuer; a
//     JWT-SVID verifier claims JWT-SVIDs). Without one, the caller's
//     X509-SVID presented over mTLS, verified against Config.Peers, is the
//     subject. Request.Peer carries that X509-SVID's subject either way.
//  3. Issuance: the Issuer registered under requested_token_type in
//     Config.Issuers mints the token and writes its own audit record; it
//     decides whether the Subject may have it (deny by default).
//
// Every failure is an RFC 6749 §5.2 JSON error ({"error",
// "error_description"}) whose description names the parameter; verifiers
// and issuers return an *Error, or an errkind error mapped to an OAuth
// code (InvalidArgument → invalid_request, Unauthenticated → invalid_grant,
// PermissionDenied → unauthorized_client, NotFound → invalid_target,
// Unavailable → temporarily_unavailable, anything else → server_error with
// a correlation id, the cause in the log only). Responses are never cached
// (Cache-Control: no-store).
package tokenapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/model"
)

// Path is where the endpoint is served.
const Path = "/oauth2/token"

// SubjectKind says how a Subject was identified.
type SubjectKind string

// Subject kinds.
const (
	// SubjectSPIFFE is a holder of an SVID of a trust domain Signet
	// trusts: an X509-SVID over mTLS, or a JWT-SVID as subject_token.
	SubjectSPIFFE SubjectKind = "spiffe"
	// SubjectOIDC is the bearer of a token from a configured external OIDC
	// issuer (a CI job).
	SubjectOIDC SubjectKind = "oidc"
)

// Subject is the authenticated caller of one token request.
type Subject struct {
	Kind SubjectKind
	// ID is the SPIFFE ID of a SubjectSPIFFE.
	ID spiffeid.ID
	// Parent, for a SubjectOIDC, is the ID the entries it may hold are
	// parented to (spiffe://<td>/signet/ci/<issuer name>).
	Parent spiffeid.ID
	// Issuer is a SubjectOIDC's issuer: its configured name.
	Issuer string
	// Claims are a SubjectOIDC's verified claims (for audit and policy).
	Claims map[string]any
	// Selectors describe the subject for entry matching and policy (for a
	// CI job: its claims as selectors, see internal/ci).
	Selectors []model.Selector
	// ExpiresAt is when the presented credential expires; nothing issued
	// for it outlives it.
	ExpiresAt time.Time
	// Via is how the subject authenticated: "mtls" or the
	// subject_token_type.
	Via string
	// SVIDDigest, for a SubjectSPIFFE, is the model.SVIDDigest of the
	// SVID it presented: the key of the SVID's binding to the entry and
	// node it was issued for.
	SVIDDigest string
	// Detail are facts for audit records of what is issued to the subject
	// (a CI job's repository or project); never secrets.
	Detail map[string]string
}

// Name is a short description of the subject for logs and audit: its
// SPIFFE ID, or issuer and sub claim.
func (s *Subject) Name() string {
	if s.Kind == SubjectSPIFFE {
		return s.ID.String()
	}
	sub, _ := s.Claims["sub"].(string)
	return s.Issuer + ":" + sub
}

// ErrNotMine is what a SubjectVerifier returns for a token it does not
// judge, so the next verifier is asked.
var ErrNotMine = errors.New("subject token not handled by this verifier")

// SubjectVerifier identifies the caller from subject_token.
type SubjectVerifier interface {
	// VerifySubject verifies token, of subject_token_type tokenType, and
	// returns its subject. It returns ErrNotMine for tokens of another
	// kind or issuer, and otherwise an *Error or a kinded error (a token
	// it claims but refuses is invalid_grant).
	VerifySubject(ctx context.Context, tokenType, token string) (*Subject, error)
}

// Issuer mints one requested_token_type.
type Issuer interface {
	// Issue answers req for sub, or refuses it (unauthorized_client for a
	// subject not entitled to the token). It audits its decision.
	Issue(ctx context.Context, req *Request, sub *Subject) (*Response, error)
}

// IssuerFunc adapts a function to Issuer.
type IssuerFunc func(ctx context.Context, req *Request, sub *Subject) (*Response, error)

// Issue calls f.
func (f IssuerFunc) Issue(ctx context.Context, req *Request, sub *Subject) (*Response, error) {
	return f(ctx, req, sub)
}

// Response is a successful token response (RFC 8693 §2.2.1).
type Response struct {
	// AccessToken is the issued token (access_token).
	AccessToken string
	// IssuedTokenType is issued_token_type; the requested type when empty.
	IssuedTokenType string
	// TokenType is token_type: "N_A" when empty (the token is not an OAuth
	// access token), or "Bearer".
	TokenType string
	// ExpiresAt sets expires_in, in whole seconds from now.
	ExpiresAt time.Time
	Scope     string
	// Extra members of the JSON response (for example the X.509 trust
	// bundle); they must not clash with the standard ones.
	Extra map[string]any
}

// Config configures a Handler. The zero value answers every request with
// invalid_request naming requested_token_type (no issuers).
type Config struct {
	// Verifiers identify callers from subject_token, asked in order.
	Verifiers []SubjectVerifier
	// Issuers by requested_token_type.
	Issuers map[string]Issuer
	// Peers verifies client certificates presented over mTLS as
	// X509-SVIDs; nil ignores them.
	Peers x509bundle.Source
	// Limit, when set, bounds requests per client address.
	Limit *edge.PeerLimiter
	// Observe, when set, is told every request's outcome: the
	// requested_token_type (one of Issuers' keys, or "other") and the
	// OAuth error code ("ok" on success), for metrics with bounded labels.
	Observe func(tokenType, code string)
	Now     func() time.Time
	Log     *slog.Logger
}

// Handler serves Path. Build it with New.
type Handler struct {
	cfg   Config
	types string    // requested token types served, for error descriptions
	peers peerCache // client certificates verified, per connection
}

// New returns the endpoint's handler for cfg.
func New(cfg Config) *Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	names := make([]string, 0, len(cfg.Issuers))
	for n := range cfg.Issuers {
		names = append(names, n)
	}
	sort.Strings(names)
	return &Handler{cfg: cfg, types: strings.Join(names, ", ")}
}

// ServeHTTP answers one token request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			oe, id := toOAuth(errors.New("panic"))
			h.cfg.Log.ErrorContext(r.Context(), "panic in token endpoint", "error_id", id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			writeError(w, oe)
		}
	}()
	if r.URL.Path != Path {
		writeError(w, &Error{Code: ErrInvalidRequest, Status: http.StatusNotFound, Description: "no such endpoint: the token endpoint is POST " + Path})
		return
	}
	if h.cfg.Limit != nil && !h.cfg.Limit.AllowAddr(remoteHost(r)) {
		writeError(w, &Error{Code: ErrTemporarilyUnavailable, Status: http.StatusTooManyRequests,
			Description: "too many requests from this address: slow down and retry later"})
		return
	}
	resp, req, err := h.exchange(r)
	h.observe(req, err)
	if err != nil {
		oe, id := toOAuth(err)
		if id != "" {
			h.cfg.Log.ErrorContext(r.Context(), "internal error", "listener", "token endpoint", "error_id", id, "error", err)
		} else {
			h.cfg.Log.InfoContext(r.Context(), "token request refused", "remote", remoteHost(r), "error", oe.Code,
				"description", logsafe.Truncate(oe.Description))
		}
		if oe.Status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", http.MethodPost)
		}
		writeError(w, oe)
		return
	}
	body := map[string]any{}
	for k, v := range resp.Extra {
		body[k] = v
	}
	body["access_token"] = resp.AccessToken
	body["issued_token_type"] = resp.IssuedTokenType
	if resp.IssuedTokenType == "" {
		body["issued_token_type"] = req.RequestedTokenType
	}
	body["token_type"] = resp.TokenType
	if resp.TokenType == "" {
		body["token_type"] = "N_A"
	}
	if !resp.ExpiresAt.IsZero() {
		body["expires_in"] = max(int64(resp.ExpiresAt.Sub(h.cfg.Now())/time.Second), 0)
	}
	if resp.Scope != "" {
		body["scope"] = resp.Scope
	}
	writeJSON(w, http.StatusOK, body)
}

// exchange parses, authenticates and issues.
func (h *Handler) exchange(r *http.Request) (*Response, *Request, error) {
	req, err := ParseRequest(r)
	if err != nil {
		return nil, nil, err
	}
	if req.RequestedTokenType == "" {
		return nil, req, Errorf(ErrInvalidRequest, "parameter requested_token_type is required: use one of %s", h.typesOrNone())
	}
	iss, ok := h.cfg.Issuers[req.RequestedTokenType]
	if !ok {
		return nil, req, Errorf(ErrInvalidRequest, "requested_token_type %s is not served here: use one of %s",
			quoteShort(req.RequestedTokenType), h.typesOrNone())
	}
	peer, err := h.peerSubject(r)
	if err != nil {
		return nil, req, err
	}
	ctx := r.Context()
	sub, err := h.subject(ctx, req, peer)
	if err != nil {
		return nil, req, err
	}
	if !sub.ExpiresAt.IsZero() && !h.cfg.Now().Before(sub.ExpiresAt) {
		return nil, req, Errorf(ErrInvalidGrant, "subject_token has expired")
	}
	resp, err := iss.Issue(ctx, req, sub)
	if err != nil {
		return nil, req, err
	}
	if resp == nil || resp.AccessToken == "" {
		return nil, req, fmt.Errorf("issuer of %s returned no token", req.RequestedTokenType)
	}
	return resp, req, nil
}

func (h *Handler) observe(req *Request, err error) {
	if h.cfg.Observe == nil {
		return
	}
	typ, code := "other", "ok"
	if req != nil {
		if _, ok := h.cfg.Issuers[req.RequestedTokenType]; ok {
			typ = req.RequestedTokenType
		}
	}
	if err != nil {
		oe, _ := toOAuth(err)
		code = oe.Code
		if len(code) > 32 {
			code = ErrServerError
		}
	}
	h.cfg.Observe(typ, code)
}

func (h *Handler) typesOrNone() string {
	if h.types == "" {
		return "(none: no token types are configured on this server)"
	}
	return h.types
}

// subject identifies the caller: from subject_token when sent, else from
// the mTLS peer.
func (h *Handler) subject(ctx context.Context, req *Request, peer *Subject) (*Subject, error) {
	req.Peer = peer
	if req.SubjectToken == "" {
		if peer == nil {
			return nil, Errorf(ErrInvalidRequest, "parameter subject_token is required (or present an X509-SVID over mTLS)")
		}
		return peer, nil
	}
	for _, v := range h.cfg.Verifiers {
		sub, err := v.VerifySubject(ctx, req.SubjectTokenType, req.SubjectToken)
		if errors.Is(err, ErrNotMine) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if sub == nil {
			return nil, errors.New("subject verifier returned no subject")
		}
		return sub, nil
	}
	known := []string{TokenTypeIDToken, TokenTypeJWT}
	if !slices.Contains(known, req.SubjectTokenType) {
		return nil, Errorf(ErrInvalidRequest, "subject_token_type %s is not accepted: use %s or %s",
			quoteShort(req.SubjectTokenType), TokenTypeIDToken, TokenTypeJWT)
	}
	return nil, Errorf(ErrInvalidGrant, "subject_token is not from an issuer this server trusts")
}

// peerSubject verifies the client certificate, if any, as an X509-SVID.
func (h *Handler) peerSubject(r *http.Request) (*Subject, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || h.cfg.Peers == nil {
		return nil, nil
	}
	id, err := h.peers.verify(r.TLS.PeerCertificates, h.cfg.Peers, h.cfg.Now())
	if err != nil {
		return nil, &Error{Code: ErrInvalidClient, Description: "the client certificate is not a valid X509-SVID of a trusted trust domain"}
	}
	leaf := r.TLS.PeerCertificates[0]
	return &Subject{Kind: SubjectSPIFFE, ID: id, ExpiresAt: leaf.NotAfter, Via: "mtls", SVIDDigest: model.SVIDDigest(leaf.Raw)}, nil
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func writeError(w http.ResponseWriter, e *Error) {
	if e.status() == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_client"`)
	}
	writeJSON(w, e.status(), map[string]string{"error": e.Code, "error_description": e.Description})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
