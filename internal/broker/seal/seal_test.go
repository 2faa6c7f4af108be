package seal_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/broker/seal"
)

func writeKEK(t *testing.T, key []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "broker.kek")
	if err := os.WriteFile(p, key, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func randKey(t *testing.T) []byte {
	k := make([]byte, seal.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLoadRefuses(t *testing.T) {
	cases := map[string]struct {
		key  []byte
		mode os.FileMode
		want string
	}{
		"group readable": {make([]byte, 32), 0o640, "chmod 600"},
		"world readable": {make([]byte, 32), 0o604, "chmod 600"},
		"short":          {make([]byte, 31), 0o600, "holds 31 bytes"},
		"long":           {make([]byte, 33), 0o600, "more than 32 bytes"},
		"empty":          {nil, 0o600, "holds 0 bytes"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := seal.Load(writeKEK(t, c.key, c.mode))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "broker.kek_file: ") {
				t.Fatalf("Load = %v, want an error naming broker.kek_file and containing %q", err, c.want)
			}
		})
	}
	if _, err := seal.Load(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("Load(missing) succeeded")
	}
	if _, err := seal.Load(t.TempDir()); err == nil {
		t.Fatal("Load(directory) succeeded")
	}
}

// TestReadKeyFileRules: OwnerOnly is 0600 or stricter; NotOthers, for the
// source of signet server kek install, also takes a group-readable file
// (a Kubernetes Secret in a pod with an fsGroup is 0440) and nothing more.
func TestReadKeyFileRules(t *testing.T) {
	key := randKey(t)
	for _, c := range []struct {
		mode      os.FileMode
		rule      seal.KeyFileMode
		ruleName  string
		wantError bool
	}{
		{0o600, seal.OwnerOnly, "OwnerOnly", false},
		{0o400, seal.OwnerOnly, "OwnerOnly", false},
		{0o440, seal.OwnerOnly, "OwnerOnly", true},
		{0o440, seal.NotOthers, "NotOthers", false},
		{0o640, seal.NotOthers, "NotOthers", false},
		{0o460, seal.NotOthers, "NotOthers", true},
		{0o444, seal.NotOthers, "NotOthers", true},
		{0o602, seal.NotOthers, "NotOthers", true},
	} {
		got, err := seal.ReadKeyFile("--from", writeKEK(t, key, c.mode), c.rule)
		switch {
		case c.wantError && (err == nil || !strings.HasPrefix(err.Error(), "--from: ") || !strings.Contains(err.Error(), "has mode")):
			t.Errorf("%s, mode %04o: ReadKeyFile = %v, want an error naming --from and the mode", c.ruleName, c.mode, err)
		case !c.wantError && (err != nil || !bytes.Equal(got, key)):
			t.Errorf("%s, mode %04o: ReadKeyFile = %x, %v, want the key", c.ruleName, c.mode, got, err)
		}
	}
}

func TestSealOpen(t *testing.T) {
	key := randKey(t)
	s, err := seal.Load(writeKEK(t, key, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("sk_live_0123456789abcdef")
	sealed, err := s.Seal(seal.PurposeSecret, "stripe", secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed value contains the plaintext")
	}
	again, _ := s.Seal(seal.PurposeSecret, "stripe", secret)
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals of one value are equal: nonce reused")
	}
	got, err := s.Open(seal.PurposeSecret, "stripe", sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v; want %q", got, err, secret)
	}
	// The same key loaded again (a restart) opens it too.
	s2, _ := seal.New(key)
	if got, err := s2.Open(seal.PurposeSecret, "stripe", sealed); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open after reload = %q, %v", got, err)
	}
	if s2.KeyID() != s.KeyID() || len(s.KeyID()) != 16 {
		t.Fatalf("KeyID = %q and %q", s.KeyID(), s2.KeyID())
	}

	// Another name, another purpose, a flipped bit: refused.
	if _, err := s.Open(seal.PurposeSecret, "other", sealed); err == nil {
		t.Error("Open under another name succeeded")
	}
	if _, err := s.Open(seal.PurposeRevoke, "stripe", sealed); err == nil {
		t.Error("Open for another purpose succeeded")
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 1
		if _, err := s.Open(seal.PurposeSecret, "stripe", bad); err == nil {
			t.Fatalf("Open with byte %d flipped succeeded", i)
		}
	}
	if _, err := s.Open(seal.PurposeSecret, "stripe", sealed[:10]); err == nil {
		t.Error("Open of a truncated value succeeded")
	}

	// Another KEK: ErrWrongKey, naming both ids.
	other, _ := seal.New(randKey(t))
	_, err = other.Open(seal.PurposeSecret, "stripe", sealed)
	if !errors.Is(err, seal.ErrWrongKey) || !strings.Contains(err.Error(), s.KeyID()) {
		t.Errorf("Open under another KEK = %v, want ErrWrongKey naming %s", err, s.KeyID())
	}
}

func TestCheckValue(t *testing.T) {
	s, _ := seal.New(randKey(t))
	check, err := s.CheckValue()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(check); err != nil {
		t.Fatalf("Verify(own check) = %v", err)
	}
	other, _ := seal.New(randKey(t))
	err = other.Verify(check)
	if err == nil || !strings.Contains(err.Error(), "not the key-encryption key") || !strings.Contains(err.Error(), s.KeyID()) {
		t.Fatalf("Verify(other KEK) = %v", err)
	}
	check[len(check)-1] ^= 1
	if err := s.Verify(check); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Verify(corrupt) = %v", err)
	}
}

func TestNewRejectsSize(t *testing.T) {
	if _, err := seal.New(make([]byte, 16)); err == nil {
		t.Fatal("New(16 bytes) succeeded")
	}
}

// FuzzOpen feeds arbitrary bytes (as read back from a store) to Open: it
// fails cleanly and never panics; a value it accepts is one it sealed.
func FuzzOpen(f *testing.F) {
	s, _ := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	good, _ := s.Seal(seal.PurposeSecret, "n", []byte("v"))
	f.Add(good, "n")
	f.Add([]byte{1}, "")
	f.Add(make([]byte, 64), "x")
	f.Fuzz(func(t *testing.T, sealed []byte, name string) {
		pt, err := s.Open(seal.PurposeSecret, name, sealed)
		if err == nil && (name != "n" || string(pt) != "v") {
			t.Fatalf("Open accepted a value it did not seal: %q", pt)
		}
		_ = s.Verify(sealed)
	})
}
