package ca

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/signet-id/signet/internal/model"
)

func TestBundleFromAuthorities(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	if _, err := e.m.Prepare(ctx, model.AuthorityX509); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Prepare(ctx, model.AuthorityJWT); err != nil {
		t.Fatal(err)
	}
	revoked := e.active(t, model.AuthorityX509)
	revoked.ID, revoked.State = "gone", model.StateRevoked
	revoked.Certificate = []byte("never parsed: revoked authorities are skipped")
	foreign := model.Authority{ID: "future", Kind: "ssh", State: model.StateActive}
	auths, _ := e.store.ListAuthorities(ctx)
	auths = append(auths, revoked, foreign)

	b, err := BundleFromAuthorities(testTD, auths, 42)
	if err != nil {
		t.Fatalf("BundleFromAuthorities() = %v", err)
	}
	if seq, ok := b.SequenceNumber(); !ok || seq != 42 {
		t.Errorf("SequenceNumber() = %d, %v; want 42", seq, ok)
	}
	if h, ok := b.RefreshHint(); !ok || h != 5*time.Minute {
		t.Errorf("RefreshHint() = %s, %v; want 5m", h, ok)
	}
	if n := len(b.X509Authorities()); n != 2 {
		t.Errorf("%d X.509 authorities, want active + prepared", n)
	}
	for _, a := range auths {
		if a.Kind == model.AuthorityJWT && !b.HasJWTAuthority(a.ID) {
			t.Errorf("JWT authority %s (%s) missing", a.ID, a.State)
		}
	}

	// The serialized form follows the bundle and SVID specifications.
	raw, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
		Seq  *uint64          `json:"spiffe_sequence"`
		Hint *int64           `json:"spiffe_refresh_hint"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Seq == nil || *doc.Seq != 42 || doc.Hint == nil || *doc.Hint != 300 {
		t.Errorf("spiffe_sequence, spiffe_refresh_hint = %v, %v; want 42, 300", doc.Seq, doc.Hint)
	}
	for _, k := range doc.Keys {
		switch k["use"] {
		case "x509-svid":
			if _, ok := k["kid"]; ok {
				t.Errorf("x509-svid JWK has a kid: %v", k)
			}
			if x5c, ok := k["x5c"].([]any); !ok || len(x5c) != 1 {
				t.Errorf("x509-svid JWK x5c = %v, want exactly one certificate", k["x5c"])
			}
		case "jwt-svid":
			if k["kid"] == "" || k["kid"] == nil {
				t.Errorf("jwt-svid JWK without kid: %v", k)
			}
		default:
			t.Errorf("JWK with use %v", k["use"])
		}
		if k["kty"] == nil {
			t.Errorf("JWK without kty: %v", k)
		}
	}
	back, err := spiffebundle.Parse(testTD, raw)
	if err != nil {
		t.Fatalf("spiffebundle.Parse(Marshal()) = %v", err)
	}
	if !back.Equal(b) {
		t.Error("bundle does not round-trip")
	}
}

func TestBundleFromAuthoritiesRejectsBadData(t *testing.T) {
	tests := []struct {
		name string
		a    model.Authority
	}{
		{"bad certificate", model.Authority{ID: "x", Kind: model.AuthorityX509, State: model.StateActive, Certificate: []byte{1}}},
		{"leaf certificate", model.Authority{ID: "x", Kind: model.AuthorityX509, State: model.StateActive, Certificate: e2eCert(t)}},
		{"bad public key", model.Authority{ID: "x", Kind: model.AuthorityJWT, State: model.StateOld, PublicKey: []byte{1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := BundleFromAuthorities(testTD, []model.Authority{tt.a}, 1); err == nil {
				t.Error("BundleFromAuthorities() = nil error")
			}
		})
	}
}
