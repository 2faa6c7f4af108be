// Package apiconv converts between Signet's generated protobuf types and the
// plain domain types of internal/store and go-spiffe. Generated types stop at
// the transport adapters; everything else works on what this package returns.
//
// Conversions from protobuf validate as they go and return InvalidArgument
// errors (internal/errkind) naming the offending field, so handlers can return
// them to callers unchanged.
package apiconv

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/model"
)

// SelectorsToProto converts selectors to their wire form.
func SelectorsToProto(sels []model.Selector) []*commonv1.Selector {
	out := make([]*commonv1.Selector, len(sels))
	for i, s := range sels {
		out[i] = &commonv1.Selector{Type: s.Type, Value: s.Value}
	}
	return out
}

// SelectorsFromProto validates and converts wire selectors, returning them in
// canonical (sorted, deduplicated) form.
func SelectorsFromProto(in []*commonv1.Selector) ([]model.Selector, error) {
	if len(in) > model.MaxSelectors {
		return nil, errkind.New(errkind.InvalidArgument, "selectors: %d selectors, at most %d", len(in), model.MaxSelectors)
	}
	out := make([]model.Selector, 0, len(in))
	for i, s := range in {
		sel := model.Selector{Type: s.GetType(), Value: s.GetValue()}
		if err := sel.Validate(); err != nil {
			return nil, model.FieldError(fmt.Sprintf("selectors[%d]", i), err)
		}
		out = append(out, sel)
	}
	return model.SortSelectors(out), nil
}

// EntryToProto converts an entry to its wire form.
func EntryToProto(e model.Entry) *commonv1.Entry {
	fw := make([]string, len(e.FederatesWith))
	for i, td := range e.FederatesWith {
		fw[i] = td.IDString()
	}
	return &commonv1.Entry{
		Id:             e.ID,
		SpiffeId:       idString(e.SPIFFEID),
		ParentId:       idString(e.ParentID),
		Selectors:      SelectorsToProto(e.Selectors),
		X509TtlSeconds: int64(e.X509TTL / time.Second),
		JwtTtlSeconds:  int64(e.JWTTTL / time.Second),
		DnsNames:       e.DNSNames,
		Admin:          e.Admin,
		Downstream:     e.Downstream,
		FederatesWith:  fw,
		ExpiresAt:      UnixOrZero(e.ExpiresAt),
		Hint:           e.Hint,
		Labels:         e.Labels,
		Revision:       e.Revision,
		CreatedAt:      UnixOrZero(e.CreatedAt),
		UpdatedAt:      UnixOrZero(e.UpdatedAt),
		FirstIssuedAt:  UnixOrZero(e.FirstIssuedAt),
		LastIssuedAt:   UnixOrZero(e.LastIssuedAt),
		FirstServedAt:  UnixOrZero(e.FirstServedAt),
		LastServedAt:   UnixOrZero(e.LastServedAt),
	}
}

// EntryFromProto validates and converts a wire entry: what it returns
// passes model.Entry.Validate. Read-only fields (revision, timestamps other
// than expires_at) are carried over as given; the store ignores them on
// writes.
func EntryFromProto(in *commonv1.Entry) (model.Entry, error) {
	if in == nil {
		return model.Entry{}, errkind.New(errkind.InvalidArgument, "entry is required")
	}
	if in.GetId() != "" {
		if err := model.ValidateEntryID("id", in.GetId()); err != nil {
			return model.Entry{}, err
		}
	}
	id, err := ParseID("spiffe_id", in.GetSpiffeId())
	if err != nil {
		return model.Entry{}, err
	}
	parent, err := ParseID("parent_id", in.GetParentId())
	if err != nil {
		return model.Entry{}, err
	}
	sels, err := SelectorsFromProto(in.GetSelectors())
	if err != nil {
		return model.Entry{}, err
	}
	if in.GetX509TtlSeconds() < 0 {
		return model.Entry{}, errkind.New(errkind.InvalidArgument, "x509_ttl_seconds %d is negative: use 0 for the server default or a positive number", in.GetX509TtlSeconds())
	}
	if in.GetJwtTtlSeconds() < 0 {
		return model.Entry{}, errkind.New(errkind.InvalidArgument, "jwt_ttl_seconds %d is negative: use 0 for the server default or a positive number", in.GetJwtTtlSeconds())
	}
	if n := len(in.GetFederatesWith()); n > model.MaxFederatesWith {
		return model.Entry{}, errkind.New(errkind.InvalidArgument, "federates_with: %d trust domains, at most %d", n, model.MaxFederatesWith)
	}
	var fw []spiffeid.TrustDomain
	for i, s := range in.GetFederatesWith() {
		if len(s) > model.MaxTrustDomainLen {
			return model.Entry{}, errkind.New(errkind.InvalidArgument, "federates_with[%d] %q is %d bytes: a trust domain name may be at most %d",
				i, logsafe.Truncate(s), len(s), model.MaxTrustDomainLen)
		}
		td, err := spiffeid.TrustDomainFromString(s)
		if err != nil {
			return model.Entry{}, errkind.New(errkind.InvalidArgument, "federates_with[%d] %q is not a trust domain: %v (want a name such as example.org)", i, s, err)
		}
		fw = append(fw, td)
	}
	if n := len(in.GetDnsNames()); n > model.MaxDNSNames {
		return model.Entry{}, errkind.New(errkind.InvalidArgument, "dns_names: %d names, at most %d", n, model.MaxDNSNames)
	}
	for i, d := range in.GetDnsNames() {
		if err := model.ValidateDNSName(d); err != nil {
			return model.Entry{}, model.FieldError(fmt.Sprintf("dns_names[%d]", i), err)
		}
	}
	e := model.Entry{
		ID:            in.GetId(),
		SPIFFEID:      id,
		ParentID:      parent,
		Selectors:     sels,
		X509TTL:       time.Duration(in.GetX509TtlSeconds()) * time.Second,
		JWTTTL:        time.Duration(in.GetJwtTtlSeconds()) * time.Second,
		DNSNames:      in.GetDnsNames(),
		Admin:         in.GetAdmin(),
		Downstream:    in.GetDownstream(),
		FederatesWith: fw,
		ExpiresAt:     fromUnix(in.GetExpiresAt()),
		Hint:          in.GetHint(),
		Labels:        in.GetLabels(),
		Revision:      in.GetRevision(),
		CreatedAt:     fromUnix(in.GetCreatedAt()),
		UpdatedAt:     fromUnix(in.GetUpdatedAt()),
		FirstIssuedAt: fromUnix(in.GetFirstIssuedAt()),
		LastIssuedAt:  fromUnix(in.GetLastIssuedAt()),
		FirstServedAt: fromUnix(in.GetFirstServedAt()),
		LastServedAt:  fromUnix(in.GetLastServedAt()),
	}
	if err := e.Validate(); err != nil {
		return model.Entry{}, err
	}
	return e, nil
}

// ParseID parses a SPIFFE ID given in the named field, with an error that
// names the field and shows what is accepted. IDs over model.MaxIDLen bytes
// are refused.
func ParseID(field, s string) (spiffeid.ID, error) {
	if s == "" {
		return spiffeid.ID{}, errkind.New(errkind.InvalidArgument, "%s is required: want a SPIFFE ID such as spiffe://example.org/web", field)
	}
	if err := model.ValidateIDStringLen(field, s); err != nil {
		return spiffeid.ID{}, err
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, errkind.New(errkind.InvalidArgument, "%s %q is not a valid SPIFFE ID: %v (want spiffe://<trust-domain>/<path>, lower-case trust domain, no query or fragment)", field, logsafe.Truncate(s), err)
	}
	return id, nil
}

// ValidateDNSName checks a DNS name for an X.509 SAN; see
// model.ValidateDNSName.
func ValidateDNSName(name string) error { return model.ValidateDNSName(name) }

// BundleToProto converts a trust bundle to its wire form.
func BundleToProto(b *spiffebundle.Bundle) (*commonv1.Bundle, error) {
	out := &commonv1.Bundle{TrustDomain: b.TrustDomain().Name()}
	if seq, ok := b.SequenceNumber(); ok {
		out.Sequence = seq
	}
	if hint, ok := b.RefreshHint(); ok {
		out.RefreshHintSeconds = int64(hint / time.Second)
	}
	for _, c := range b.X509Authorities() {
		out.X509Authorities = append(out.X509Authorities, c.Raw)
	}
	for kid, key := range b.JWTAuthorities() {
		der, err := x509.MarshalPKIXPublicKey(key)
		if err != nil {
			return nil, fmt.Errorf("marshal jwt authority %s: %w", kid, err)
		}
		out.JwtAuthorities = append(out.JwtAuthorities, &commonv1.JWTKey{KeyId: kid, PublicKey: der})
	}
	return out, nil
}

// BundleFromProto parses a wire bundle.
func BundleFromProto(in *commonv1.Bundle) (*spiffebundle.Bundle, error) {
	if in == nil {
		return nil, errkind.New(errkind.InvalidArgument, "bundle is required")
	}
	td, err := spiffeid.TrustDomainFromString(in.GetTrustDomain())
	if err != nil {
		return nil, errkind.New(errkind.InvalidArgument, "bundle trust_domain %q: %v", in.GetTrustDomain(), err)
	}
	b := spiffebundle.New(td)
	b.SetSequenceNumber(in.GetSequence())
	if in.GetRefreshHintSeconds() > 0 {
		b.SetRefreshHint(time.Duration(in.GetRefreshHintSeconds()) * time.Second)
	}
	for i, der := range in.GetX509Authorities() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, errkind.New(errkind.InvalidArgument, "bundle x509_authorities[%d]: %v", i, err)
		}
		b.AddX509Authority(c)
	}
	for i, k := range in.GetJwtAuthorities() {
		pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
		if err != nil {
			return nil, errkind.New(errkind.InvalidArgument, "bundle jwt_authorities[%d] (%s): %v", i, k.GetKeyId(), err)
		}
		if k.GetKeyId() == "" {
			return nil, errkind.New(errkind.InvalidArgument, "bundle jwt_authorities[%d]: key_id is required", i)
		}
		if err := b.AddJWTAuthority(k.GetKeyId(), pub.(crypto.PublicKey)); err != nil {
			return nil, errkind.New(errkind.InvalidArgument, "bundle jwt_authorities[%d]: %v", i, err)
		}
	}
	return b, nil
}

// EntrySetDigest is the digest of a node's entry set that agent and server
// compare in Sync to detect deleted entries (agent.proto, SyncRequest):
// SHA-256 over the ids in sorted order, each followed by a newline. It
// sorts ids in place.
func EntrySetDigest(ids []string) []byte {
	slices.Sort(ids)
	h := sha256.New()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{'\n'})
	}
	return h.Sum(nil)
}

// StatusToProto converts an item error to a wire status (nil = OK).
func StatusToProto(err error) *commonv1.Status {
	if err == nil {
		return &commonv1.Status{}
	}
	msg, _ := errkind.Public(err)
	return &commonv1.Status{Code: int32(errkind.GRPCCode(errkind.Of(err))), Message: msg}
}

func idString(id spiffeid.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

func fromUnix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

// UnixOrZero is t in Unix seconds, or 0 for the zero time (the wire's
// "unset").
func UnixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
