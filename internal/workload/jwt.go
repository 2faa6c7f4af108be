package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// jwtSVIDUse is the JWK "use" of JWT-SVID signing keys (SPIFFE Trust Domain
// and Bundle, 4.2.2).
const jwtSVIDUse = "jwt-svid"

// maxTokenLen bounds a JWT-SVID accepted for validation.
const maxTokenLen = 64 << 10

// FetchJWTSVID returns JWT-SVIDs for the audience: one per identity of the
// caller, or only the one for the requested SPIFFE ID.
func (a *api) FetchJWTSVID(ctx context.Context, req *workloadpb.JWTSVIDRequest) (*workloadpb.JWTSVIDResponse, error) {
	if len(req.GetAudience()) == 0 {
		return nil, errkind.New(errkind.InvalidArgument, "audience is required")
	}
	if slices.Contains(req.GetAudience(), "") {
		return nil, errkind.New(errkind.InvalidArgument, "audience values must not be empty")
	}
	var id spiffeid.ID
	if raw := req.GetSpiffeId(); raw != "" {
		var err error
		if id, err = spiffeid.FromString(raw); err != nil {
			return nil, errkind.New(errkind.InvalidArgument, "invalid spiffe_id %q: %v", truncate(raw, 256), err)
		}
	}
	if err := a.s.awaitReady(ctx, a.s.readyDeadline()); err != nil {
		return nil, err
	}
	_, sels, err := a.s.attest(ctx)
	if err != nil {
		return nil, err
	}
	svids, err := a.s.src.FetchJWTSVIDs(ctx, sels, id, req.GetAudience())
	if err != nil {
		return nil, fmt.Errorf("fetch jwt-svids: %w", err)
	}
	resp := &workloadpb.JWTSVIDResponse{Svids: make([]*workloadpb.JWTSVID, 0, len(svids))}
	hints := make(map[string]bool, len(svids))
	for _, svid := range svids {
		switch {
		case svid.ID.IsZero() || svid.Token == "":
			a.s.skipJWTSVID(svid, "incomplete SVID: no SPIFFE ID or token")
			continue
		case !id.IsZero() && svid.ID != id:
			a.s.skipJWTSVID(svid, "source returned an SVID for another SPIFFE ID than requested")
			continue
		case len(svid.Hint) > maxHintLen:
			a.s.skipJWTSVID(svid, "hint longer than 1024 bytes")
			continue
		case svid.Hint != "" && hints[svid.Hint]:
			a.s.skipJWTSVID(svid, "hint already used by an earlier SVID")
			continue
		}
		resp.Svids = append(resp.Svids, &workloadpb.JWTSVID{SpiffeId: svid.ID.String(), Svid: svid.Token, Hint: svid.Hint})
		if svid.Hint != "" {
			hints[svid.Hint] = true
		}
	}
	if len(resp.Svids) == 0 {
		if !id.IsZero() {
			return nil, errkind.Wrap(errkind.PermissionDenied, fmt.Errorf("caller selectors %v", sels),
				fmt.Sprintf("no identity %s issued to the caller", id))
		}
		return nil, a.s.noIdentity(sels)
	}
	if a.s.log.Enabled(ctx, slog.LevelDebug) {
		a.s.log.Debug("jwt-svids served", slog.Any(logKeySVIDs, jwtSVIDList(svids)), slog.Any(logKeySelectors, sels))
	}
	return resp, nil
}

// jwtSVIDList logs JWT-SVIDs without their tokens. (slog applies LogValue
// to a logged value, not to the elements of a logged slice.)
type jwtSVIDList []JWTSVID

// LogValue logs each SVID's SPIFFE ID, expiry and hint.
func (l jwtSVIDList) LogValue() slog.Value {
	attrs := make([]slog.Attr, len(l))
	for i, svid := range l {
		attrs[i] = slog.Attr{Key: strconv.Itoa(i), Value: svid.LogValue()}
	}
	return slog.GroupValue(attrs...)
}

func (s *Server) skipJWTSVID(svid JWTSVID, why string) {
	s.log.Warn("jwt-svid not served: "+why, slog.Any(logKeySVID, svid))
}

// FetchJWTBundles streams the JWT bundles (JWKS documents) of the trust
// domains the caller may see (see bundlesFor) to callers that have an
// identity.
func (a *api) FetchJWTBundles(_ *workloadpb.JWTBundlesRequest, stream grpc.ServerStreamingServer[workloadpb.JWTBundlesResponse]) error {
	ctx := stream.Context()
	deadline := a.s.readyDeadline()
	if err := a.s.awaitReady(ctx, deadline); err != nil {
		return err
	}
	p, at, err := a.s.attestKeyed(ctx)
	if err != nil {
		return err
	}
	sels, key := at.sels, at.key
	return watch(ctx, a, p, deadline,
		func(changed <-chan struct{}) (prepared[*workloadpb.JWTBundlesResponse], error) {
			return cached(&a.s.jwtBundles, key, changed, func() (prepared[*workloadpb.JWTBundlesResponse], error) {
				return prepareBuilt(a.s.jwtBundlesResponse(sels))
			})
		},
		func(resp prepared[*workloadpb.JWTBundlesResponse]) error { return stream.SendMsg(resp.enc) })
}

// jwtBundlesResponse builds the JWTBundlesResponse for a caller with
// selectors sels: a JWKS of JWT-SVID keys per trust domain, the own trust
// domain always included (possibly with no keys).
func (s *Server) jwtBundlesResponse(sels []model.Selector) (*workloadpb.JWTBundlesResponse, error) {
	if len(s.src.X509SVIDs(sels)) == 0 {
		return nil, s.noIdentity(sels)
	}
	bs := newBundleSet(s.bundlesFor(sels))
	own := bs.own()
	if own == nil {
		return nil, errNotReady
	}
	resp := &workloadpb.JWTBundlesResponse{Bundles: make(map[string][]byte, len(bs.list))}
	for _, b := range bs.list {
		if len(b.JWTAuthorities()) == 0 && b != own {
			continue
		}
		jwks, err := s.marshalJWKS(b)
		if err != nil {
			return nil, err
		}
		resp.Bundles[b.TrustDomain().IDString()] = jwks
	}
	return resp, nil
}

// marshalJWKS encodes b's JWT authorities as an RFC 7517 key set: each key
// with its kid and "use": "jwt-svid", sorted by kid so that an unchanged
// bundle always encodes to the same bytes. go-spiffe's jwtbundle.Marshal is
// not used: it sets no "use" and orders keys at random. A key go-jose cannot
// encode is logged and left out.
func (s *Server) marshalJWKS(b *spiffebundle.Bundle) ([]byte, error) {
	auths := b.JWTAuthorities()
	kids := make([]string, 0, len(auths))
	for kid := range auths {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(kids))}
	for _, kid := range kids {
		k := jose.JSONWebKey{Key: auths[kid], KeyID: kid, Use: jwtSVIDUse}
		if !k.Valid() {
			s.log.Warn("jwt authority not served: unsupported key",
				slog.String(logKeyTD, b.TrustDomain().String()), slog.String("kid", kid))
			continue
		}
		set.Keys = append(set.Keys, k)
	}
	out, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("marshal jwt bundle of %s: %w", b.TrustDomain(), err)
	}
	return out, nil
}

// ValidateJWTSVID validates a JWT-SVID for the audience against the bundles
// the caller may see: its own trust domain's and, when the Source scopes
// bundles by caller, those of the trust domains its entries federate with
// (else every bundle the Source holds). The caller needs no identity: one
// without a matching entry validates against the own trust domain only.
func (a *api) ValidateJWTSVID(ctx context.Context, req *workloadpb.ValidateJWTSVIDRequest) (*workloadpb.ValidateJWTSVIDResponse, error) {
	switch {
	case req.GetAudience() == "":
		return nil, errkind.New(errkind.InvalidArgument, "audience is required")
	case req.GetSvid() == "":
		return nil, errkind.New(errkind.InvalidArgument, "svid is required")
	case len(req.GetSvid()) > maxTokenLen:
		return nil, errkind.New(errkind.InvalidArgument, "svid is longer than %d bytes", maxTokenLen)
	}
	if err := a.s.awaitReady(ctx, a.s.readyDeadline()); err != nil {
		return nil, err
	}
	bundles, err := a.s.validationBundles(ctx)
	if err != nil {
		return nil, err
	}
	bs := newBundleSet(bundles)
	set := jwtbundle.NewSet()
	for _, b := range bs.list {
		set.Add(b.JWTBundle())
	}
	svid, err := jwtsvid.ParseAndValidate(req.GetSvid(), set, []string{req.GetAudience()})
	if err != nil {
		return nil, errkind.New(errkind.InvalidArgument, "invalid jwt-svid: %v", err)
	}
	if rv, ok := a.s.src.(Revocations); ok && rv.JWTRevoked(svid.ID, IssuedAt(svid.Claims)) {
		a.s.log.Info("refused a revoked jwt-svid", slog.String(logKeySPIFFEID, svid.ID.String()))
		return nil, errkind.New(errkind.InvalidArgument, "invalid jwt-svid: the jwt-svids of %s issued until its revocation are revoked", svid.ID)
	}
	claims, err := structpb.NewStruct(normalizeClaims(svid.Claims))
	if err != nil {
		return nil, fmt.Errorf("encode claims of jwt-svid for %s: %w", svid.ID, err)
	}
	if a.s.log.Enabled(ctx, slog.LevelDebug) {
		a.s.log.Debug("jwt-svid validated", slog.String(logKeySPIFFEID, svid.ID.String()),
			slog.Time(logKeyExpiresAt, svid.Expiry))
	}
	return &workloadpb.ValidateJWTSVIDResponse{SpiffeId: svid.ID.String(), Claims: claims}, nil
}

// validationBundles returns the bundles ValidateJWTSVID checks a token
// against. A Source that scopes bundles by caller needs the caller attested
// (an attestation failure fails the call); for others no attestation is
// done, as before federation.
func (s *Server) validationBundles(ctx context.Context) ([]*spiffebundle.Bundle, error) {
	if _, ok := s.src.(CallerBundler); !ok {
		return s.src.Bundles(), nil
	}
	_, sels, err := s.attest(ctx)
	if err != nil {
		return nil, err
	}
	return s.bundlesFor(sels), nil
}

// normalizeClaims converts decoded JSON into the types structpb accepts:
// json.Number becomes float64 (or string if it does not parse).
func normalizeClaims(v map[string]any) map[string]any {
	out := make(map[string]any, len(v))
	for k, x := range v {
		out[k] = normalizeValue(x)
	}
	return out
}

func normalizeValue(x any) any {
	switch t := x.(type) {
	case json.Number:
		if f, err := t.Float64(); err == nil {
			return f
		}
		return t.String()
	case map[string]any:
		return normalizeClaims(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = normalizeValue(e)
		}
		return out
	default:
		return x
	}
}

// truncate shortens s to at most n bytes for use in messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// IssuedAt returns a JWT's iat claim in unix seconds, 0 when it has none
// (or not a number).
func IssuedAt(claims map[string]any) int64 {
	switch v := claims["iat"].(type) {
	case float64:
		return int64(v)
	case int64:
		return v
	case json.Number:
		n, _ := v.Int64()
		return n
	}
	return 0
}
