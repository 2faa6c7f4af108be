package reauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/nodeattesttest"
	"github.com/signet-id/signet/internal/nodeattest/reauth"
	"github.com/signet-id/signet/internal/testenv/testclock"
)

var (
	td     = spiffeid.RequireTrustDomainFromString("example.org")
	nodeID = spiffeid.RequireFromPath(td, "/node/a")
	epoch  = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
)

// authority is a test CA.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

var serial int64 = 100

func newAuthority(t *testing.T, trustDomain spiffeid.TrustDomain, notAfter time.Time) authority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: epoch.Add(-time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		URIs: []*url.URL{trustDomain.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return authority{cert: cert, key: key}
}

// issue signs an agent SVID for id and key, valid from epoch for ttl.
func (a authority) issue(t *testing.T, id spiffeid.ID, key crypto.Signer, ttl time.Duration) *x509.Certificate {
	t.Helper()
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), NotBefore: epoch.Add(-10 * time.Second), NotAfter: epoch.Add(ttl),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, key.Public(), a.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

func (a authority) model(state model.AuthorityState) model.Authority {
	return model.Authority{ID: a.cert.SerialNumber.String(), Kind: model.AuthorityX509, State: state, Certificate: a.cert.Raw}
}

type fakeNodes map[spiffeid.ID]model.Node

func (f fakeNodes) GetNode(_ context.Context, id spiffeid.ID) (model.Node, error) {
	n, ok := f[id]
	if !ok {
		return model.Node{}, errkind.New(errkind.NotFound, "node %s not found", id)
	}
	return n, nil
}

type fakeAuthorities []model.Authority

func (f fakeAuthorities) ListAuthorities(context.Context) ([]model.Authority, error) { return f, nil }

// loopback answers challenges with an attestor, as the agent would over
// the stream; it counts the rounds.
type loopback struct {
	ctx    context.Context
	a      nodeattest.Responder
	rounds int
	tamper func([]byte) []byte
}

func (l *loopback) Challenge(_ context.Context, challenge []byte) ([]byte, error) {
	l.rounds++
	sig, err := l.a.Respond(l.ctx, challenge)
	if err != nil {
		return nil, errkind.New(errkind.InvalidArgument, "agent refused: %v", err)
	}
	if l.tamper != nil {
		sig = l.tamper(sig)
	}
	return sig, nil
}

func serialHex(c *x509.Certificate) string { return strings.ToLower(c.SerialNumber.Text(16)) }

func newKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestConformance(t *testing.T) {
	ca := newAuthority(t, td, epoch.Add(24*time.Hour))
	nodeattesttest.Run(t, func(t *testing.T) nodeattest.Attestor {
		key := newKey(t)
		a, err := reauth.New([]*x509.Certificate{ca.issue(t, nodeID, key, time.Hour)}, key)
		if err != nil {
			t.Fatal(err)
		}
		return a
	})
}

func TestVerifier(t *testing.T) {
	ca := newAuthority(t, td, epoch.Add(24*time.Hour))
	tainted := newAuthority(t, td, epoch.Add(24*time.Hour))
	foreign := newAuthority(t, spiffeid.RequireTrustDomainFromString("other.org"), epoch.Add(24*time.Hour))
	const window = 7 * 24 * time.Hour
	csr := []byte("the agent's new csr")

	type setup struct {
		certs   []*x509.Certificate
		key     crypto.Signer
		node    model.Node
		hasNode bool
		now     time.Time
		tamper  func([]byte) []byte
		csr     []byte // the server's; the agent always signs for csr
	}
	base := func(t *testing.T, key crypto.Signer, issuer authority) setup {
		leaf := issuer.issue(t, nodeID, key, time.Hour)
		return setup{
			certs: []*x509.Certificate{leaf}, key: key, hasNode: true, now: epoch.Add(2 * time.Hour),
			node: model.Node{SPIFFEID: nodeID, AttestationType: "join_token", SerialNumber: serialHex(leaf),
				Selectors: []model.Selector{{Type: "k8s", Value: "cluster:a"}}},
		}
	}
	for _, tc := range []struct {
		name   string
		adjust func(t *testing.T, s *setup)
		issuer *authority
		keyGen func(t *testing.T) crypto.Signer
		want   errkind.Kind // admitted when unset (Internal, the zero Kind, is never wanted)
	}{
		{name: "expired an hour ago", adjust: func(*testing.T, *setup) {}},
		{name: "still valid", adjust: func(_ *testing.T, s *setup) { s.now = epoch.Add(time.Minute) }},
		{name: "at the end of the window", adjust: func(_ *testing.T, s *setup) { s.now = epoch.Add(time.Hour + window) }},
		{name: "past the window", want: errkind.PermissionDenied,
			adjust: func(_ *testing.T, s *setup) { s.now = epoch.Add(time.Hour + window + time.Second) }},
		{name: "pending renewed serial", adjust: func(_ *testing.T, s *setup) {
			s.node.NewSerialNumber, s.node.SerialNumber = s.node.SerialNumber, "abc"
		}},
		{name: "previous serial", want: errkind.PermissionDenied, adjust: func(_ *testing.T, s *setup) {
			s.node.PrevSerialNumber, s.node.SerialNumber = s.node.SerialNumber, "abc"
			s.node.PrevSerialUntil = s.now.Add(time.Hour)
		}},
		{name: "evicted", want: errkind.PermissionDenied, adjust: func(_ *testing.T, s *setup) { s.hasNode = false }},
		{name: "banned", want: errkind.PermissionDenied, adjust: func(_ *testing.T, s *setup) { s.node.Banned = true }},
		{name: "tainted authority", issuer: &tainted, want: errkind.PermissionDenied},
		{name: "unknown authority", issuer: &foreign, want: errkind.PermissionDenied},
		{name: "wrong signature", want: errkind.PermissionDenied, adjust: func(_ *testing.T, s *setup) {
			s.tamper = func(b []byte) []byte { b[len(b)/2] ^= 1; return b }
		}},
		{name: "proof for another csr", want: errkind.InvalidArgument, adjust: func(_ *testing.T, s *setup) {
			s.csr = []byte("someone else's csr")
		}},
		{name: "another node's svid", want: errkind.PermissionDenied, adjust: func(t *testing.T, s *setup) {
			other := spiffeid.RequireFromPath(td, "/node/b")
			s.certs = []*x509.Certificate{ca.issue(t, other, s.key, time.Hour)}
			s.node.SPIFFEID = other
		}},
		{name: "outside the trust domain", want: errkind.PermissionDenied, adjust: func(t *testing.T, s *setup) {
			other := spiffeid.RequireFromString("spiffe://other.org/node/a")
			s.certs = []*x509.Certificate{ca.issue(t, other, s.key, time.Hour)}
			s.node.SPIFFEID = other
		}},
		{name: "ed25519 key", keyGen: func(t *testing.T) crypto.Signer {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return k
		}},
		{name: "rsa key", keyGen: func(t *testing.T) crypto.Signer {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			return k
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			issuer := ca
			if tc.issuer != nil {
				issuer = *tc.issuer
			}
			key := newKey(t)
			if tc.keyGen != nil {
				key = tc.keyGen(t)
			}
			s := base(t, key, issuer)
			s.csr = csr
			if tc.adjust != nil {
				tc.adjust(t, &s)
			}
			nodes := fakeNodes{}
			if s.hasNode {
				nodes[s.node.SPIFFEID] = s.node
			}
			clock := testclock.New(s.now)
			v, err := reauth.NewVerifier(reauth.VerifierConfig{
				TrustDomain: td, Nodes: nodes, Window: window, Now: clock.Now,
				Authorities: fakeAuthorities{ca.model(model.StateOld), tainted.model(model.StateTainted)},
			})
			if err != nil {
				t.Fatal(err)
			}
			a, err := reauth.New(s.certs, s.key)
			if err != nil {
				t.Fatal(err)
			}
			payload, err := a.Payload(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			lb := &loopback{ctx: nodeattest.WithCSR(context.Background(), csr), a: a, tamper: s.tamper}
			res, err := v.Attest(nodeattest.WithCSR(context.Background(), s.csr), payload, lb)
			if tc.want != 0 {
				if errkind.Of(err) != tc.want {
					t.Fatalf("Attest() = %+v, %v; want an error kinded %s", res, err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Attest() = %v, want the node admitted", err)
			}
			if res.AgentID != nodeID || !res.Existing || len(res.Selectors) != 1 {
				t.Errorf("Attest() = %+v, want the existing node %s with its selectors", res, nodeID)
			}
			if lb.rounds != 1 {
				t.Errorf("challenge rounds = %d, want 1", lb.rounds)
			}
		})
	}
}

func TestAttestorSignsOnlyItsChallenges(t *testing.T) {
	ca := newAuthority(t, td, epoch.Add(24*time.Hour))
	key := newKey(t)
	a, err := reauth.New([]*x509.Certificate{ca.issue(t, nodeID, key, time.Hour)}, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx := nodeattest.WithCSR(context.Background(), []byte("csr"))
	for _, challenge := range [][]byte{nil, []byte("sign me"), make([]byte, 87)} {
		if _, err := a.Respond(ctx, challenge); err == nil {
			t.Errorf("Respond(%q) = nil error, want a refusal", challenge)
		}
	}
	if _, err := a.Respond(context.Background(), make([]byte, 87)); err == nil {
		t.Errorf("Respond() without a CSR in the context = nil error, want a refusal")
	}
	if _, err := reauth.New([]*x509.Certificate{ca.issue(t, nodeID, key, time.Hour)}, newKey(t)); err == nil {
		t.Errorf("New() with a key of another certificate = nil error, want an error")
	}
}

func TestParsePayload(t *testing.T) {
	ca := newAuthority(t, td, epoch.Add(24*time.Hour))
	leaf := ca.issue(t, nodeID, newKey(t), time.Hour)
	good, _ := json.Marshal(map[string]any{"x5c": [][]byte{leaf.Raw}})
	for _, tc := range []struct {
		name    string
		payload []byte
		ok      bool
	}{
		{"good", good, true},
		{"empty", nil, false},
		{"no certificates", []byte(`{"x5c":[]}`), false},
		{"unknown field", []byte(`{"x5c":[],"extra":1}`), false},
		{"trailing data", append(append([]byte{}, good...), []byte(`{}`)...), false},
		{"garbage certificate", []byte(`{"x5c":["AAAA"]}`), false},
		{"too many", func() []byte { b, _ := json.Marshal(map[string]any{"x5c": make([][]byte, 9)}); return b }(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := reauth.ParsePayload(tc.payload)
			if (err == nil) != tc.ok {
				t.Errorf("ParsePayload(%q) = %v, want ok=%v", tc.payload, err, tc.ok)
			}
		})
	}
}

func FuzzParsePayload(f *testing.F) {
	f.Add([]byte(`{"x5c":["MAA="]}`))
	f.Add([]byte(`{"x5c":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, err := reauth.ParsePayload(b)
		if err == nil && (len(certs) == 0 || len(certs) > 8) {
			t.Fatalf("ParsePayload accepted %d certificates", len(certs))
		}
		if err != nil && errors.Unwrap(err) == nil && err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}
