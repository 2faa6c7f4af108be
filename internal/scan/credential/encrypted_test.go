package credential_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-id/signet/internal/scan/credential"
	"github.com/signet-id/signet/internal/scan/scantest"
)

const testPassphrase = "correct horse battery staple"

// testKeys are generated once per process (RSA is slow); none is committed.
var testKeys = sync.OnceValue(func() (k struct {
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
	ed  ed25519.PrivateKey
}) {
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	return k
})

// TestDetectEncryptedKeys checks that every container of a
// passphrase-protected key, as the usual tools write it, is one finding of
// kind encrypted-private-key with low severity, the clear facts of its
// container as details, the block's span, and the block's decoded body as
// its canonical value.
func TestDetectEncryptedKeys(t *testing.T) {
	k := testKeys()
	ecDER, err := x509.MarshalECPrivateKey(k.ec)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content func(t *testing.T) string
		details map[string]string
	}{
		{"openssh ed25519", func(t *testing.T) string { return scantest.EncryptedOpenSSH(t, k.ed, "deploy@example", testPassphrase) },
			map[string]string{"format": "openssh", "cipher": "aes256-ctr", "kdf": "bcrypt", "key_type": "ed25519"}},
		{"openssh ecdsa", func(t *testing.T) string { return scantest.EncryptedOpenSSH(t, k.ec, "", testPassphrase) },
			map[string]string{"format": "openssh", "cipher": "aes256-ctr", "kdf": "bcrypt", "key_type": "ecdsa"}},
		{"openssh rsa", func(t *testing.T) string { return scantest.EncryptedOpenSSH(t, k.rsa, "", testPassphrase) },
			map[string]string{"format": "openssh", "cipher": "aes256-ctr", "kdf": "bcrypt", "key_type": "rsa"}},
		{"legacy pem rsa aes-256-cbc", func(t *testing.T) string {
			return scantest.EncryptedLegacyPEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa), testPassphrase, x509.PEMCipherAES256)
		}, map[string]string{"format": "pem", "cipher": "aes-256-cbc", "key_type": "rsa"}},
		{"legacy pem ec 3des", func(t *testing.T) string {
			return scantest.EncryptedLegacyPEM(t, "EC PRIVATE KEY", ecDER, testPassphrase, x509.PEMCipher3DES)
		}, map[string]string{"format": "pem", "cipher": "des-ede3-cbc", "key_type": "ecdsa"}},
		{"pkcs8 pbes2 pbkdf2 aes-256-cbc", func(t *testing.T) string {
			return scantest.EncryptedPKCS8(t, k.rsa, testPassphrase, "-v2", "aes-256-cbc")
		},
			map[string]string{"format": "pkcs8", "cipher": "aes-256-cbc", "kdf": "pbkdf2"}},
		{"pkcs8 pbes2 scrypt", func(t *testing.T) string { return scantest.EncryptedPKCS8(t, k.ec, testPassphrase, "-scrypt") },
			map[string]string{"format": "pkcs8", "cipher": "aes-256-cbc", "kdf": "scrypt"}},
		{"pkcs8 pkcs12 pbe-sha1-3des", func(t *testing.T) string {
			return scantest.EncryptedPKCS8(t, k.ec, testPassphrase, "-v1", "PBE-SHA1-3DES")
		},
			map[string]string{"format": "pkcs8", "cipher": "pbe-sha1-3des"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := "# key for the deploy job\n" + tt.content(t) + "trailing text\n"
			hits := credential.Detect("keys/deploy.key", []byte(content))
			if len(hits) != 1 {
				t.Fatalf("Detect(%s) = %v, want one hit", tt.name, hits)
			}
			h := hits[0]
			if h.Rule != "encrypted-private-key" || h.Kind != credential.KindEncryptedPrivateKey || h.Severity != credential.SeverityLow || h.Dismiss {
				t.Errorf("Detect(%s) = rule %q kind %q severity %q dismiss %t, want encrypted-private-key, %q, low, false",
					tt.name, h.Rule, h.Kind, h.Severity, h.Dismiss, credential.KindEncryptedPrivateKey)
			}
			if diff := cmp.Diff(tt.details, h.Details); diff != "" {
				t.Errorf("Detect(%s) details mismatch (-want +got):\n%s", tt.name, diff)
			}
			span := content[h.Start:h.End]
			block, _ := pem.Decode([]byte(span))
			if block == nil || !strings.HasPrefix(span, "-----BEGIN ") || !strings.HasSuffix(span, "PRIVATE KEY-----") {
				t.Fatalf("Detect(%s) span %q is not the key's block", tt.name, span)
			}
			if string(h.Value) != string(block.Bytes) {
				t.Errorf("Detect(%s) value is not the block's decoded body", tt.name)
			}
			if strings.Contains(h.Description, testPassphrase) || !strings.HasPrefix(h.Description, "Passphrase-protected private key (") {
				t.Errorf("Detect(%s) description = %q", tt.name, h.Description)
			}

			// The same file with CRLF line endings has the same value, so
			// the same fingerprint.
			crlf := strings.ReplaceAll(content, "\n", "\r\n")
			again := credential.Detect("keys/deploy.key", []byte(crlf))
			if len(again) != 1 || string(again[0].Value) != string(h.Value) {
				t.Errorf("Detect(%s) with CRLF line endings: %v, want the same single value", tt.name, again)
			}
		})
	}
}

// TestEncryptedLookAlikes lists blocks that carry an encrypted key's label
// but no usable key, and other PEM that is no private key: none is a
// finding, and the labelled ones are dismissed so that generic rules do not
// report them as plaintext keys.
func TestEncryptedLookAlikes(t *testing.T) {
	k := testKeys()
	enc := scantest.EncryptedOpenSSH(t, k.ed, "", testPassphrase)
	sshBody, _ := pem.Decode([]byte(enc))
	truncated := pemKey(t, "OPENSSH PRIVATE KEY", sshBody.Bytes[:len(sshBody.Bytes)/2], nil)
	pubDER, err := x509.MarshalPKIXPublicKey(k.ed.Public())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, content string
		want          []string
	}{
		{"pkcs8 label, random body", pemKey(t, "ENCRYPTED PRIVATE KEY", []byte(strings.Repeat("opaque", 50)), nil), []string{"!malformed-encrypted-private-key"}},
		{"pkcs8 label, sequence with trailing data", pemKey(t, "ENCRYPTED PRIVATE KEY", []byte{0x30, 0x00, 0x00}, nil), []string{"!malformed-encrypted-private-key"}},
		{"legacy label, no DEK-Info", pemKey(t, "RSA PRIVATE KEY", []byte("opaque"), map[string]string{"Proc-Type": "4,ENCRYPTED"}), []string{"!malformed-encrypted-private-key"}},
		{"legacy label, IV not hex", pemKey(t, "RSA PRIVATE KEY", []byte("opaque"), map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,zz"}), []string{"!malformed-encrypted-private-key"}},
		{"openssh encrypted, truncated", truncated, []string{"!malformed-encrypted-private-key"}},
		{"public key", pemKey(t, "PUBLIC KEY", pubDER, nil), nil},
		{"encrypted blob without key header", pemKey(t, "ENCRYPTED MESSAGE", []byte(strings.Repeat("x", 64)), map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits := credential.DetectPEM([]byte(tt.content))
			if diff := cmp.Diff(tt.want, rulesOf(hits)); diff != "" {
				t.Errorf("DetectPEM(%s) mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

func rulesOf(hits []credential.Hit) []string {
	var out []string
	for _, h := range hits {
		r := h.Rule
		if h.Dismiss {
			r = "!" + r
		}
		out = append(out, r)
	}
	return out
}

// sshHeader builds an openssh-key-v1 body from its fields.
type sshHeader struct {
	magic, cipher, kdf string
	opts               []byte
	nkeys              uint32
	pub, priv          []byte
	// lengths, when set, replaces the length prefix of the named field.
	lengths map[string]uint32
}

func (h sshHeader) bytes() []byte {
	var b []byte
	str := func(name string, v []byte) {
		n := uint32(len(v))
		if l, ok := h.lengths[name]; ok {
			n = l
		}
		b = binary.BigEndian.AppendUint32(b, n)
		b = append(b, v...)
	}
	b = append(b, h.magic...)
	str("cipher", []byte(h.cipher))
	str("kdf", []byte(h.kdf))
	str("opts", h.opts)
	b = binary.BigEndian.AppendUint32(b, h.nkeys)
	str("pub", h.pub)
	str("priv", h.priv)
	return b
}

func sshStr(v string) []byte { return binary.BigEndian.AppendUint32(nil, uint32(len(v))) }

func bcryptOpts(salt string, rounds uint32) []byte {
	o := append(sshStr(salt), salt...)
	return binary.BigEndian.AppendUint32(o, rounds)
}

func TestParseOpenSSHHeader(t *testing.T) {
	pub := append(sshStr("ssh-ed25519"), "ssh-ed25519"...)
	pub = append(append(pub, sshStr(strings.Repeat("k", 32))...), strings.Repeat("k", 32)...)
	good := sshHeader{magic: "openssh-key-v1\x00", cipher: "aes256-ctr", kdf: "bcrypt", opts: bcryptOpts("0123456789abcdef", 16), nkeys: 1, pub: pub, priv: make([]byte, 64)}
	with := func(f func(*sshHeader)) []byte { h := good; f(&h); return h.bytes() }
	tests := []struct {
		name    string
		data    []byte
		want    credential.OpenSSHHeader
		wantErr string
	}{
		{"encrypted", good.bytes(), credential.OpenSSHHeader{Cipher: "aes256-ctr", KDF: "bcrypt", Rounds: 16, KeyType: "ssh-ed25519", PrivateLen: 64}, ""},
		{"unencrypted", with(func(h *sshHeader) { h.cipher, h.kdf, h.opts = "none", "none", nil }), credential.OpenSSHHeader{Cipher: "none", KDF: "none", KeyType: "ssh-ed25519", PrivateLen: 64}, ""},
		{"empty", nil, credential.OpenSSHHeader{}, "bad magic"},
		{"bad magic", with(func(h *sshHeader) { h.magic = "openssh-key-v2\x00" }), credential.OpenSSHHeader{}, "bad magic"},
		{"cipher length past the end", with(func(h *sshHeader) { h.lengths = map[string]uint32{"cipher": 0xffffffff} }), credential.OpenSSHHeader{}, "bad cipher name"},
		{"cipher name too long", with(func(h *sshHeader) { h.cipher = strings.Repeat("a", 65) }), credential.OpenSSHHeader{}, "bad cipher name"},
		{"empty cipher", with(func(h *sshHeader) { h.cipher = "" }), credential.OpenSSHHeader{}, "bad cipher name"},
		{"cipher without kdf", with(func(h *sshHeader) { h.kdf, h.opts = "none", nil }), credential.OpenSSHHeader{Cipher: "aes256-ctr", KDF: "none"}, "without a kdf"},
		{"kdf without cipher", with(func(h *sshHeader) { h.cipher = "none" }), credential.OpenSSHHeader{Cipher: "none", KDF: "bcrypt"}, "without a cipher"},
		{"bcrypt zero rounds", with(func(h *sshHeader) { h.opts = bcryptOpts("salt", 0) }), credential.OpenSSHHeader{Cipher: "aes256-ctr", KDF: "bcrypt"}, "bad bcrypt options"},
		{"bcrypt options trailing", with(func(h *sshHeader) { h.opts = append(bcryptOpts("salt", 16), 0) }), credential.OpenSSHHeader{Cipher: "aes256-ctr", KDF: "bcrypt", Rounds: 16}, "bad bcrypt options"},
		{"kdf options too long", with(func(h *sshHeader) { h.opts = make([]byte, 2000) }), credential.OpenSSHHeader{Cipher: "aes256-ctr", KDF: "bcrypt"}, "bad kdf options"},
		{"two keys", with(func(h *sshHeader) { h.nkeys = 2 }), credential.OpenSSHHeader{Cipher: "aes256-ctr", KDF: "bcrypt", Rounds: 16}, "2 keys, want 1"},
		{"public key too long", with(func(h *sshHeader) { h.pub = make([]byte, 20<<10) }), credential.OpenSSHHeader{Cipher: "aes256-ctr", KDF: "bcrypt", Rounds: 16}, "bad public key"},
		{"private section truncated", with(func(h *sshHeader) { h.lengths = map[string]uint32{"priv": 65} }), credential.OpenSSHHeader{Cipher: "aes256-ctr", KDF: "bcrypt", Rounds: 16, KeyType: "ssh-ed25519"}, "bad private section"},
		{"non-printable cipher name", with(func(h *sshHeader) { h.cipher = "aes\x1b[2J" }), credential.OpenSSHHeader{Cipher: "aes?[2J", KDF: "bcrypt", Rounds: 16, KeyType: "ssh-ed25519", PrivateLen: 64}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := credential.ParseOpenSSHHeader(tt.data)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ParseOpenSSHHeader(%s) error = %v, want %q", tt.name, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseOpenSSHHeader(%s) mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

// TestEncryptedKeyFingerprintInputs checks which encodings of a key share a
// canonical value: re-encrypting a key (a new salt and IV) makes a new
// value, and the plaintext key keeps the canonical PKCS#8 value it always
// had, unaffected by an encrypted copy beside it.
func TestEncryptedKeyFingerprintInputs(t *testing.T) {
	k := testKeys()
	a := scantest.EncryptedOpenSSH(t, k.ed, "", testPassphrase)
	b := scantest.EncryptedOpenSSH(t, k.ed, "", testPassphrase)
	ha, hb := credential.DetectPEM([]byte(a)), credential.DetectPEM([]byte(b))
	if len(ha) != 1 || len(hb) != 1 || string(ha[0].Value) == string(hb[0].Value) {
		t.Errorf("two encryptions of one key: values equal or hits %v %v", ha, hb)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.ed)
	if err != nil {
		t.Fatal(err)
	}
	plain := pemKey(t, "PRIVATE KEY", der, nil)
	hits := credential.DetectPEM([]byte(plain + a))
	if diff := cmp.Diff([]string{"pem-private-key", "encrypted-private-key"}, rulesOf(hits)); diff != "" {
		t.Fatalf("DetectPEM(plain + encrypted) mismatch (-want +got):\n%s", diff)
	}
	if string(hits[0].Value) != string(der) {
		t.Errorf("plaintext key's value is not its PKCS#8 DER")
	}
}

// FuzzParseEncryptedKey feeds the parsers of encrypted keys' clear parts
// arbitrary bytes: they never panic, and what they return is bounded by
// the input and safe to display.
func FuzzParseEncryptedKey(f *testing.F) {
	k := testKeys()
	for _, s := range []string{
		scantest.EncryptedOpenSSH(f, k.ed, "fuzz", testPassphrase),
		scantest.EncryptedLegacyPEM(f, "EC PRIVATE KEY", mustECDER(f, k.ec), testPassphrase, x509.PEMCipherAES128),
		scantest.EncryptedPKCS8(f, k.ec, testPassphrase, "-v2", "aes-128-cbc"),
	} {
		b, _ := pem.Decode([]byte(s))
		f.Add(b.Bytes, b.Headers["DEK-Info"])
	}
	f.Add([]byte("openssh-key-v1\x00"), "AES-128-CBC,00")
	f.Fuzz(func(t *testing.T, data []byte, dekInfo string) {
		if h, err := credential.ParseOpenSSHHeader(data); err == nil {
			if h.PrivateLen <= 0 || h.PrivateLen > len(data) {
				t.Fatalf("ParseOpenSSHHeader: private section of %d bytes in %d", h.PrivateLen, len(data))
			}
			for _, s := range []string{h.Cipher, h.KDF, h.KeyType} {
				if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
					t.Fatalf("ParseOpenSSHHeader: name %q empty or not printable", s)
				}
			}
		}
		if e, err := credential.ParseEncryptedPKCS8(data); err == nil && e.Scheme == "" {
			t.Fatalf("ParseEncryptedPKCS8: no scheme")
		}
		b := &pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": dekInfo}, Bytes: data}
		if c, err := credential.LegacyPEMEncryption(b); err == nil && (c == "" || len(c) > 64) {
			t.Fatalf("LegacyPEMEncryption = %q", c)
		}
		armored := pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: data})
		checkHits(t, armored, credential.DetectPEM(armored))
	})
}

func mustECDER(f *testing.F, k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		f.Fatal(err)
	}
	return der
}
