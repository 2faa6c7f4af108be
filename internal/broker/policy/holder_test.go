package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestHolderReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	allowEtl := "rules:\n  - name: etl\n    credentials: [db]\n    when: subject.path == \"/etl\"\n"
	write(allowEtl)
	h, err := NewHolder(path)
	if err != nil {
		t.Fatal(err)
	}
	in := input("spiffe://example.org/etl", "db")
	if d := h.Decide(context.Background(), in); !d.Allowed || d.Rule != "etl" {
		t.Fatalf("Decide() = %s, want allow by etl", d.Explain())
	}

	// A policy that does not compile: Reload fails, naming the rule and
	// line, and the old policy stays in force.
	write("rules:\n  - name: etl\n    credentials: [db]\n    when: subject.pth == \"/etl\"\n")
	err = h.Reload()
	if err == nil || !strings.Contains(err.Error(), path+":4:") || !strings.Contains(err.Error(), `rule "etl"`) {
		t.Fatalf("Reload(bad policy) = %v, want an error with the file, line and rule", err)
	}
	if d := h.Decide(context.Background(), in); !d.Allowed {
		t.Fatalf("after a failed reload Decide() = %s, want the old policy's allow", d.Explain())
	}

	// A missing file keeps the old policy too.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := h.Reload(); err == nil {
		t.Fatal("Reload(missing file) succeeded")
	}
	if !h.Decide(context.Background(), in).Allowed {
		t.Fatal("after a failed reload the old policy is gone")
	}

	// A good new policy replaces it.
	write("rules:\n  - name: web\n    credentials: [db]\n    when: subject.path == \"/web\"\n")
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	if d := h.Decide(context.Background(), in); d.Allowed {
		t.Fatalf("after reload Decide() = %s, want deny", d.Explain())
	}
	if got := h.Policy().RuleNames(); len(got) != 1 || got[0] != "web" {
		t.Errorf("Policy().RuleNames() = %v, want [web]", got)
	}

	// Decisions and reloads may run at once.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				h.Decide(context.Background(), in)
			}
		})
	}
	for range 5 {
		write(allowEtl)
		if err := h.Reload(); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	if !h.Decide(context.Background(), in).Allowed {
		t.Error("after the last reload etl is not allowed")
	}
}

func TestNewHolderBadPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("rules:\n  - name: a\n    credentials: [x]\n    when: 1 + 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewHolder(path); err == nil || !strings.Contains(err.Error(), `rule "a"`) {
		t.Fatalf("NewHolder(bad policy) = %v, want an error naming the rule", err)
	}
	if _, err := NewHolder(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("NewHolder(missing file) succeeded")
	}
}
