package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/apiconv"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workload"
	"github.com/signet-id/signet/internal/workloadattest"
)

// switchAttestor gives every caller the selectors last set: each go-spiffe
// call below opens its own connection, attested afresh, so one test
// process can play several workloads.
type switchAttestor struct {
	sels atomic.Pointer[[]model.Selector]
}

func (a *switchAttestor) Name() string { return "test" }

func (a *switchAttestor) Attest(context.Context, workloadattest.Peer) ([]model.Selector, error) {
	return *a.sels.Load(), nil
}

func (a *switchAttestor) set(sels ...string) {
	out := make([]model.Selector, 0, len(sels))
	for _, s := range sels {
		out = append(out, model.Selector{Type: "test", Value: s})
	}
	a.sels.Store(&out)
}

// fedPartner is a federated trust domain with an X.509 and a JWT authority.
type fedPartner struct {
	*testCA
	jwtKey *ecdsa.PrivateKey
}

const partnerKID = "partner-1"

func newFedPartner(t *testing.T, td string) *fedPartner {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &fedPartner{testCA: newTestCA(t, td), jwtKey: key}
}

func (p *fedPartner) proto(t *testing.T) *commonv1.Bundle {
	t.Helper()
	b := spiffebundle.FromX509Authorities(p.td, []*x509.Certificate{p.cert})
	if err := b.AddJWTAuthority(partnerKID, p.jwtKey.Public()); err != nil {
		t.Fatal(err)
	}
	b.SetSequenceNumber(1)
	pb, err := apiconv.BundleToProto(b)
	if err != nil {
		t.Fatal(err)
	}
	return pb
}

// token is a JWT-SVID of the partner trust domain for audience "db".
func (p *fedPartner) token(t *testing.T) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p.jwtKey},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", partnerKID))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  spiffeid.RequireFromPath(p.td, "/client").String(),
		Audience: jwt.Audience{"db"},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(5 * time.Minute)),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestWorkloadFederatedBundlesPerCaller: on a node with two entries, one
// federating with partner.test and one not, each caller of the Workload
// API (a real go-spiffe client on a unix socket) sees the own trust domain
// and only the federated bundles its own entry names: in
// federated_bundles, FetchX509Bundles, FetchJWTBundles and the keys
// ValidateJWTSVID accepts. A bundle no entry names (other.test) reaches no
// caller; a caller without an entry validates against the own trust domain
// only. Changing an entry's federates_with changes what its caller sees.
func TestWorkloadFederatedBundlesPerCaller(t *testing.T) {
	ca := newTestCA(t, "example.org")
	c := newCache(ca.td, ca.bundle(1), time.Now, slog.New(slog.DiscardHandler), testMetrics(t))
	partner, other := newFedPartner(t, "partner.test"), newFedPartner(t, "other.test")
	fed := pe("e-fed", "/fed", "test:fed")
	fed.FederatesWith = []string{"partner.test"}
	plain := pe("e-plain", "/plain", "test:plain")
	mustApply(t, c, &agentv1.SyncResponse{Revision: 1, Full: true,
		Entries:          []*commonv1.Entry{fed, plain},
		FederatedBundles: []*commonv1.Bundle{partner.proto(t), other.proto(t)}})
	if n := signAll(t, c, ca, time.Now().Add(-time.Minute), time.Hour); n != 2 {
		t.Fatalf("signed %d entries, want 2", n)
	}
	c.ready.Store(true)
	c.broadcast()

	att := &switchAttestor{}
	att.set("nobody")
	srv, err := workload.New(workload.Config{Source: c, Attestors: []workloadattest.Attestor{att}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "api.sock")
	l, err := workload.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v", err)
		}
	})
	addr := workloadapi.WithAddr("unix://" + path)

	check := func(who string, wantPartner bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		x509ctx, err := workloadapi.FetchX509Context(ctx, addr)
		if err != nil {
			t.Fatalf("%s: FetchX509Context() = %v", who, err)
		}
		if !x509ctx.Bundles.Has(ca.td) {
			t.Errorf("%s: X509 context lacks the own trust domain", who)
		}
		if got := x509ctx.Bundles.Has(partner.td); got != wantPartner {
			t.Errorf("%s: federated_bundles has partner.test = %v, want %v", who, got, wantPartner)
		}
		if x509ctx.Bundles.Has(other.td) {
			t.Errorf("%s: federated_bundles has other.test, which no entry names", who)
		}
		xb, err := workloadapi.FetchX509Bundles(ctx, addr)
		if err != nil {
			t.Fatalf("%s: FetchX509Bundles() = %v", who, err)
		}
		if !xb.Has(ca.td) || xb.Has(partner.td) != wantPartner || xb.Has(other.td) {
			t.Errorf("%s: FetchX509Bundles() = %v, want example.org (and partner.test: %v)", who, xb.Bundles(), wantPartner)
		}
		jb, err := workloadapi.FetchJWTBundles(ctx, addr)
		if err != nil {
			t.Fatalf("%s: FetchJWTBundles() = %v", who, err)
		}
		if !jb.Has(ca.td) || jb.Has(partner.td) != wantPartner || jb.Has(other.td) {
			t.Errorf("%s: FetchJWTBundles() = %v, want example.org (and partner.test: %v)", who, jb.Bundles(), wantPartner)
		}
		if wantPartner {
			if b, err := jb.GetJWTBundleForTrustDomain(partner.td); err != nil || !b.HasJWTAuthority(partnerKID) {
				t.Errorf("%s: partner.test JWT bundle = %v, %v; want key %s", who, b, err, partnerKID)
			}
		}
		checkValidate(t, ctx, who, addr, partner.token(t), wantPartner)
		checkValidate(t, ctx, who+" (other.test token)", addr, other.token(t), false)
	}
	att.set("fed")
	check("federating caller", true)
	att.set("plain")
	check("other caller", false)
	att.set("plain", "fed") // matches both entries: the union
	check("caller of both entries", true)

	// A caller with no entry: no identity for the bundle streams, and
	// ValidateJWTSVID checks against the own trust domain only.
	att.set("nobody")
	ctx, cancelCtx := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelCtx()
	if _, err := workloadapi.FetchX509Bundles(ctx, addr); status.Code(err) != codes.PermissionDenied {
		t.Errorf("no-entry caller: FetchX509Bundles() = %v, want PermissionDenied", err)
	}
	checkValidate(t, ctx, "no-entry caller", addr, partner.token(t), false)

	// The plain entry starts federating with partner.test: its caller sees
	// it now (the cached responses of its selector set are dropped).
	att.set("plain")
	check("other caller before the change", false)
	plain.FederatesWith = []string{"partner.test"}
	res := mustApply(t, c, &agentv1.SyncResponse{Revision: 2, Entries: []*commonv1.Entry{plain},
		FederatedBundles: []*commonv1.Bundle{partner.proto(t), other.proto(t)}}) // sent in every response
	if !res.entries {
		t.Fatal("applySync(changed federates_with).entries = false")
	}
	c.broadcast()
	check("other caller after the change", true)
}

func checkValidate(t *testing.T, ctx context.Context, who string, addr workloadapi.ClientOption, token string, wantOK bool) {
	t.Helper()
	svid, err := workloadapi.ValidateJWTSVID(ctx, token, "db", addr)
	switch {
	case wantOK && err != nil:
		t.Errorf("%s: ValidateJWTSVID(federated token) = %v, want accepted", who, err)
	case wantOK && svid.ID.TrustDomain().Name() != "partner.test":
		t.Errorf("%s: ValidateJWTSVID() id = %v, want one of partner.test", who, svid.ID)
	case !wantOK && status.Code(err) != codes.InvalidArgument:
		t.Errorf("%s: ValidateJWTSVID(token of an unfederated trust domain) = %v, want InvalidArgument", who, err)
	}
}
