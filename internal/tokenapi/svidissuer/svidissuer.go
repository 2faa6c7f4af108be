// Package svidissuer mints SVIDs at the token endpoint for subjects that
// were attested without an agent (a CI job by its OIDC token): the
// requested_token_type urn:ietf:params:oauth:token-type:jwt returns a
// JWT-SVID for the audience parameter, and
// urn:signet:params:oauth:token-type:x509-svid an X509-SVID for the public
// key of the csr parameter (base64url DER PKCS #10; the key never leaves
// the caller) with the trust bundle: trust_bundle (the X.509 authorities,
// PEM) and spiffe_bundle (the SPIFFE bundle JSON, JWT keys included).
//
// The holder of an X509-SVID of such an entry may also exchange it over
// mTLS (no subject_token) for a JWT-SVID of the same SPIFFE ID, living no
// longer than the X509-SVID.
//
// The SVID's identity is a registration entry: one parented to the
// subject's Parent (spiffe://<td>/signet/ci/<issuer>) whose selectors are
// all among the subject's. Several match: the optional spiffe_id parameter
// picks one, else the first by SPIFFE ID. None: unauthorized_client, with
// an audit record naming the selectors that were checked. The SVID lives
// the entry's TTL (or the default) and never past the presented token's
// expiry. Every issuance is durable in the audit log before it is returned.
package svidissuer

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/tokenapi"
)

// Signer mints SVIDs (the server's *ca.Manager).
type Signer interface {
	SignX509SVID(ctx context.Context, csrDER []byte, p ca.X509Params) ([]*x509.Certificate, error)
	SignJWTSVID(ctx context.Context, p ca.JWTParams) (string, time.Time, error)
}

// Entries finds the entries parented to an ID (the server's entry cache).
type Entries interface {
	NodeEntries(node spiffeid.ID, nodeSels []model.Selector, now time.Time) []*model.Entry
}

// Recorder makes issuance decisions durable (the store).
type Recorder interface {
	RecordIssuance(ctx context.Context, iss store.Issuance) error
}

// Config configures the issuers; every field but Log and Now is required.
type Config struct {
	CA      Signer
	Entries Entries
	Store   Recorder
	Bundle  func() *spiffebundle.Bundle
	// AgentlessParents are the parents of agentless entries (one per CI
	// issuer): the holder of an X509-SVID of such an entry may exchange it,
	// over mTLS, for a JWT-SVID of the same ID (signet ci run's Workload
	// API does, for JWT-SVIDs after the CI token was spent).
	AgentlessParents []spiffeid.ID
	DefaultX509TTL   time.Duration
	DefaultJWTTTL    time.Duration
	Now              func() time.Time
	Log              *slog.Logger
}

// Issuers holds the two SVID issuers.
type Issuers struct{ cfg Config }

// New returns the issuers of cfg.
func New(cfg Config) *Issuers {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Issuers{cfg: cfg}
}

// Register adds both issuers to m under their token types.
func (i *Issuers) Register(m map[string]tokenapi.Issuer) {
	m[tokenapi.TokenTypeJWT] = tokenapi.IssuerFunc(i.IssueJWT)
	m[tokenapi.TokenTypeX509SVID] = tokenapi.IssuerFunc(i.IssueX509)
}

// MaxAudiences bounds the audiences of one JWT-SVID.
const MaxAudiences = 8

// IssueJWT mints a JWT-SVID for req's audience.
func (i *Issuers) IssueJWT(ctx context.Context, req *tokenapi.Request, sub *tokenapi.Subject) (*tokenapi.Response, error) {
	if len(req.Audience) == 0 {
		return nil, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "parameter audience is required for a JWT-SVID, e.g. audience=spiffe://example.org/api")
	}
	if len(req.Audience) > MaxAudiences {
		return nil, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "parameter audience: at most %d audiences, got %d", MaxAudiences, len(req.Audience))
	}
	now := i.cfg.Now()
	entry, err := i.match(ctx, req, sub, "jwt", now)
	if err != nil {
		return nil, err
	}
	ttl, err := i.ttl(entry.JWTTTL, i.cfg.DefaultJWTTTL, sub, now)
	if err != nil {
		return nil, err
	}
	token, exp, err := i.cfg.CA.SignJWTSVID(ctx, ca.JWTParams{ID: entry.SPIFFEID, Audience: req.Audience, TTL: ttl})
	if err != nil {
		return nil, err
	}
	detail := i.detail(sub, entry)
	detail["audience"] = logsafe.Truncate(strings.Join(req.Audience, " "))
	detail["expires_at"] = exp.UTC().Format(time.RFC3339)
	if err := i.record(ctx, now, model.AuditRecord{Action: "token.exchange.jwt", Object: entry.ID, Detail: detail},
		store.SVIDBinding{Digest: model.SVIDDigest([]byte(token)), EntryID: entry.ID, ExpiresAt: exp, SPIFFEID: entry.SPIFFEID.String()}); err != nil {
		return nil, err
	}
	return &tokenapi.Response{AccessToken: token, IssuedTokenType: tokenapi.TokenTypeJWT, ExpiresAt: exp,
		Extra: map[string]any{"spiffe_id": entry.SPIFFEID.String()}}, nil
}

// IssueX509 mints an X509-SVID for the public key of req's csr.
func (i *Issuers) IssueX509(ctx context.Context, req *tokenapi.Request, sub *tokenapi.Subject) (*tokenapi.Response, error) {
	raw := req.Param("csr")
	if raw == "" {
		return nil, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "parameter csr is required for an X509-SVID: a base64url-encoded DER PKCS#10 request")
	}
	der, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(raw, "="))
	if err != nil {
		return nil, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "parameter csr is not base64url (RFC 4648 §5) DER")
	}
	if _, err := ca.ParseCSR(der); err != nil {
		msg, _ := errkind.Public(err)
		return nil, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "parameter csr: %s", strings.TrimPrefix(msg, "parse csr: "))
	}
	now := i.cfg.Now()
	entry, err := i.match(ctx, req, sub, "x509", now)
	if err != nil {
		return nil, err
	}
	ttl, err := i.ttl(entry.X509TTL, i.cfg.DefaultX509TTL, sub, now)
	if err != nil {
		return nil, err
	}
	chain, err := i.cfg.CA.SignX509SVID(ctx, der, ca.X509Params{ID: entry.SPIFFEID, TTL: ttl, DNSNames: entry.DNSNames})
	if err != nil {
		return nil, err
	}
	detail := i.detail(sub, entry)
	detail["serial"] = chain[0].SerialNumber.Text(16)
	detail["not_after"] = chain[0].NotAfter.UTC().Format(time.RFC3339)
	if err := i.record(ctx, now, model.AuditRecord{Action: "token.exchange.x509", Object: entry.ID, Detail: detail},
		store.SVIDBinding{Digest: model.SVIDDigest(chain[0].Raw), EntryID: entry.ID, ExpiresAt: chain[0].NotAfter,
			Serial: strings.ToLower(chain[0].SerialNumber.Text(16)), SPIFFEID: entry.SPIFFEID.String()}); err != nil {
		return nil, err
	}
	var pemChain bytes.Buffer
	for _, c := range chain {
		_ = pem.Encode(&pemChain, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	var bundle bytes.Buffer
	var spiffeBundle []byte
	if b := i.cfg.Bundle(); b != nil {
		for _, c := range b.X509Authorities() {
			_ = pem.Encode(&bundle, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		if spiffeBundle, err = b.Marshal(); err != nil {
			return nil, fmt.Errorf("marshal trust bundle: %w", err)
		}
	}
	return &tokenapi.Response{AccessToken: pemChain.String(), IssuedTokenType: tokenapi.TokenTypeX509SVID,
		ExpiresAt: chain[0].NotAfter, Extra: map[string]any{
			"spiffe_id": entry.SPIFFEID.String(), "trust_bundle": bundle.String(), "spiffe_bundle": string(spiffeBundle),
		}}, nil
}

// match finds the entry the subject gets; see the package doc.
func (i *Issuers) match(ctx context.Context, req *tokenapi.Request, sub *tokenapi.Subject, kind string, now time.Time) (*model.Entry, error) {
	if kind == "jwt" && sub.Kind == tokenapi.SubjectSPIFFE && sub.Via == "mtls" {
		for _, p := range i.cfg.AgentlessParents {
			for _, e := range i.cfg.Entries.NodeEntries(p, nil, now) {
				if e.ParentID == p && e.SPIFFEID == sub.ID {
					return e, nil
				}
			}
		}
	}
	if sub.Kind != tokenapi.SubjectOIDC || sub.Parent.IsZero() {
		return nil, tokenapi.Errorf(tokenapi.ErrUnauthorizedClient,
			"requested_token_type %s is issued only for an OIDC subject_token from a configured issuer (a CI job); workloads with an SVID get theirs from their agent", req.RequestedTokenType)
	}
	sels := slices.Clone(sub.Selectors)
	slices.SortFunc(sels, func(a, b model.Selector) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Value, b.Value))
	})
	var matches []*model.Entry
	for _, e := range i.cfg.Entries.NodeEntries(sub.Parent, nil, now) {
		if e.ParentID == sub.Parent && len(e.Selectors) > 0 && model.SubsetOf(e.Selectors, sels) {
			matches = append(matches, e)
		}
	}
	slices.SortFunc(matches, func(a, b *model.Entry) int {
		return cmp.Or(cmp.Compare(a.SPIFFEID.String(), b.SPIFFEID.String()), cmp.Compare(a.ID, b.ID))
	})
	if want := req.Param("spiffe_id"); want != "" {
		matches = slices.DeleteFunc(matches, func(e *model.Entry) bool { return e.SPIFFEID.String() != want })
	}
	if len(matches) == 0 {
		checked := make([]string, len(sels))
		for j, s := range sels {
			checked[j] = s.String()
		}
		detail := i.detail(sub, nil)
		detail["reason"] = "no entry parented to " + sub.Parent.String() + " has selectors among the subject's"
		detail["selectors"] = logsafe.Truncate(strings.Join(checked, " "))
		detail["kind"] = kind
		if want := req.Param("spiffe_id"); want != "" {
			detail["spiffe_id"] = logsafe.Truncate(want)
		}
		if err := i.record(ctx, now, model.AuditRecord{Action: "token.exchange.deny", Object: sub.Parent.String(), Detail: detail}); err != nil {
			return nil, err
		}
		i.cfg.Log.InfoContext(ctx, "token exchange denied: no matching entry", "subject", logsafe.Truncate(sub.Name()), "parent", sub.Parent.String())
		desc := "no registration entry matches this token's claims"
		if req.Param("spiffe_id") != "" {
			desc = "no registration entry with spiffe_id " + logsafe.Truncate(req.Param("spiffe_id")) + " matches this token's claims"
		}
		return nil, tokenapi.Errorf(tokenapi.ErrUnauthorizedClient, "%s (parent %s)", desc, sub.Parent)
	}
	return matches[0], nil
}

// ttl is the entry's lifetime (or def), capped by the subject's expiry.
func (i *Issuers) ttl(entryTTL, def time.Duration, sub *tokenapi.Subject, now time.Time) (time.Duration, error) {
	ttl := cmp.Or(entryTTL, def)
	if !sub.ExpiresAt.IsZero() {
		left := sub.ExpiresAt.Sub(now).Truncate(time.Second)
		if left < time.Second {
			return 0, tokenapi.Errorf(tokenapi.ErrInvalidGrant, "subject_token expires in less than a second: fetch a fresh one")
		}
		ttl = min(ttl, left)
	}
	return ttl, nil
}

// detail is the audit detail common to every decision.
func (i *Issuers) detail(sub *tokenapi.Subject, e *model.Entry) map[string]string {
	d := maps.Clone(sub.Detail)
	if d == nil {
		d = map[string]string{}
	}
	d["subject"] = logsafe.Truncate(sub.Name())
	d["via"] = sub.Via
	if sub.Issuer != "" {
		d["issuer"] = sub.Issuer
	}
	if e != nil {
		d["spiffe_id"] = e.SPIFFEID.String()
		d["entry"] = e.ID
	}
	return d
}

// record makes the decision durable, with the binding of the SVID it
// issued if any (no node: the subject is not an agent's workload); nothing
// is handed out whose record failed.
func (i *Issuers) record(ctx context.Context, now time.Time, rec model.AuditRecord, issued ...store.SVIDBinding) error {
	rec.Actor = "token:" + logsafe.Truncate(rec.Detail["subject"])
	iss := store.Issuance{Records: []model.AuditRecord{rec}, At: now, Bindings: issued}
	for _, b := range issued {
		iss.Issued = append(iss.Issued, b.EntryID)
	}
	if err := i.cfg.Store.RecordIssuance(ctx, iss); err != nil {
		i.cfg.Log.ErrorContext(ctx, "cannot record token exchange in the audit log: refusing it", "error", err, "action", rec.Action)
		return errkind.Wrap(errkind.Unavailable, err, "cannot record the exchange in the audit log; retry")
	}
	return nil
}
