package store_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

func openPostgres(tb testing.TB, dsn string) *store.Store {
	tb.Helper()
	s, err := store.Open(tb.Context(), store.Config{Driver: store.DriverPostgres, DSN: dsn})
	if err != nil {
		tb.Fatalf("Open(postgres) error = %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *store.Store {
		return openPostgres(t, storetest.PostgresDSN(t))
	})
}

func TestPostgresReopen(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	s, err := store.Open(t.Context(), store.Config{Driver: store.DriverPostgres, DSN: dsn})
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	testReopen(t, s, func() *store.Store { return openPostgres(t, dsn) })
}

// TestPostgresConcurrentOpen starts several "replicas" on one fresh
// database at once: the migration lock must let exactly one migrate.
func TestPostgresConcurrentOpen(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := store.Open(t.Context(), store.Config{Driver: store.DriverPostgres, DSN: dsn})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Open() error = %v", i, err)
		}
	}
}

func TestPostgresOpenErrors(t *testing.T) {
	const secret = "s3cr3t-pw"
	cases := map[string]string{
		"unreachable url": "postgres://signet:" + secret + "@127.0.0.1:1/signet?sslmode=disable&connect_timeout=2",
		"unreachable kv":  "host=127.0.0.1 port=1 user=signet password=" + secret + " dbname=signet sslmode=disable connect_timeout=2",
		"malformed":       "postgres://signet:" + secret + "@127.0.0.1:notaport/signet",
		"empty":           "",
	}
	for name, dsn := range cases {
		s, err := store.Open(t.Context(), store.Config{Driver: store.DriverPostgres, DSN: dsn})
		if err == nil {
			s.Close()
			t.Errorf("%s: Open() error = nil", name)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "postgres") || strings.Contains(msg, secret) {
			t.Errorf("%s: Open() error = %q, want it to name postgres and not reveal the password", name, msg)
		}
	}
}
