package workload

import (
	"context"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/model"
)

// X509SVID is an identity the cache holds for one registration entry.
type X509SVID struct {
	EntryID string
	ID      spiffeid.ID
	// ChainDER is the certificate chain, leaf first, as concatenated DER,
	// exactly as the Workload API sends it.
	ChainDER []byte
	// KeyDER is the private key in PKCS#8 DER. The cache keeps keys encoded:
	// a node may hold tens of thousands of SVIDs, and serving them needs no
	// parsing.
	KeyDER    []byte
	ExpiresAt time.Time // the leaf's NotAfter
	Hint      string
}

// LogValue logs the SVID without its key.
func (s X509SVID) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String(logKeyEntryID, s.EntryID),
		slog.String(logKeySPIFFEID, s.ID.String()),
	}
	if s.Hint != "" {
		attrs = append(attrs, slog.String(logKeyHint, logsafe.Truncate(s.Hint)))
	}
	if !s.ExpiresAt.IsZero() {
		attrs = append(attrs, slog.Time(logKeyExpiresAt, s.ExpiresAt))
	}
	return slog.GroupValue(attrs...)
}

// JWTSVID is a JWT-SVID minted for one entry and one audience.
type JWTSVID struct {
	ID        spiffeid.ID
	Token     string
	ExpiresAt time.Time
	Hint      string
}

// LogValue logs the SVID's SPIFFE ID and expiry, never the token.
func (s JWTSVID) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String(logKeySPIFFEID, s.ID.String()),
		slog.Time(logKeyExpiresAt, s.ExpiresAt),
	}
	if s.Hint != "" {
		attrs = append(attrs, slog.String(logKeyHint, logsafe.Truncate(s.Hint)))
	}
	return slog.GroupValue(attrs...)
}

// Revocations is the optional capability of a Source that knows of SVID
// revocations: ValidateJWTSVID refuses the JWT-SVIDs it reports revoked.
type Revocations interface {
	// JWTRevoked reports whether a JWT-SVID for id issued at issuedAt
	// (unix seconds; 0 when it has no iat) is revoked.
	JWTRevoked(id spiffeid.ID, issuedAt int64) bool
}

// Source is what the Workload API serves: the node's identities and bundles.
type Source interface {
	// Ready reports whether the source has synced at least once (before that, calls get Unavailable).
	Ready() bool
	// X509SVIDs returns the SVIDs of every entry whose selectors are a subset of sels (sels is canonical, sorted).
	X509SVIDs(sels []model.Selector) []X509SVID
	// FetchJWTSVIDs mints or returns cached JWT-SVIDs for the matching entries (only id when id is non-zero) for the audience.
	FetchJWTSVIDs(ctx context.Context, sels []model.Selector, id spiffeid.ID, audience []string) ([]JWTSVID, error)
	// Bundles returns the trust domain's own bundle first, then federated ones.
	Bundles() []*spiffebundle.Bundle
	// Changed returns a channel that is closed at the next change of SVIDs or bundles after the call.
	Changed() <-chan struct{}
}
