package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/config"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
)

// entryJSON is the CLI's JSON shape of an entry: what `entry list --json`
// prints and what `entry create --file` reads, so one feeds the other.
type entryJSON struct {
	ID            string            `json:"id,omitempty"`
	SPIFFEID      string            `json:"spiffe_id"`
	ParentID      string            `json:"parent_id"`
	Selectors     []string          `json:"selectors"`
	X509TTL       string            `json:"x509_ttl,omitempty"`
	JWTTTL        string            `json:"jwt_ttl,omitempty"`
	DNSNames      []string          `json:"dns_names,omitempty"`
	Admin         bool              `json:"admin,omitempty"`
	Downstream    bool              `json:"downstream,omitempty"`
	FederatesWith []string          `json:"federates_with,omitempty"`
	ExpiresAt     string            `json:"expires_at,omitempty"`
	Hint          string            `json:"hint,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Revision      int64             `json:"revision,omitempty"`
	CreatedAt     string            `json:"created_at,omitempty"`
	UpdatedAt     string            `json:"updated_at,omitempty"`
	FirstIssuedAt string            `json:"first_issued_at,omitempty"`
	LastIssuedAt  string            `json:"last_issued_at,omitempty"`
	FirstServedAt string            `json:"first_served_at,omitempty"`
	LastServedAt  string            `json:"last_served_at,omitempty"`
}

func rfc3339(s int64) string {
	if s == 0 {
		return ""
	}
	return time.Unix(s, 0).UTC().Format(time.RFC3339)
}

func seconds(s int64) string {
	if s == 0 {
		return ""
	}
	return config.FormatDuration(time.Duration(s) * time.Second)
}

func entryToJSON(e *commonv1.Entry) entryJSON {
	sels := make([]string, len(e.GetSelectors()))
	for i, s := range e.GetSelectors() {
		sels[i] = s.GetType() + ":" + s.GetValue()
	}
	return entryJSON{
		ID: e.GetId(), SPIFFEID: e.GetSpiffeId(), ParentID: e.GetParentId(), Selectors: sels,
		X509TTL: seconds(e.GetX509TtlSeconds()), JWTTTL: seconds(e.GetJwtTtlSeconds()),
		DNSNames: e.GetDnsNames(), Admin: e.GetAdmin(), Downstream: e.GetDownstream(),
		FederatesWith: e.GetFederatesWith(), ExpiresAt: rfc3339(e.GetExpiresAt()), Hint: e.GetHint(),
		Labels: e.GetLabels(), Revision: e.GetRevision(), CreatedAt: rfc3339(e.GetCreatedAt()),
		UpdatedAt: rfc3339(e.GetUpdatedAt()), FirstIssuedAt: rfc3339(e.GetFirstIssuedAt()),
		LastIssuedAt: rfc3339(e.GetLastIssuedAt()), FirstServedAt: rfc3339(e.GetFirstServedAt()),
		LastServedAt: rfc3339(e.GetLastServedAt()),
	}
}

// toProto validates the JSON entry; errors name the field.
func (j *entryJSON) toProto() (*commonv1.Entry, error) {
	e := &commonv1.Entry{
		Id: j.ID, SpiffeId: j.SPIFFEID, ParentId: j.ParentID, DnsNames: j.DNSNames, Admin: j.Admin,
		Downstream: j.Downstream, FederatesWith: j.FederatesWith, Hint: j.Hint, Labels: j.Labels,
	}
	for i, d := range j.DNSNames {
		if err := checkDNSName(fmt.Sprintf("dns_names[%d]", i), d); err != nil {
			return nil, err
		}
	}
	for i, s := range j.Selectors {
		sel, err := model.ParseSelector(s)
		if err != nil {
			return nil, fmt.Errorf("selectors[%d]: %w", i, err)
		}
		e.Selectors = append(e.Selectors, &commonv1.Selector{Type: sel.Type, Value: sel.Value})
	}
	var err error
	if e.X509TtlSeconds, err = parseTTL("x509_ttl", j.X509TTL); err != nil {
		return nil, err
	}
	if e.JwtTtlSeconds, err = parseTTL("jwt_ttl", j.JWTTTL); err != nil {
		return nil, err
	}
	if j.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339, j.ExpiresAt)
		if err != nil {
			return nil, fmt.Errorf("expires_at %q: want an RFC 3339 time such as 2027-01-02T15:04:05Z", j.ExpiresAt)
		}
		e.ExpiresAt = t.Unix()
	}
	// Check locally what can be checked, so a bad file fails before any
	// network call, with the field named.
	se, err := apiconv.EntryFromProto(e)
	if err != nil {
		return nil, err
	}
	if err := se.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// parseTTL parses a TTL flag or field (config.ParseDuration's syntax) into
// whole seconds; "" is zero (the server's default).
func parseTTL(field, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil || d <= 0 || d%time.Second != 0 {
		return 0, fmt.Errorf("%s %q: want a positive duration in whole seconds, written as %s", field, s, config.DurationForms)
	}
	return int64(d / time.Second), nil
}

func selectorsText(e *commonv1.Entry) string {
	out := make([]string, len(e.GetSelectors()))
	for i, s := range e.GetSelectors() {
		out[i] = s.GetType() + ":" + s.GetValue()
	}
	slices.Sort(out)
	return joinOrDash(out)
}

func joinOrDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	out := s[0]
	for _, x := range s[1:] {
		out += "," + x
	}
	return out
}
