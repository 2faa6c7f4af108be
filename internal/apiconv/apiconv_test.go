package apiconv

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/signet-id/signet/internal/errkind"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
)

func TestEntryRoundTrip(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	in := model.Entry{
		ID:            "e1",
		SPIFFEID:      spiffeid.RequireFromPath(td, "/web"),
		ParentID:      spiffeid.RequireFromPath(td, "/node/a"),
		Selectors:     []model.Selector{{Type: "unix", Value: "gid:1"}, {Type: "unix", Value: "uid:1000"}},
		X509TTL:       time.Hour,
		JWTTTL:        5 * time.Minute,
		DNSNames:      []string{"web.internal", "*.web.internal"},
		Admin:         true,
		FederatesWith: []spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString("partner.org")},
		ExpiresAt:     time.Unix(1_900_000_000, 0).UTC(),
		Hint:          "internal",
		Labels:        map[string]string{"owner": "payments"},
		Revision:      7,
		CreatedAt:     time.Unix(1_800_000_000, 0).UTC(),
	}
	out, err := EntryFromProto(EntryToProto(in))
	if err != nil {
		t.Fatalf("EntryFromProto: %v", err)
	}
	if diff := cmp.Diff(in, out, cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b }),
		cmp.Comparer(func(a, b spiffeid.TrustDomain) bool { return a == b })); diff != "" {
		t.Errorf("round trip (-in +out):\n%s", diff)
	}
}

func TestEntryFromProtoErrors(t *testing.T) {
	ok := func() *commonv1.Entry {
		return &commonv1.Entry{SpiffeId: "spiffe://example.org/web", ParentId: "spiffe://example.org/node",
			Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:1"}}}
	}
	tests := []struct {
		name   string
		mutate func(*commonv1.Entry)
		want   string
	}{
		{"missing spiffe_id", func(e *commonv1.Entry) { e.SpiffeId = "" }, "spiffe_id is required"},
		{"bad spiffe_id", func(e *commonv1.Entry) { e.SpiffeId = "https://example.org/web" }, `spiffe_id "https://example.org/web" is not a valid SPIFFE ID`},
		{"bad parent_id", func(e *commonv1.Entry) { e.ParentId = "spiffe://Example.org/x" }, "parent_id"},
		{"bad selector", func(e *commonv1.Entry) { e.Selectors[0].Value = "" }, "selectors[0]"},
		{"negative ttl", func(e *commonv1.Entry) { e.JwtTtlSeconds = -5 }, "jwt_ttl_seconds -5 is negative"},
		{"bad federates_with", func(e *commonv1.Entry) { e.FederatesWith = []string{"Bad Domain"} }, "federates_with[0]"},
		{"bad dns", func(e *commonv1.Entry) { e.DnsNames = []string{"web..internal"} }, "dns_names[0]"},
		{"spiffe_id over 2048 bytes", func(e *commonv1.Entry) { e.SpiffeId = "spiffe://example.org/" + strings.Repeat("a", 2048) }, "spiffe_id"},
		{"too many selectors", func(e *commonv1.Entry) {
			e.Selectors = make([]*commonv1.Selector, 65)
			for i := range e.Selectors {
				e.Selectors[i] = &commonv1.Selector{Type: "k8s", Value: fmt.Sprint(i)}
			}
		}, "selectors: 65 selectors, at most 64"},
		{"built-in selector value", func(e *commonv1.Entry) { e.Selectors[0].Value = "uid:abc" }, "selectors[0]"},
		{"too many dns names", func(e *commonv1.Entry) { e.DnsNames = make([]string, 129) }, "dns_names: 129 names, at most 128"},
		{"too many federated trust domains", func(e *commonv1.Entry) { e.FederatesWith = make([]string, 33) }, "federates_with: 33"},
		{"long trust domain", func(e *commonv1.Entry) { e.FederatesWith = []string{strings.Repeat("t", 256)} }, "federates_with[0]"},
		{"hint over 1024 bytes", func(e *commonv1.Entry) { e.Hint = strings.Repeat("h", 1025) }, "hint is 1025 bytes: at most 1024"},
		{"bad label", func(e *commonv1.Entry) { e.Labels = map[string]string{"Bad Key": "v"} }, "labels"},
		{"bad id", func(e *commonv1.Entry) { e.Id = "has space" }, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ok()
			tt.mutate(e)
			_, err := EntryFromProto(e)
			if err == nil || !strings.Contains(err.Error(), tt.want) || errkind.Of(err) != errkind.InvalidArgument {
				t.Fatalf("EntryFromProto = %v, want InvalidArgument containing %q", err, tt.want)
			}
		})
	}
}

func TestValidateDNSName(t *testing.T) {
	for name, valid := range map[string]bool{
		"web": true, "web.internal": true, "*.web.internal": true, "a-b.c": true,
		"": false, "-web": false, "web.": false, ".web": false, "we b": false, "*": false, "a.*.b": false,
		strings.Repeat("a", 64): false,
	} {
		if err := ValidateDNSName(name); (err == nil) != valid {
			t.Errorf("ValidateDNSName(%q) = %v, want valid=%v", name, err, valid)
		}
	}
}

func TestBundleRoundTrip(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	b := spiffebundle.New(td)
	b.SetSequenceNumber(9)
	b.SetRefreshHint(5 * time.Minute)
	p, err := BundleToProto(b)
	if err != nil {
		t.Fatal(err)
	}
	back, err := BundleFromProto(p)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(b) {
		t.Errorf("bundle round trip changed it")
	}
	if _, err := BundleFromProto(&commonv1.Bundle{TrustDomain: "example.org", X509Authorities: [][]byte{[]byte("junk")}}); err == nil {
		t.Error("BundleFromProto accepted a junk certificate")
	}
}

// FuzzEntryFromProto feeds arbitrary wire entries, as the admin API
// receives them: conversion must never panic, and what it accepts must
// satisfy the store's own validation.
func FuzzEntryFromProto(f *testing.F) {
	seed := &commonv1.Entry{SpiffeId: "spiffe://example.org/web", ParentId: "spiffe://example.org/node",
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:1"}}, DnsNames: []string{"web"}, FederatesWith: []string{"partner.org"}}
	b, _ := proto.Marshal(seed)
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var e commonv1.Entry
		if proto.Unmarshal(data, &e) != nil {
			return
		}
		out, err := EntryFromProto(&e)
		if err != nil {
			if errkind.Of(err) != errkind.InvalidArgument {
				t.Fatalf("EntryFromProto error of kind %v: %v", errkind.Of(err), err)
			}
			return
		}
		if len(out.Selectors) > 0 {
			if err := out.Validate(); err != nil {
				t.Fatalf("accepted entry fails store validation: %v", err)
			}
		}
	})
}
