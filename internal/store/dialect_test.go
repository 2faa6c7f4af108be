package store

import (
	"strings"
	"testing"
)

func TestRedactDSN(t *testing.T) {
	cases := map[string]string{
		"postgres://signet:hunter2@db:5432/signet?sslmode=disable":     "postgres://signet:xxxxx@db:5432/signet?sslmode=disable",
		"postgres://signet@db/signet?password=hunter2&sslmode=require": "postgres://signet@db/signet?password=xxxxx&sslmode=require",
		"host=db user=signet password=hunter2 dbname=signet":           "host=db user=signet password=xxxxx dbname=signet",
		"host=db password='hunter2 with space' dbname=signet":          "host=db password=xxxxx dbname=signet",
		"postgres://signet@db/signet":                                  "postgres://signet@db/signet",
		"/var/lib/signet/signet.db":                                    "/var/lib/signet/signet.db",
	}
	for in, want := range cases {
		got := redactDSN(in)
		if got != want {
			t.Errorf("redactDSN(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "hunter2") {
			t.Errorf("redactDSN(%q) = %q leaks the password", in, got)
		}
	}
}

func TestRebind(t *testing.T) {
	q := "SELECT a FROM t WHERE b = ? AND c IN (?, ?)"
	if got := sqliteDialect.rebind(q); got != q {
		t.Errorf("sqlite rebind(%q) = %q, want it unchanged", q, got)
	}
	want := "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
	if got := postgresDialect.rebind(q); got != want {
		t.Errorf("postgres rebind(%q) = %q, want %q", q, got, want)
	}
}

func TestInsertSQL(t *testing.T) {
	got := sqliteDialect.insertSQL("t", []string{"a", "b"}, 2)
	want := "INSERT OR ROLLBACK INTO t (a, b) VALUES (?, ?), (?, ?)"
	if got != want {
		t.Errorf("insertSQL() = %q, want %q", got, want)
	}
}
