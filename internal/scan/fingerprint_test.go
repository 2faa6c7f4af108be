package scan_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/scan"
)

func TestFingerprinter(t *testing.T) {
	a, err := scan.NewFingerprinter([]byte("key-one-key-one-key-one"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := scan.NewFingerprinter([]byte("key-two-key-two-key-two"))
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := []byte("hunter2-hunter2"), []byte("hunter3-hunter3")
	if first, again := a.Sum(s1), a.Sum(bytes.Clone(s1)); first != again {
		t.Errorf("Sum = %s then %s for the same secret", first, again)
	}
	if a.Sum(s1) == a.Sum(s2) {
		t.Errorf("Sum(s1) == Sum(s2) for different secrets")
	}
	if a.Sum(s1) == b.Sum(s1) {
		t.Errorf("Sum under two keys is equal")
	}
	if got := a.Sum(s1); len(got) != 16 || strings.Trim(got, "0123456789abcdef") != "" {
		t.Errorf("Sum = %q, want 16 hex digits", got)
	}
	if _, err := scan.NewFingerprinter([]byte("short")); err == nil {
		t.Errorf("NewFingerprinter(short key) succeeded, want error")
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "k")
	if err := os.WriteFile(file, []byte("  from-the-key-file-0123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	def := filepath.Join(dir, "config", "signet", "fingerprint.key")

	got, err := scan.LoadKey(scan.KeySource{File: file, Env: "from-the-environment", DefaultPath: def})
	if err != nil || string(got) != "from-the-key-file-0123" {
		t.Errorf("LoadKey(file, env) = %q, %v; want the file's key", got, err)
	}
	got, err = scan.LoadKey(scan.KeySource{Env: "from-the-environment", DefaultPath: def})
	if err != nil || string(got) != "from-the-environment" {
		t.Errorf("LoadKey(env) = %q, %v; want the environment's key", got, err)
	}
	if _, err := scan.LoadKey(scan.KeySource{Env: "short"}); err == nil {
		t.Errorf("LoadKey(short env key) succeeded, want error")
	}
	if _, err := scan.LoadKey(scan.KeySource{File: filepath.Join(dir, "missing")}); err == nil {
		t.Errorf("LoadKey(missing file) succeeded, want error")
	}

	// The default key is created once, private, and then reused.
	first, err := scan.LoadKey(scan.KeySource{DefaultPath: def})
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(def)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("default key mode %#o, want 0600", info.Mode().Perm())
	}
	second, err := scan.LoadKey(scan.KeySource{DefaultPath: def})
	if err != nil || string(second) != string(first) || len(first) != 64 {
		t.Errorf("LoadKey(default) again = %q, %v; want the same 64-digit key %q", second, err, first)
	}
	if err := os.Chmod(def, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := scan.LoadKey(scan.KeySource{DefaultPath: def}); err == nil {
		t.Errorf("LoadKey(default key readable by others) succeeded, want error")
	}
}

func TestByteSize(t *testing.T) {
	tests := map[string]scan.ByteSize{"10MiB": 10 << 20, "512kb": 512000, "1G": 1 << 30, "123": 123, " 2 KiB ": 2048}
	for in, want := range tests {
		var b scan.ByteSize
		if err := b.Set(in); err != nil || b != want {
			t.Errorf("ByteSize.Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "ten", "-1", "1TB", "99999999999GiB"} {
		if _, err := scan.ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) succeeded, want error", in)
		}
	}
	if got := scan.ByteSize(10 << 20).String(); got != "10MiB" {
		t.Errorf("ByteSize(10MiB).String() = %q", got)
	}
}
