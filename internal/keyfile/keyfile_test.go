package keyfile_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/keyfile"
)

func TestReadPrivate(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for _, tc := range []struct {
		name string
		mode os.FileMode
		data []byte
		want string // error substring; "" for success
	}{
		{"owner only", 0o600, pemKey, ""},
		{"group readable", 0o640, pemKey, "(mode 0640): run chmod 600"},
		{"world readable", 0o644, pemKey, "(mode 0644): run chmod 600"},
		{"too large", 0o600, make([]byte, keyfile.MaxSize+1), "is larger than"},
		{"not a key", 0o600, []byte("hello"), "no PEM private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(p, tc.data, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			data, err := keyfile.ReadPrivate(p)
			if err == nil {
				_, err = keyfile.Signer(p, data)
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("ReadPrivate+Signer = %v, want success", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("ReadPrivate+Signer = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := keyfile.ReadPrivate(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ReadPrivate(dir) = %v, want not a regular file", err)
	}
	if _, err := keyfile.Certificates("x.pem", pemKey); err == nil || !strings.Contains(err.Error(), "x.pem holds no PEM CERTIFICATE block") {
		t.Errorf("Certificates(key only) = %v", err)
	}
}

func FuzzCertificatesAndSigner(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = keyfile.Certificates("f", data)
		_, _ = keyfile.Signer("f", data)
	})
}

func TestReadLimited(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := keyfile.ReadLimited(path, 10); err != nil || string(got) != "0123456789" {
		t.Fatalf("ReadLimited at the limit = %q, %v", got, err)
	}
	if _, err := keyfile.ReadLimited(path, 9); err == nil || !strings.Contains(err.Error(), "larger than 9 bytes") {
		t.Fatalf("ReadLimited over the limit: err = %v, want larger than 9 bytes", err)
	}
	if _, err := keyfile.ReadLimited(filepath.Join(t.TempDir(), "missing"), 9); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadLimited of a missing file: err = %v, want not exist", err)
	}
}
