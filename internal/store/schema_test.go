package store_test

import (
	"path/filepath"
	"testing"

	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

// InspectSchema reads the version of a migrated database, reports an empty
// one as version 0 and leaves it empty.
func TestInspectSchema(t *testing.T) {
	dir := t.TempDir()
	migrated := filepath.Join(dir, "migrated.db")
	openSQLite(t, migrated).Close()
	st, err := store.InspectSchema(t.Context(), store.Config{DSN: migrated})
	if err != nil {
		t.Fatalf("InspectSchema(migrated) error = %v", err)
	}
	if st.Current == 0 || st.Current != st.Latest || st.Pending() {
		t.Errorf("InspectSchema(migrated) = %+v, want current == latest > 0", st)
	}
	empty := filepath.Join(dir, "empty.db")
	for range 2 { // the second call sees what the first left
		st, err = store.InspectSchema(t.Context(), store.Config{DSN: empty})
		if err != nil {
			t.Fatalf("InspectSchema(empty) error = %v", err)
		}
		if st.Current != 0 || st.Latest == 0 || !st.Pending() {
			t.Errorf("InspectSchema(empty) = %+v, want current 0, pending", st)
		}
	}
	if _, err := store.InspectSchema(t.Context(), store.Config{Driver: "mysql", DSN: "x"}); err == nil {
		t.Error("InspectSchema(driver mysql) error = nil, want unknown driver")
	}
}

func TestInspectSchemaPostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	st, err := store.InspectSchema(t.Context(), store.Config{Driver: store.DriverPostgres, DSN: dsn})
	if err != nil || st.Current != 0 || !st.Pending() {
		t.Fatalf("InspectSchema(fresh postgres) = %+v, %v; want current 0, pending", st, err)
	}
	openPostgres(t, dsn).Close()
	st, err = store.InspectSchema(t.Context(), store.Config{Driver: store.DriverPostgres, DSN: dsn})
	if err != nil {
		t.Fatalf("InspectSchema(postgres) error = %v", err)
	}
	if st.Current == 0 || st.Pending() {
		t.Errorf("InspectSchema(postgres) = %+v, want migrated", st)
	}
}
