package scantest

import (
	"bytes"
	"crypto"
	cryptorand "crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Passphrase-protected keys, made at test time by the tools that make
// them in the field: x/crypto/ssh writes OpenSSH's format, crypto/x509 the
// legacy OpenSSL PEM encryption, and the openssl command PKCS#8.

// EncryptedOpenSSH returns key as an "OPENSSH PRIVATE KEY" PEM block
// encrypted with passphrase (aes256-ctr, bcrypt KDF, as ssh-keygen writes).
func EncryptedOpenSSH(t testing.TB, key crypto.PrivateKey, comment, passphrase string) string {
	t.Helper()
	b, err := ssh.MarshalPrivateKeyWithPassphrase(key, comment, []byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(b))
}

// EncryptedLegacyPEM returns the PKCS#1 or SEC 1 DER der as a PEM block of
// type blockType with legacy "Proc-Type: 4,ENCRYPTED" encryption under
// passphrase, as `openssl rsa -aes256 -traditional` writes.
func EncryptedLegacyPEM(t testing.TB, blockType string, der []byte, passphrase string, alg x509.PEMCipher) string {
	t.Helper()
	//lint:ignore SA1019 legacy PEM encryption is insecure, which is why keys in this format are still in the field and must be found.
	b, err := x509.EncryptPEMBlock(cryptorand.Reader, blockType, der, []byte(passphrase), alg)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(b))
}

// EncryptedPKCS8 returns key as an "ENCRYPTED PRIVATE KEY" PEM block made
// by `openssl pkcs8 -topk8` with the given scheme arguments (for example
// "-v2", "aes-256-cbc", or "-v1", "PBE-SHA1-3DES", or "-scrypt"). It skips
// the test when openssl is not installed.
func EncryptedPKCS8(t testing.TB, key crypto.PrivateKey, passphrase string, scheme ...string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// The passphrase goes through a file, never the command line.
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte(passphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"pkcs8", "-topk8", "-inform", "DER", "-outform", "PEM", "-passout", "file:" + pass}, scheme...)
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(der)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}
