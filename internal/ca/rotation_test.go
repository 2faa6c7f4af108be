package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// mintedSVID is an SVID minted during a simulation, kept until it expires.
type mintedSVID struct {
	kind     model.AuthorityKind
	chain    []*x509.Certificate
	token    string
	mintedAt time.Time
	notAfter time.Time
}

func TestRotationInvariants(t *testing.T) {
	tests := []struct {
		name     string
		mod      func(*Config)
		duration time.Duration
		step     time.Duration
		// mintEvery is how often SVIDs are minted besides right after each
		// activation.
		mintEvery time.Duration
		x509TTL   time.Duration
		jwtTTL    time.Duration
		// fullTTL: every SVID must get its whole TTL (MaxSVIDTTL set).
		fullTTL bool
	}{
		{name: "defaults for a month", duration: 30 * 24 * time.Hour, step: 10 * time.Minute, mintEvery: 3 * time.Hour,
			x509TTL: 4 * time.Hour, jwtTTL: 5 * time.Minute},
		{name: "short ttls", mod: func(c *Config) { c.CATTL = 6 * time.Hour; c.JWTKeyTTL = 2 * time.Hour },
			duration: 2 * 24 * time.Hour, step: 5 * time.Minute, mintEvery: time.Hour, x509TTL: 30 * time.Minute, jwtTTL: 10 * time.Minute},
		{name: "max svid ttl", mod: func(c *Config) { c.MaxSVIDTTL = 8 * time.Hour },
			duration: 5 * 24 * time.Hour, step: 10 * time.Minute, mintEvery: 2 * time.Hour, x509TTL: 8 * time.Hour, jwtTTL: 8 * time.Hour, fullTTL: true},
		{name: "odd step", duration: 4 * 24 * time.Hour, step: 7*time.Minute + 13*time.Second, mintEvery: 2 * time.Hour,
			x509TTL: 2 * time.Hour, jwtTTL: 15 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &simulation{
				duration: tt.duration, step: tt.step, mintEvery: tt.mintEvery,
				x509TTL: tt.x509TTL, jwtTTL: tt.jwtTTL, fullTTL: tt.fullTTL,
			}
			s.run(t, newEnv(t, tt.mod))
		})
	}
}

// simulation drives Rotate on a fake clock every step and checks at every
// step that: every unexpired SVID minted so far verifies against the bundle
// of that moment; the authority that signs had been in the bundle for a
// third of its kind's TTL (except the first ones, created by Init);
// expired authorities are gone; there is one active and at most one
// prepared authority per kind; only their keys are kept.
type simulation struct {
	duration, step, mintEvery time.Duration
	x509TTL, jwtTTL           time.Duration
	fullTTL                   bool
	// upstreamRoot, when set, is the upstream authority's root: the bundle
	// must hold it as its only X.509 authority.
	upstreamRoot *x509.Certificate

	e         *env
	csr       []byte
	firstSeen map[string]time.Time // kind/id → first step seen in the bundle
	initial   map[string]bool      // authorities created by Init
	signers   map[string]bool      // authorities that signed something
	live      []mintedSVID
}

func (s *simulation) run(t *testing.T, e *env) {
	ctx := context.Background()
	s.e, s.csr = e, newCSR(t, newP256(t), nil)
	s.firstSeen, s.initial, s.signers = map[string]time.Time{}, map[string]bool{}, map[string]bool{}
	for _, kind := range kinds {
		s.initial[string(kind)+"/"+e.active(t, kind).ID] = true
	}
	var (
		lastStore, lastActive string
		b                     *spiffebundle.Bundle
		nextMint              = testEpoch
	)
	for now := testEpoch; now.Before(testEpoch.Add(s.duration)); now = now.Add(s.step) {
		e.clock.Set(now)
		if err := e.m.Rotate(ctx); err != nil {
			t.Fatalf("%s: Rotate() = %v", now, err)
		}
		auths, _ := e.store.ListAuthorities(ctx)
		for _, a := range auths {
			if !now.Before(a.NotAfter) {
				t.Fatalf("%s: expired %s authority %s (%s) still stored", now, a.Kind, a.ID, a.State)
			}
		}
		// The bundle, and what it can verify, changes only with the store.
		changed := snapshot(e.store) != lastStore
		if changed {
			lastStore = snapshot(e.store)
			b = s.checkStore(t, now, auths)
		}
		active := e.m.activeID(model.AuthorityX509) + e.m.activeID(model.AuthorityJWT)
		if active != lastActive || !now.Before(nextMint) {
			lastActive = active
			nextMint = now.Add(s.mintEvery)
			s.mint(t, now)
		}
		s.verify(t, now, b, changed)
	}

	// Rotation really happened: about one new signer per half lifetime.
	for _, kind := range kinds {
		n := 0
		for k := range s.signers {
			if strings.HasPrefix(k, string(kind)+"/") {
				n++
			}
		}
		lead := e.m.ttl(kind) / 3
		period := e.m.ttl(kind) / 2
		if e.m.maxSVIDTTL > 0 {
			period = e.m.ttl(kind) - e.m.maxSVIDTTL - lead
		}
		if want := int(s.duration/period) - 1; n < want {
			t.Errorf("%d %s authorities signed over %s, want at least %d", n, kind, s.duration, want)
		}
	}
}

// checkStore checks the store after a change and returns the new bundle.
func (s *simulation) checkStore(t *testing.T, now time.Time, auths []model.Authority) *spiffebundle.Bundle {
	b, err := BundleFromAuthorities(testTD, auths, 1)
	if err != nil {
		t.Fatal(err)
	}
	if s.upstreamRoot != nil {
		// Signet's CAs are not in the bundle; the root that verifies them is.
		if got := b.X509Authorities(); len(got) != 1 || !got[0].Equal(s.upstreamRoot) {
			t.Fatalf("%s: bundle holds %d X.509 authorities, want only the upstream root", now, len(got))
		}
		for _, a := range auths {
			if k := "x509/" + a.ID; a.Kind == model.AuthorityX509 && a.State != model.StateRevoked && s.firstSeen[k].IsZero() {
				s.firstSeen[k] = now
			}
		}
	}
	for _, c := range b.X509Authorities() {
		if k := "x509/" + hex.EncodeToString(c.SubjectKeyId); s.upstreamRoot == nil && s.firstSeen[k].IsZero() {
			s.firstSeen[k] = now
		}
	}
	for kid := range b.JWTAuthorities() {
		if k := "jwt/" + kid; s.firstSeen[k].IsZero() {
			s.firstSeen[k] = now
		}
	}
	count := map[string]int{}
	for _, a := range auths {
		count[string(a.Kind)+"/"+string(a.State)]++
	}
	for _, kind := range kinds {
		if n := count[string(kind)+"/active"]; n != 1 {
			t.Fatalf("%s: %d active %s authorities, want 1", now, n, kind)
		}
		if n := count[string(kind)+"/prepared"]; n > 1 {
			t.Fatalf("%s: %d prepared %s authorities, want at most 1", now, n, kind)
		}
	}
	if len(auths) > 6 {
		t.Fatalf("%s: %d authorities stored, want at most 3 per kind", now, len(auths))
	}
	if ids := s.e.keys.ids(); len(ids) > 4 {
		t.Fatalf("%s: %d keys, want at most 4 (active and prepared of each kind)", now, len(ids))
	}
	return b
}

// mint mints one SVID of each kind and checks who signed it.
func (s *simulation) mint(t *testing.T, now time.Time) {
	ctx := context.Background()
	checkSigner := func(kind model.AuthorityKind, id string) {
		k := string(kind) + "/" + id
		s.signers[k] = true
		seen := s.firstSeen[k]
		if seen.IsZero() {
			t.Fatalf("%s: %s signed while not in the bundle", now, k)
		}
		if lead := s.e.m.ttl(kind) / 3; !s.initial[k] && now.Sub(seen) < lead {
			t.Fatalf("%s: %s signed %s after entering the bundle, want at least %s", now, k, now.Sub(seen), lead)
		}
	}
	chain, err := s.e.m.SignX509SVID(ctx, s.csr, X509Params{ID: workload, TTL: s.x509TTL})
	if err != nil {
		t.Fatalf("%s: SignX509SVID() = %v", now, err)
	}
	signer := hex.EncodeToString(chain[0].AuthorityKeyId)
	if s.upstreamRoot != nil {
		if len(chain) < 2 {
			t.Fatalf("%s: SVID chain of %d certificates under an upstream, want leaf and CA at least", now, len(chain))
		}
		ski, err := subjectKeyID(chain[1].RawSubjectPublicKeyInfo)
		if err != nil {
			t.Fatal(err)
		}
		signer = hex.EncodeToString(ski)
	}
	checkSigner(model.AuthorityX509, signer)
	if s.fullTTL && !chain[0].NotAfter.Equal(now.Add(s.x509TTL)) {
		t.Fatalf("%s: X509-SVID cut short: NotAfter %s, want %s", now, chain[0].NotAfter, now.Add(s.x509TTL))
	}
	s.live = append(s.live, mintedSVID{kind: model.AuthorityX509, chain: chain, mintedAt: now, notAfter: chain[0].NotAfter})

	tok, exp, err := s.e.m.SignJWTSVID(ctx, JWTParams{ID: workload, Audience: []string{"db"}, TTL: s.jwtTTL})
	if err != nil {
		t.Fatalf("%s: SignJWTSVID() = %v", now, err)
	}
	checkSigner(model.AuthorityJWT, jwtHeader(t, tok)["kid"].(string))
	if s.fullTTL && !exp.Equal(now.Add(s.jwtTTL).Truncate(time.Second)) {
		t.Fatalf("%s: JWT-SVID cut short: exp %s, want %s", now, exp, now.Add(s.jwtTTL))
	}
	s.live = append(s.live, mintedSVID{kind: model.AuthorityJWT, token: tok, mintedAt: now, notAfter: exp})
}

// verify checks that every unexpired SVID verifies against b at now.
// Verification is a pure function of the bundle and the time: while the
// bundle is unchanged, an SVID that verified at an earlier step and is
// still within its validity (which lies inside its CA's) verifies now too,
// so only new SVIDs are checked then.
func (s *simulation) verify(t *testing.T, now time.Time, b *spiffebundle.Bundle, changed bool) {
	s.live = slices.DeleteFunc(s.live, func(v mintedSVID) bool { return !now.Before(v.notAfter) })
	for _, v := range s.live {
		if !changed && !v.mintedAt.Equal(now) {
			continue
		}
		var err error
		if v.kind == model.AuthorityX509 {
			_, _, err = x509svid.Verify(v.chain, b, x509svid.WithTime(now))
		} else {
			err = verifyJWTAt(v.token, b, "db", now)
		}
		if err != nil {
			t.Fatalf("%s: %s SVID minted at %s, valid until %s, no longer verifies: %v", now, v.kind, v.mintedAt, v.notAfter, err)
		}
	}
}

func TestRotatePhases(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	first := e.active(t, model.AuthorityX509)

	e.clock.Set(testEpoch.Add(12*time.Hour - time.Second))
	if err := e.m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.authorities(t, model.AuthorityX509, model.StatePrepared)); n != 0 {
		t.Fatalf("prepared before half-life: %d", n)
	}

	e.clock.Set(testEpoch.Add(12 * time.Hour))
	if err := e.m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	prep := e.authorities(t, model.AuthorityX509, model.StatePrepared)
	if len(prep) != 1 {
		t.Fatalf("%d prepared at half-life, want 1", len(prep))
	}
	if !e.bundle(t).HasX509Authority(mustCert(t, prep[0].Certificate)) {
		t.Error("prepared authority is not in the bundle")
	}
	before := snapshot(e.store)
	if err := e.m.Rotate(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	if after := snapshot(e.store); after != before {
		t.Errorf("second Rotate() changed the store:\n%s\nwant\n%s", after, before)
	}

	e.clock.Set(testEpoch.Add(20*time.Hour - time.Second))
	if err := e.m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.active(t, model.AuthorityX509).ID; got != first.ID {
		t.Fatalf("activated before 5/6 of the lifetime")
	}

	e.clock.Set(testEpoch.Add(20 * time.Hour))
	if err := e.m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.active(t, model.AuthorityX509).ID; got != prep[0].ID {
		t.Fatalf("active = %s at 5/6 of the lifetime, want the prepared %s", got, prep[0].ID)
	}
	old := e.authorities(t, model.AuthorityX509, model.StateOld)
	if len(old) != 1 || old[0].ID != first.ID {
		t.Fatalf("old authorities = %v, want [%s]", old, first.ID)
	}
	if slices.Contains(e.keys.ids(), first.KeyID) {
		t.Errorf("key %s of retired authority still stored", first.KeyID)
	}

	e.clock.Set(first.NotAfter)
	if err := e.m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.authorities(t, model.AuthorityX509, model.StateOld)); n != 0 {
		t.Errorf("%d old authorities after their NotAfter, want 0", n)
	}
}

func TestRotateWaitsForLateManualPrepare(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	first := e.active(t, model.AuthorityX509)
	// Prepared by hand at 19h: too late to sign at 20h.
	e.clock.Set(testEpoch.Add(19 * time.Hour))
	p, err := e.m.Prepare(ctx, model.AuthorityX509)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Set(testEpoch.Add(20 * time.Hour))
	if err := e.m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.active(t, model.AuthorityX509).ID; got != first.ID {
		t.Fatalf("prepared authority activated after 1h in the bundle")
	}
	e.clock.Set(testEpoch.Add(23*time.Hour + time.Second))
	if err := e.m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.active(t, model.AuthorityX509).ID; got != first.ID {
		t.Fatalf("prepared authority activated before a third of the CA TTL")
	}
	// Expiry of the active one forces the switch.
	e.clock.Set(first.NotAfter)
	if err := e.m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.active(t, model.AuthorityX509).ID; got != p.ID {
		t.Fatalf("active = %s after the old one expired, want %s", got, p.ID)
	}
}

func TestManualTransitions(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	csr := newCSR(t, newP256(t), nil)
	sign := func() []*x509.Certificate {
		t.Helper()
		chain, err := e.m.SignX509SVID(ctx, csr, X509Params{ID: workload, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return chain
	}
	first := e.active(t, model.AuthorityX509)

	_, err := e.m.Activate(ctx, model.AuthorityX509)
	wantKind(t, "Activate() with nothing prepared", err, errkind.FailedPrecondition, "none is prepared")

	p, err := e.m.Prepare(ctx, model.AuthorityX509)
	if err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	if p.State != model.StatePrepared || !e.bundle(t).HasX509Authority(mustCert(t, p.Certificate)) {
		t.Errorf("Prepare() = %s in state %s, want prepared and in the bundle", p.ID, p.State)
	}
	oldSVID := sign()
	if got := hex.EncodeToString(oldSVID[0].AuthorityKeyId); got != first.ID {
		t.Errorf("SVID signed by %s while %s is prepared, want the active %s", got, p.ID, first.ID)
	}
	_, err = e.m.Prepare(ctx, model.AuthorityX509)
	wantKind(t, "Prepare() twice", err, errkind.FailedPrecondition, "already prepared")
	wantKind(t, "Taint(prepared)", e.m.Taint(ctx, model.AuthorityX509, p.ID), errkind.FailedPrecondition, "it is prepared")

	a, err := e.m.Activate(ctx, model.AuthorityX509)
	if err != nil {
		t.Fatalf("Activate() = %v", err)
	}
	if a.ID != p.ID || a.State != model.StateActive {
		t.Errorf("Activate() = %s %s, want %s active", a.ID, a.State, p.ID)
	}
	if got := hex.EncodeToString(sign()[0].AuthorityKeyId); got != p.ID {
		t.Errorf("SVID signed by %s after Activate, want %s", got, p.ID)
	}
	if old := e.authorities(t, model.AuthorityX509, model.StateOld); len(old) != 1 || old[0].ID != first.ID {
		t.Fatalf("old = %v, want %s", old, first.ID)
	}
	verifyX509(t, oldSVID, e.bundle(t), e.clock.Now()) // the old CA is still trusted

	wantKind(t, "Taint(active)", e.m.Taint(ctx, model.AuthorityX509, p.ID), errkind.FailedPrecondition, "only old ones")
	wantKind(t, "Revoke(active)", e.m.Revoke(ctx, model.AuthorityX509, p.ID), errkind.FailedPrecondition, "only old or tainted ones")
	wantKind(t, "Taint(unknown)", e.m.Taint(ctx, model.AuthorityX509, "nope"), errkind.NotFound, "not found")
	wantKind(t, "Taint(wrong kind)", e.m.Taint(ctx, model.AuthorityJWT, first.ID), errkind.NotFound, "not found")
	wantKind(t, "Taint(bad kind)", e.m.Taint(ctx, "ssh", first.ID), errkind.InvalidArgument, "unknown authority kind")
	_, err = e.m.Prepare(ctx, "ssh")
	wantKind(t, "Prepare(bad kind)", err, errkind.InvalidArgument, "unknown authority kind")

	if err := e.m.Taint(ctx, model.AuthorityX509, first.ID); err != nil {
		t.Fatalf("Taint(old) = %v", err)
	}
	if tainted := e.authorities(t, model.AuthorityX509, model.StateTainted); len(tainted) != 1 {
		t.Fatalf("tainted = %v", tainted)
	}
	verifyX509(t, oldSVID, e.bundle(t), e.clock.Now()) // tainted is still published
	wantKind(t, "Taint(tainted)", e.m.Taint(ctx, model.AuthorityX509, first.ID), errkind.FailedPrecondition, "it is tainted")

	if err := e.m.Revoke(ctx, model.AuthorityX509, first.ID); err != nil {
		t.Fatalf("Revoke(tainted) = %v", err)
	}
	if e.bundle(t).HasX509Authority(mustCert(t, first.Certificate)) {
		t.Error("revoked authority still in the bundle")
	}
	if _, _, err := x509svid.Verify(oldSVID, e.bundle(t), x509svid.WithTime(e.clock.Now())); err == nil {
		t.Error("SVID of a revoked CA still verifies")
	}
	wantKind(t, "Revoke(revoked)", e.m.Revoke(ctx, model.AuthorityX509, first.ID), errkind.FailedPrecondition, "it is revoked")

	// JWT: old straight to revoked.
	j1 := e.active(t, model.AuthorityJWT)
	tok, _, err := e.m.SignJWTSVID(ctx, JWTParams{ID: workload, Audience: []string{"a"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Prepare(ctx, model.AuthorityJWT); err != nil {
		t.Fatal(err)
	}
	j2, err := e.m.Activate(ctx, model.AuthorityJWT)
	if err != nil {
		t.Fatal(err)
	}
	tok2, _, err := e.m.SignJWTSVID(ctx, JWTParams{ID: workload, Audience: []string{"a"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if kid := jwtHeader(t, tok2)["kid"]; kid != j2.ID {
		t.Errorf("JWT kid after Activate = %v, want %s", kid, j2.ID)
	}
	if err := verifyJWTAt(tok, e.bundle(t), "a", e.clock.Now()); err != nil {
		t.Errorf("JWT of the old key = %v before revocation, want valid", err)
	}
	if err := e.m.Revoke(ctx, model.AuthorityJWT, j1.ID); err != nil {
		t.Fatalf("Revoke(old jwt) = %v", err)
	}
	if err := verifyJWTAt(tok, e.bundle(t), "a", e.clock.Now()); err == nil {
		t.Error("JWT of a revoked key still verifies")
	}
	if err := verifyJWTAt(tok2, e.bundle(t), "a", e.clock.Now()); err != nil {
		t.Errorf("JWT of the active key = %v", err)
	}

	// Revoked authorities are deleted once expired.
	e.clock.Set(first.NotAfter)
	if err := e.m.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.authorities(t, model.AuthorityX509, model.StateRevoked)); n != 0 {
		t.Errorf("%d revoked authorities after expiry, want 0", n)
	}
}

func TestReplicasShareBundle(t *testing.T) {
	ctx := context.Background()
	e1 := newEnv(t, nil)
	cfg2 := e1.cfg
	cfg2.ServerID = "server-2"
	cfg2.KeyManager = newMemKeys()
	m2, err := New(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Init(ctx); err != nil {
		t.Fatal(err)
	}
	b := e1.bundle(t)
	if n := len(b.X509Authorities()); n != 2 {
		t.Errorf("bundle has %d X.509 authorities, want one per server", n)
	}
	if n := len(b.JWTAuthorities()); n != 2 {
		t.Errorf("bundle has %d JWT authorities, want one per server", n)
	}
	csr := newCSR(t, newP256(t), nil)
	for i, m := range []*Manager{e1.m, m2} {
		chain, err := m.SignX509SVID(ctx, csr, X509Params{ID: workload, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		verifyX509(t, chain, b, e1.clock.Now())
		tok, _, err := m.SignJWTSVID(ctx, JWTParams{ID: workload, Audience: []string{"a"}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyJWTAt(tok, b, "a", e1.clock.Now()); err != nil {
			t.Errorf("server %d JWT: %v", i+1, err)
		}
	}
	// Each rotates only its own authorities, over two days.
	for now := testEpoch; now.Before(testEpoch.Add(48 * time.Hour)); now = now.Add(30 * time.Minute) {
		e1.clock.Set(now)
		for _, m := range []*Manager{e1.m, m2} {
			if err := m.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, server := range []string{"server-1", "server-2"} {
			n := 0
			for _, a := range e1.authorities(t, model.AuthorityX509, model.StateActive) {
				if a.ServerID == server {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%s: %s has %d active x509 authorities, want 1", now, server, n)
			}
		}
	}
	// An operator on server 2 can revoke server 1's old authority.
	old := e1.authorities(t, model.AuthorityX509, model.StateOld)
	i := slices.IndexFunc(old, func(a model.Authority) bool { return a.ServerID == "server-1" })
	if i < 0 {
		t.Fatal("server-1 has no old authority after two days")
	}
	if err := m2.Revoke(ctx, model.AuthorityX509, old[i].ID); err != nil {
		t.Errorf("Revoke(other server's old) = %v", err)
	}
}

func TestConcurrentMintingDuringRotation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	csr := newCSR(t, newP256(t), nil)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		chains [][]*x509.Certificate
		toks   []string
	)
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				chain, err := e.m.SignX509SVID(ctx, csr, X509Params{ID: workload, TTL: time.Hour})
				if err != nil {
					t.Error(err)
					return
				}
				tok, _, err := e.m.SignJWTSVID(ctx, JWTParams{ID: workload, Audience: []string{"a"}, TTL: time.Hour})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				chains = append(chains, chain)
				toks = append(toks, tok)
				mu.Unlock()
			}
		})
	}
	// Each round waits for a mint with the previous round's authorities, so
	// minting overlaps every rotation however fast the key manager is.
	waitMint := func() {
		mu.Lock()
		n := len(chains)
		mu.Unlock()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			mu.Lock()
			more := len(chains) > n
			mu.Unlock()
			if more {
				return
			}
		}
		close(stop)
		wg.Wait()
		t.Fatal("minters made no progress in 10s")
	}
	for range 3 {
		waitMint()
		for _, kind := range kinds {
			if _, err := e.m.Prepare(ctx, kind); err != nil {
				t.Fatal(err)
			}
			if _, err := e.m.Activate(ctx, kind); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.m.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	b := e.bundle(t)
	if len(chains) == 0 {
		t.Fatal("nothing minted")
	}
	for _, c := range chains {
		verifyX509(t, c, b, e.clock.Now())
	}
	for _, tok := range toks {
		if err := verifyJWTAt(tok, b, "a", e.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
}

func mustCert(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// snapshot renders the store's content for comparison.
func snapshot(s *memStore) string {
	auths, _ := s.ListAuthorities(context.Background())
	var buf bytes.Buffer
	for _, a := range auths {
		fmt.Fprintf(&buf, "%s %s %s %s %s\n", a.Kind, a.ID, a.State, a.ServerID, a.UpdatedAt)
	}
	return buf.String()
}

func TestRotateReapsAbandonedAuthorities(t *testing.T) {
	ctx := context.Background()
	e1 := newEnv(t, nil)
	cfg2 := e1.cfg
	cfg2.ServerID, cfg2.KeyManager = "server-2", newMemKeys()
	m2, err := New(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Init(ctx); err != nil {
		t.Fatal(err)
	}
	gone := m2.activeID(model.AuthorityX509)
	// Server 2 is decommissioned; server 1 keeps rotating.
	for now := testEpoch; !now.After(testEpoch.Add(26 * time.Hour)); now = now.Add(30 * time.Minute) {
		e1.clock.Set(now)
		if err := e1.m.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		_, stored := e1.store.auths["x509/"+gone]
		if want := now.Before(testEpoch.Add(25 * time.Hour)); stored != want {
			t.Fatalf("%s: server-2's active authority stored = %v, want %v", now, stored, want)
		}
	}
}
