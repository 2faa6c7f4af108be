package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/ca/keymanager/disk"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// The SQL store is the AuthorityStore the server gives the CA; package ca
// itself does not import it.
var _ ca.AuthorityStore = (*store.Store)(nil)

var (
	extTD       = spiffeid.RequireTrustDomainFromString("example.org")
	extEpoch    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	extWorkload = spiffeid.RequireFromString("spiffe://example.org/ns/prod/web")
)

// clock is a settable clock safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// realEnv is a Manager on the real embedded store and the disk key manager,
// as the server builds it.
type realEnv struct {
	store   *store.Store
	clock   *clock
	keysDir string
	cfg     ca.Config
}

func newRealEnv(t *testing.T) *realEnv {
	t.Helper()
	e := &realEnv{clock: &clock{t: extEpoch}, keysDir: filepath.Join(t.TempDir(), "keys")}
	st, err := store.Open(context.Background(), store.Config{DSN: filepath.Join(t.TempDir(), "signet.db"), Now: e.clock.Now})
	if err != nil {
		t.Fatalf("store.Open() = %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e.store = st
	e.cfg = ca.Config{TrustDomain: extTD, ServerID: "server-1", Store: st, Now: e.clock.Now}
	return e
}

// start opens the disk key manager afresh (as a restarted server does) and
// returns an initialized Manager.
func (e *realEnv) start(t *testing.T) *ca.Manager {
	t.Helper()
	m, err := e.tryStart()
	if err != nil {
		t.Fatalf("start manager: %v", err)
	}
	return m
}

func (e *realEnv) tryStart() (*ca.Manager, error) {
	km, err := disk.New(disk.Config{Dir: e.keysDir})
	if err != nil {
		return nil, err
	}
	cfg := e.cfg
	cfg.KeyManager = km
	m, err := ca.New(cfg)
	if err != nil {
		return nil, err
	}
	return m, m.Init(context.Background())
}

func (e *realEnv) active(t *testing.T, kind model.AuthorityKind) model.Authority {
	t.Helper()
	auths, err := e.store.ListAuthorities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range auths {
		if a.Kind == kind && a.State == model.StateActive {
			return a
		}
	}
	t.Fatalf("no active %s authority", kind)
	return model.Authority{}
}

func (e *realEnv) verify(t *testing.T, chain []*x509.Certificate, at time.Time) {
	t.Helper()
	auths, err := e.store.ListAuthorities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.BundleFromAuthorities(extTD, auths, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(chain, b, x509svid.WithTime(at)); err != nil {
		t.Fatalf("x509svid.Verify() at %s = %v", at, err)
	}
}

func newCSR(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestSQLiteStoreAndDiskKeys runs restart and a rotation cycle against the
// real embedded store and the disk key manager: times and ordering must
// round-trip, and key files must follow the authorities.
func TestSQLiteStoreAndDiskKeys(t *testing.T) {
	ctx := context.Background()
	e := newRealEnv(t)
	m := e.start(t)
	first := e.active(t, model.AuthorityX509)
	jwt := e.active(t, model.AuthorityJWT)
	csr := newCSR(t)
	old, err := m.SignX509SVID(ctx, csr, ca.X509Params{ID: extWorkload, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	// One 0600 file per authority, named by its key id, in a 0700 dir.
	wantFiles(t, e.keysDir, first.KeyID, jwt.KeyID)

	// A restarted manager finds the same authorities and keys.
	m2 := e.start(t)
	if got := e.active(t, model.AuthorityX509); got.ID != first.ID {
		t.Fatalf("active after restart = %s, want %s", got.ID, first.ID)
	}

	// One rotation cycle: prepared at 12h, active at 20h, old one deleted at 24h.
	for _, at := range []time.Duration{12 * time.Hour, 20 * time.Hour, 24 * time.Hour} {
		e.clock.Set(extEpoch.Add(at))
		if err := m2.Rotate(ctx); err != nil {
			t.Fatalf("Rotate() at +%s = %v", at, err)
		}
		if at == 20*time.Hour {
			e.verify(t, old, extEpoch.Add(30*time.Minute)) // old CA still published
		}
		chain, err := m2.SignX509SVID(ctx, csr, ca.X509Params{ID: extWorkload, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		e.verify(t, chain, e.clock.Now())
	}
	now := e.active(t, model.AuthorityX509)
	if now.ID == first.ID {
		t.Error("no rotation after a full lifetime")
	}
	auths, _ := e.store.ListAuthorities(ctx)
	var keyIDs []string
	for _, a := range auths {
		if a.ID == first.ID {
			t.Errorf("expired authority %s still stored (%s)", a.ID, a.State)
		}
		if a.State == model.StateActive || a.State == model.StatePrepared {
			keyIDs = append(keyIDs, a.KeyID)
		}
	}
	wantFiles(t, e.keysDir, keyIDs...)
}

// wantFiles checks that dir holds exactly the key files of ids, mode 0600.
func wantFiles(t *testing.T, dir string, ids ...string) {
	t.Helper()
	var want []string
	for _, id := range ids {
		want = append(want, id+".pem")
	}
	slices.Sort(want)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range ents {
		got = append(got, de.Name())
		fi, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("key file %s mode = %04o, want 0600", de.Name(), fi.Mode().Perm())
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("key files = %q, want %q", got, want)
	}
}

// TestInitRefusesBadKeyFiles: a server whose key file was lost or exposed
// does not start, and says which file and what to do.
func TestInitRefusesBadKeyFiles(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, path string)
		kind   errkind.Kind
		want   string
	}{
		{"group readable", func(t *testing.T, p string) {
			if err := os.Chmod(p, 0o640); err != nil {
				t.Fatal(err)
			}
		}, errkind.FailedPrecondition, "chmod 600"},
		{"missing", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, errkind.FailedPrecondition, "is missing"},
		{"garbage", func(t *testing.T, p string) {
			if err := os.WriteFile(p, []byte("not a key"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, errkind.Internal, "no PEM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newRealEnv(t)
			e.start(t)
			path := filepath.Join(e.keysDir, e.active(t, model.AuthorityX509).KeyID+".pem")
			tt.break_(t, path)
			_, err := e.tryStart()
			if err == nil {
				t.Fatal("Init() = nil error, want one")
			}
			if errkind.Of(err) != tt.kind || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Init() = %q (kind %s), want kind %s, %q and the path %s", err, errkind.Of(err), tt.kind, tt.want, path)
			}
		})
	}
}
