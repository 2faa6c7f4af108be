package ca_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCADoesNotImportStore: the CA reaches the store only through its own
// AuthorityStore interface over internal/model types, so it can be built,
// reused and tested without the SQL store and its drivers.
func TestCADoesNotImportStore(t *testing.T) {
	pkgs := []string{
		"github.com/signet-id/signet/internal/ca",
		"github.com/signet-id/signet/internal/ca/keymanager/...",
		"github.com/signet-id/signet/internal/ca/upstream/...",
	}
	out, err := exec.Command("go", append([]string{"list", "-e", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range []string{"github.com/signet-id/signet/internal/store", "modernc.org/sqlite", "github.com/jackc/pgx/v5"} {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("%v depend on %s", pkgs, dep)
			}
		}
	}
}
