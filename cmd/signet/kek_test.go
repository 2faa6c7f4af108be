package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/broker/seal"
)

func runKEK(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newServerKEKCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	err := cmd.Execute()
	return out.String(), err
}

func TestKEKGenerate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ca.kek")
	out, err := runKEK(t, "generate", p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := seal.LoadFile("kek", p) // mode 0600, exactly 32 bytes
	if err != nil {
		t.Fatal(err)
	}
	if want := "key-encryption key " + s.KeyID() + " written to " + p + "\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
	before, _ := os.ReadFile(p)
	if _, err := runKEK(t, "generate", p); err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Errorf("generate over an existing file = %v, want a refusal", err)
	}
	if after, _ := os.ReadFile(p); !bytes.Equal(before, after) {
		t.Error("generate changed an existing KEK")
	}
	other := filepath.Join(t.TempDir(), "other.kek")
	if _, err := runKEK(t, "generate", other); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(other); bytes.Equal(b, before) {
		t.Error("two generated KEKs are equal")
	}
	if _, err := runKEK(t, "generate", filepath.Join(t.TempDir(), "missing", "ca.kek")); err == nil || !strings.HasPrefix(err.Error(), "FILE: ") {
		t.Errorf("generate into a missing directory = %v, want an error naming FILE", err)
	}
}

// TestKEKInstall is the Helm chart's init container: a Secret mounted
// with an fsGroup is 0440; the installed copy is 0600 and the server's
// check accepts it.
func TestKEKInstall(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{7}, seal.KeySize)
	src := filepath.Join(dir, "secret-kek")
	write := func(b []byte, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(src, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(src, mode); err != nil {
			t.Fatal(err)
		}
	}
	write(key, 0o440)
	dst := filepath.Join(dir, "run", "kek")
	if err := os.Mkdir(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := runKEK(t, "install", src, dst)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if fi.Mode().Perm() != 0o600 || !bytes.Equal(got, key) {
		t.Errorf("installed file mode %04o, content equal %v: want 0600 and the key", fi.Mode().Perm(), bytes.Equal(got, key))
	}
	s, _ := seal.New(key)
	if !strings.Contains(out, s.KeyID()) {
		t.Errorf("output %q does not name the key id %s", out, s.KeyID())
	}

	for name, c := range map[string]struct {
		key  []byte
		mode os.FileMode
		dst  string
		want string
	}{
		"source open to others":        {key, 0o444, filepath.Join(dir, "a"), "SOURCE: "},
		"source writable by group":     {key, 0o460, filepath.Join(dir, "b"), "SOURCE: "},
		"source too short":             {key[:31], 0o400, filepath.Join(dir, "c"), "holds 31 bytes"},
		"destination is the source":    {key, 0o400, src, "is SOURCE itself"},
		"destination directory absent": {key, 0o400, filepath.Join(dir, "none", "kek"), "FILE: "},
	} {
		t.Run(name, func(t *testing.T) {
			write(c.key, c.mode)
			if _, err := runKEK(t, "install", src, c.dst); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("install = %v, want an error containing %q", err, c.want)
			}
			if c.dst != src {
				if _, err := os.Stat(c.dst); !os.IsNotExist(err) {
					t.Errorf("a refused install left %s (%v)", c.dst, err)
				}
			}
		})
	}
}
