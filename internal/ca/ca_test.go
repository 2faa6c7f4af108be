package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// memStore is an in-memory AuthorityStore: the real store is tested by its
// own conformance suite; here only its three authority methods matter.
type memStore struct {
	mu      sync.Mutex
	auths   map[string]model.Authority
	failPut error // when set, PutAuthority fails with it
}

func newMemStore() *memStore { return &memStore{auths: make(map[string]model.Authority)} }

func (s *memStore) ListAuthorities(context.Context) ([]model.Authority, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]model.Authority, 0, len(s.auths))
	for _, a := range s.auths {
		out = append(out, a)
	}
	sortAuthorities(out)
	return out, nil
}

func (s *memStore) PutAuthority(_ context.Context, a model.Authority) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failPut != nil {
		return s.failPut
	}
	s.auths[string(a.Kind)+"/"+a.ID] = a
	return nil
}

func (s *memStore) DeleteAuthority(_ context.Context, kind model.AuthorityKind, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := string(kind) + "/" + id
	if _, ok := s.auths[k]; !ok {
		return errkind.New(errkind.NotFound, "authority %s not found", k)
	}
	delete(s.auths, k)
	return nil
}

var _ AuthorityStore = (*memStore)(nil)

// memKeys is an in-memory KeyManager, so these tests can see and break
// keys directly. The disk key manager passes the key manager conformance
// suite, and disk_test.go runs the Manager on it.
type memKeys struct {
	mu   sync.Mutex
	keys map[string]crypto.Signer
}

func newMemKeys() *memKeys { return &memKeys{keys: make(map[string]crypto.Signer)} }

func (k *memKeys) GenerateKey(_ context.Context, id, keyType string) (crypto.Signer, error) {
	if !ValidKeyID(id) {
		return nil, errkind.New(errkind.InvalidArgument, "invalid key id %q", id)
	}
	var key crypto.Signer
	var err error
	switch keyType {
	case KeyTypeECP256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyTypeECP384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case KeyTypeRSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case KeyTypeRSA4096:
		key, err = rsa.GenerateKey(rand.Reader, 4096)
	default:
		return nil, errkind.New(errkind.InvalidArgument, "unknown key type %q", keyType)
	}
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[id] = key
	return key, nil
}

func (k *memKeys) GetKey(_ context.Context, id string) (crypto.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key, ok := k.keys[id]
	if !ok {
		return nil, errkind.New(errkind.NotFound, "key %s not found", id)
	}
	return key, nil
}

func (k *memKeys) DeleteKey(_ context.Context, id string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.keys, id)
	return nil
}

// ids returns the ids of the stored keys, sorted.
func (k *memKeys) ids() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Sorted(maps.Keys(k.keys))
}

// set stores key under id, as a broken or restored key store would.
func (k *memKeys) set(id string, key crypto.Signer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[id] = key
}

var _ KeyManager = (*memKeys)(nil)

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var (
	testTD = spiffeid.RequireTrustDomainFromString("example.org")
	// testEpoch is a whole second, so expected times are exact.
	testEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	workload  = spiffeid.RequireFromString("spiffe://example.org/ns/prod/web")
)

// env is one Manager with its store, clock and key manager.
type env struct {
	m     *Manager
	store *memStore
	keys  *memKeys
	clock *fakeClock
	cfg   Config
}

// newEnv builds and initializes a Manager on a fake clock at testEpoch;
// mod adjusts the config first.
func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	e := &env{store: newMemStore(), keys: newMemKeys(), clock: &fakeClock{t: testEpoch}}
	e.cfg = Config{
		TrustDomain: testTD,
		ServerID:    "server-1",
		Store:       e.store,
		KeyManager:  e.keys,
		Now:         e.clock.Now,
	}
	if mod != nil {
		mod(&e.cfg)
	}
	m, err := New(e.cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	if err := m.Init(context.Background()); err != nil {
		t.Fatalf("Init() = %v", err)
	}
	e.m = m
	return e
}

// bundle builds the bundle from everything in the store right now.
func (e *env) bundle(t testing.TB) *spiffebundle.Bundle {
	t.Helper()
	auths, err := e.store.ListAuthorities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := BundleFromAuthorities(testTD, auths, 1)
	if err != nil {
		t.Fatalf("BundleFromAuthorities() = %v", err)
	}
	return b
}

// authorities returns the store's authorities of kind in state.
func (e *env) authorities(t testing.TB, kind model.AuthorityKind, state model.AuthorityState) []model.Authority {
	t.Helper()
	auths, err := e.m.Authorities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(auths, func(a model.Authority) bool { return a.Kind != kind || a.State != state })
}

// active returns the one active authority of kind.
func (e *env) active(t testing.TB, kind model.AuthorityKind) model.Authority {
	t.Helper()
	as := e.authorities(t, kind, model.StateActive)
	if len(as) != 1 {
		t.Fatalf("%d active %s authorities, want 1", len(as), kind)
	}
	return as[0]
}

// newCSR returns a DER CSR for key, with tmpl's requested fields.
func newCSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest() = %v", err)
	}
	return der
}

func newP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wantKind fails unless err carries kind k and its text contains want.
func wantKind(t *testing.T, what string, err error, k errkind.Kind, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s = nil error, want %s", what, k)
	}
	if got := errkind.Of(err); got != k {
		t.Errorf("%s = %v (kind %s), want kind %s", what, err, got, k)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("%s = %q, want it to contain %q", what, err, want)
	}
}

func TestNewConfigErrors(t *testing.T) {
	_, err := New(Config{KeyType: "dsa", CATTL: time.Second, MaxSVIDTTL: -1})
	wantKind(t, "New(bad config)", err, errkind.InvalidArgument, "invalid ca config")
	for _, want := range []string{"trust_domain", "server_id", `key_type "dsa"`, "ca_ttl", "max_svid_ttl", "store", "key_manager"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New(bad config) = %q, want every problem, including %q", err, want)
		}
	}

	_, err = New(Config{TrustDomain: testTD, ServerID: "s", Store: newMemStore(), KeyManager: newMemKeys(), MaxSVIDTTL: 13 * time.Hour})
	wantKind(t, "New(max_svid_ttl > ttl/2)", err, errkind.InvalidArgument, "max_svid_ttl")
}

func TestInitCreatesActiveAuthorities(t *testing.T) {
	e := newEnv(t, nil)
	for _, kind := range kinds {
		a := e.active(t, kind)
		if a.ServerID != "server-1" {
			t.Errorf("%s authority ServerID = %q, want server-1", kind, a.ServerID)
		}
		if !a.NotBefore.Equal(testEpoch.Add(-clockSkew)) || !a.NotAfter.Equal(testEpoch.Add(24*time.Hour)) {
			t.Errorf("%s authority validity = [%s, %s], want [epoch-10s, epoch+24h]", kind, a.NotBefore, a.NotAfter)
		}
		if n := len(e.authorities(t, kind, model.StatePrepared)); n != 0 {
			t.Errorf("%d prepared %s authorities after Init, want 0", n, kind)
		}
	}
	// Init again on the same manager changes nothing.
	if err := e.m.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(e.store.auths); n != 2 {
		t.Errorf("store holds %d authorities after a second Init, want 2", n)
	}
}

func TestRestartKeepsKeys(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	x1, j1 := e.active(t, model.AuthorityX509), e.active(t, model.AuthorityJWT)

	// One key per authority, under the id the authority records.
	if x1.KeyID == "" || j1.KeyID == "" || !strings.HasPrefix(x1.KeyID, "x509-") || !strings.HasPrefix(j1.KeyID, "jwt-") {
		t.Errorf("key ids = %q, %q; want x509-… and jwt-…", x1.KeyID, j1.KeyID)
	}
	if got, want := e.keys.ids(), []string{j1.KeyID, x1.KeyID}; !slices.Equal(got, want) {
		t.Errorf("keys = %q, want %q", got, want)
	}

	// A new manager on the same key manager and store uses the same keys.
	e.clock.Add(time.Hour)
	m2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Init(ctx); err != nil {
		t.Fatalf("Init() after restart = %v", err)
	}
	if x2, j2 := e.active(t, model.AuthorityX509), e.active(t, model.AuthorityJWT); x2.ID != x1.ID || j2.ID != j1.ID {
		t.Errorf("active authorities after restart = %s, %s; want %s, %s", x2.ID, j2.ID, x1.ID, j1.ID)
	}
	chain, err := m2.SignX509SVID(ctx, newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := chain[0].AuthorityKeyId; !bytes.Equal(got, e.m.x509.Load().cert.SubjectKeyId) {
		t.Errorf("SVID after restart signed by %x, want the same CA %s", got, x1.ID)
	}
	if got := m2.jwt.Load().id; got != j1.ID {
		t.Errorf("JWT signer after restart = %s, want %s", got, j1.ID)
	}
}

func TestInitRefusesBadKeys(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, k *memKeys, id string)
		kind   errkind.Kind
		want   string
	}{
		{"missing", func(t *testing.T, k *memKeys, id string) {
			_ = k.DeleteKey(context.Background(), id)
		}, errkind.FailedPrecondition, "is missing"},
		{"another key", func(t *testing.T, k *memKeys, id string) {
			k.set(id, newP256(t))
		}, errkind.Internal, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			a := e.active(t, model.AuthorityX509)
			tt.break_(t, e.keys, a.KeyID)
			m2, err := New(e.cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = m2.Init(context.Background())
			wantKind(t, "Init()", err, tt.kind, tt.want)
			if err != nil && !strings.Contains(err.Error(), a.KeyID) {
				t.Errorf("Init() = %q, want it to name key %s", err, a.KeyID)
			}
		})
	}
}

// TestLegacyKeyID: an authority stored before key managers (no KeyID)
// finds its key under "<kind>-<id>", the old file name.
func TestLegacyKeyID(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for _, kind := range kinds {
		a := e.active(t, kind)
		key, err := e.keys.GetKey(ctx, a.KeyID)
		if err != nil {
			t.Fatal(err)
		}
		_ = e.keys.DeleteKey(ctx, a.KeyID)
		e.keys.set(string(kind)+"-"+a.ID, key)
		a.KeyID = ""
		if err := e.store.PutAuthority(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	m2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Init(ctx); err != nil {
		t.Fatalf("Init() with legacy key ids = %v", err)
	}
	if _, err := m2.SignX509SVID(ctx, newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour}); err != nil {
		t.Errorf("SignX509SVID() with a legacy key = %v", err)
	}
	// Retiring the legacy authority deletes the key under its legacy id.
	legacy := e.active(t, model.AuthorityX509)
	if _, err := m2.Prepare(ctx, model.AuthorityX509); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Activate(ctx, model.AuthorityX509); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(e.keys.ids(), "x509-"+legacy.ID) {
		t.Error("key of the retired legacy authority is still stored")
	}
}

// TestCreateFailureDeletesKey: a key generated for an authority the store
// refused is deleted again.
func TestCreateFailureDeletesKey(t *testing.T) {
	e := newEnv(t, nil)
	before := e.keys.ids()
	e.store.failPut = errors.New("disk full")
	if _, err := e.m.Prepare(context.Background(), model.AuthorityX509); err == nil {
		t.Fatal("Prepare() with a failing store = nil error")
	}
	if got := e.keys.ids(); !slices.Equal(got, before) {
		t.Errorf("keys after a failed Prepare = %q, want %q", got, before)
	}
}

func TestInitAfterDowntime(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	old := e.active(t, model.AuthorityX509)
	e.clock.Add(3 * 24 * time.Hour) // everything has expired
	m2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Init(ctx); err != nil {
		t.Fatalf("Init() after downtime = %v", err)
	}
	a := e.active(t, model.AuthorityX509)
	if a.ID == old.ID || !a.NotAfter.After(e.clock.Now()) {
		t.Fatalf("active x509 authority after downtime = %s until %s, want a fresh one", a.ID, a.NotAfter)
	}
	for _, a := range e.store.auths {
		if !a.NotAfter.After(e.clock.Now()) {
			t.Errorf("expired authority %s %s still stored", a.Kind, a.ID)
		}
	}
	chain, err := m2.SignX509SVID(ctx, newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	verifyX509(t, chain, e.bundle(t), e.clock.Now())
}

func TestRunStopsWithContext(t *testing.T) {
	m, err := New(Config{TrustDomain: testTD, ServerID: "s", Store: newMemStore(), KeyManager: newMemKeys()})
	if err != nil {
		t.Fatal(err)
	}
	wantKind(t, "Run() before Init", m.Run(context.Background()), errkind.FailedPrecondition, "Init")
	if err := m.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run() did not return after cancel")
	}
}

func TestLogsCarryNoKeyMaterial(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, func(c *Config) { c.Logger = logger })
	ctx := context.Background()
	if _, err := e.m.Prepare(ctx, model.AuthorityX509); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Activate(ctx, model.AuthorityX509); err != nil {
		t.Fatal(err)
	}
	// Log a private key on purpose: LogValue must redact it.
	k := e.m.x509.Load().key
	logger.Info("key", "key", k)
	out := buf.String()
	for _, want := range []string{`"msg":"authority active"`, `"msg":"authority prepared"`, `"msg":"authority activated"`, `"msg":"authority retired"`} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s:\n%s", want, out)
		}
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.signer)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := k.signer.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	d := hex.EncodeToString(raw)
	b64 := base64.StdEncoding.EncodeToString(raw)
	if strings.Contains(out, "PRIVATE KEY") || strings.Contains(strings.ToLower(out), d) || strings.Contains(out, b64) ||
		bytes.Contains(buf.Bytes(), der) {
		t.Errorf("logs contain key material:\n%s", out)
	}
	if s := k.String(); strings.Contains(s, d) {
		t.Errorf("privateKey.String() = %q, leaks the key", s)
	}
}

func TestDefaultSubject(t *testing.T) {
	e := newEnv(t, nil)
	if got := e.m.subject; !slices.Equal(got.Organization, []string{"Signet"}) {
		t.Errorf("default subject = %v, want O=Signet", got)
	}
	e2 := newEnv(t, func(c *Config) { c.Subject = pkix.Name{Organization: []string{"Acme"}} })
	if got := e2.m.x509.Load().cert.Subject.Organization; !slices.Equal(got, []string{"Acme"}) {
		t.Errorf("CA subject O = %v, want Acme", got)
	}
}

func TestErrorsWrapKinds(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.m.SignX509SVID(context.Background(), []byte("junk"), X509Params{ID: workload, TTL: time.Hour})
	var ke *errkind.Error
	if !errors.As(err, &ke) || !strings.HasPrefix(err.Error(), "sign x509-svid for "+workload.String()) {
		t.Errorf("SignX509SVID(junk) = %v, want a wrapped kinded error naming the operation", err)
	}
}
