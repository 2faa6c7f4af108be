package credential

import (
	encasn1 "encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Passphrase-protected private keys.
//
// An encrypted key is still a long-lived credential: its passphrase lives
// somewhere (a wiki, a CI variable, a colleague's memory), and an encrypted
// key in a repository can be attacked offline for as long as the copy
// exists. It is reported as KindEncryptedPrivateKey with low severity,
// below every plaintext secret. Three containers are recognised, each
// parsed far enough to tell a real encrypted key from a block that only
// carries the label: OpenSSH's openssh-key-v1 with a cipher other than
// "none", PKCS#8 EncryptedPrivateKeyInfo ("ENCRYPTED PRIVATE KEY"), and
// legacy PEM encryption (a "Proc-Type: 4,ENCRYPTED" header with DEK-Info).
// Nothing is decrypted; the facts recorded (format, cipher, KDF) are in the
// clear in the container.

// Limits of the openssh-key-v1 header fields, far above anything OpenSSH
// writes (cipher and KDF names of a few dozen bytes, a 16-byte salt, one
// public key of at most a few KiB), so that a hostile header cannot make
// the parser hold or copy much.
const (
	maxOpenSSHName       = 64
	maxOpenSSHKDFOptions = 1 << 10
	maxOpenSSHPublicKey  = 16 << 10
)

// OpenSSHHeader is the clear part of an openssh-key-v1 private key (the
// binary body of an "OPENSSH PRIVATE KEY" PEM block, see OpenSSH's
// PROTOCOL.key): everything before the private section, which is
// encrypted unless Cipher is "none".
type OpenSSHHeader struct {
	Cipher string // "none", "aes256-ctr", "chacha20-poly1305@openssh.com", ...
	KDF    string // "none" or "bcrypt"
	// Rounds is the bcrypt KDF's work factor; zero when KDF is "none".
	Rounds uint32
	// KeyType is the type of the key's public half, e.g. "ssh-ed25519".
	KeyType string
	// PrivateLen is the length of the (possibly encrypted) private section.
	PrivateLen int
}

// Encrypted reports whether the private section is encrypted.
func (h OpenSSHHeader) Encrypted() bool { return h.Cipher != "none" }

// ParseOpenSSHHeader parses the header of an openssh-key-v1 key: magic,
// cipher and KDF names, KDF options, one public key and the private
// section's length prefix. Every length is checked against what remains
// and against the limits above. It returns an error for anything OpenSSH
// itself would refuse to load: a bad magic, truncation, a key count other
// than one, a cipher without a KDF or a KDF without a cipher.
func ParseOpenSSHHeader(data []byte) (OpenSSHHeader, error) {
	const magic = "openssh-key-v1\x00"
	var h OpenSSHHeader
	s := cryptobyte.String(data)
	if !s.Skip(len(magic)) || string(data[:len(magic)]) != magic {
		return h, errors.New("parse openssh key: bad magic")
	}
	cipher, ok := readSSHString(&s, maxOpenSSHName)
	if !ok || len(cipher) == 0 {
		return h, errors.New("parse openssh key: bad cipher name")
	}
	kdf, ok := readSSHString(&s, maxOpenSSHName)
	if !ok || len(kdf) == 0 {
		return h, errors.New("parse openssh key: bad kdf name")
	}
	h.Cipher, h.KDF = printable(cipher), printable(kdf)
	opts, ok := readSSHString(&s, maxOpenSSHKDFOptions)
	if !ok {
		return h, errors.New("parse openssh key: bad kdf options")
	}
	switch {
	case h.KDF == "none":
		if len(opts) != 0 {
			return h, errors.New("parse openssh key: kdf options without a kdf")
		}
		if h.Encrypted() {
			return h, fmt.Errorf("parse openssh key: cipher %q without a kdf", h.Cipher)
		}
	case !h.Encrypted():
		return h, fmt.Errorf("parse openssh key: kdf %q without a cipher", h.KDF)
	case h.KDF == "bcrypt":
		o := cryptobyte.String(opts)
		salt, ok := readSSHString(&o, maxOpenSSHKDFOptions)
		if !ok || len(salt) == 0 || !o.ReadUint32(&h.Rounds) || !o.Empty() || h.Rounds == 0 {
			return h, errors.New("parse openssh key: bad bcrypt options")
		}
	}
	var n uint32
	if !s.ReadUint32(&n) {
		return h, errors.New("parse openssh key: truncated")
	}
	if n != 1 {
		return h, fmt.Errorf("parse openssh key: %d keys, want 1", n)
	}
	pub, ok := readSSHString(&s, maxOpenSSHPublicKey)
	if !ok {
		return h, errors.New("parse openssh key: bad public key")
	}
	p := cryptobyte.String(pub)
	typ, ok := readSSHString(&p, maxOpenSSHName)
	if !ok || len(typ) == 0 {
		return h, errors.New("parse openssh key: bad public key type")
	}
	h.KeyType = printable(typ)
	priv, ok := readSSHString(&s, len(s))
	if !ok || len(priv) == 0 {
		return h, errors.New("parse openssh key: bad private section")
	}
	h.PrivateLen = len(priv)
	// An AEAD cipher's tag may follow the private section; nothing else.
	return h, nil
}

// readSSHString reads an SSH wire string (a uint32 length, then the bytes)
// of at most limit bytes.
func readSSHString(s *cryptobyte.String, limit int) ([]byte, bool) {
	var n uint32
	if !s.ReadUint32(&n) || uint64(n) > uint64(limit) {
		return nil, false
	}
	var out []byte
	return out, s.ReadBytes(&out, int(n))
}

// printable returns b as a string with bytes outside printable ASCII
// replaced by '?', so that a name read from a file is safe to display.
func printable(b []byte) string {
	out := []byte(string(b))
	for i, c := range out {
		if c < 0x21 || c > 0x7e {
			out[i] = '?'
		}
	}
	return string(out)
}

// sshKeyType maps an SSH public key type to the key_type detail's values.
func sshKeyType(t string) string {
	switch {
	case t == "ssh-rsa":
		return "rsa"
	case strings.HasPrefix(t, "ecdsa-sha2-"):
		return "ecdsa"
	case t == "ssh-ed25519":
		return "ed25519"
	case t == "ssh-dss":
		return "dsa"
	}
	return "other"
}

// Object identifiers of the PKCS#5 / PKCS#12 password-based encryption
// schemes found in EncryptedPrivateKeyInfo (RFC 8018, RFC 7292, RFC 7914).
var pbeNames = map[string]string{
	"1.2.840.113549.1.5.13":   "pbes2",
	"1.2.840.113549.1.5.1":    "pbe-md2-des-cbc",
	"1.2.840.113549.1.5.3":    "pbe-md5-des-cbc",
	"1.2.840.113549.1.5.4":    "pbe-md2-rc2-cbc",
	"1.2.840.113549.1.5.6":    "pbe-md5-rc2-cbc",
	"1.2.840.113549.1.5.10":   "pbe-sha1-des-cbc",
	"1.2.840.113549.1.5.11":   "pbe-sha1-rc2-cbc",
	"1.2.840.113549.1.12.1.1": "pbe-sha1-rc4-128",
	"1.2.840.113549.1.12.1.2": "pbe-sha1-rc4-40",
	"1.2.840.113549.1.12.1.3": "pbe-sha1-3des",
	"1.2.840.113549.1.12.1.4": "pbe-sha1-2des",
	"1.2.840.113549.1.12.1.5": "pbe-sha1-rc2-128",
	"1.2.840.113549.1.12.1.6": "pbe-sha1-rc2-40",
}

var (
	oidPBKDF2 = "1.2.840.113549.1.5.12"
	oidScrypt = "1.3.6.1.4.1.11591.4.11"
	// PBES2 encryption schemes (RFC 8018 B.2, NIST AES).
	pbes2Ciphers = map[string]string{
		"1.3.14.3.2.7":            "des-cbc",
		"1.2.840.113549.3.7":      "des-ede3-cbc",
		"1.2.840.113549.3.2":      "rc2-cbc",
		"2.16.840.1.101.3.4.1.2":  "aes-128-cbc",
		"2.16.840.1.101.3.4.1.22": "aes-192-cbc",
		"2.16.840.1.101.3.4.1.42": "aes-256-cbc",
		"2.16.840.1.101.3.4.1.6":  "aes-128-gcm",
		"2.16.840.1.101.3.4.1.46": "aes-256-gcm",
	}
)

// PKCS8Encryption is what the clear part of a PKCS#8
// EncryptedPrivateKeyInfo says about its encryption.
type PKCS8Encryption struct {
	// Scheme is "pbes2", a PBES1 or PKCS#12 scheme such as
	// "pbe-sha1-3des", or the algorithm's object identifier when unknown.
	Scheme string
	// KDF and Cipher are set for PBES2: "pbkdf2" or "scrypt" (or an
	// object identifier), and "aes-256-cbc" and the like.
	KDF, Cipher string
}

// ParseEncryptedPKCS8 parses the DER of a PKCS#8 EncryptedPrivateKeyInfo
// (RFC 5958 section 3): an algorithm identifier and a non-empty octet
// string, and nothing after them. For PBES2 the key derivation and
// encryption scheme identifiers are read too. The encrypted data is not
// decrypted.
func ParseEncryptedPKCS8(der []byte) (PKCS8Encryption, error) {
	var e PKCS8Encryption
	input := cryptobyte.String(der)
	var info, alg, data cryptobyte.String
	var oid encasn1.ObjectIdentifier
	if !input.ReadASN1(&info, asn1.SEQUENCE) || !input.Empty() ||
		!info.ReadASN1(&alg, asn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) ||
		!info.ReadASN1(&data, asn1.OCTET_STRING) || !info.Empty() || len(data) == 0 {
		return e, errors.New("parse encrypted pkcs#8: not an EncryptedPrivateKeyInfo")
	}
	name, ok := pbeNames[oid.String()]
	if !ok {
		name = oid.String()
	}
	e.Scheme = name
	if name != "pbes2" {
		return e, nil
	}
	// PBES2-params ::= SEQUENCE { keyDerivationFunc AlgorithmIdentifier,
	// encryptionScheme AlgorithmIdentifier }
	var params, kdf, enc cryptobyte.String
	var kdfOID, encOID encasn1.ObjectIdentifier
	if !alg.ReadASN1(&params, asn1.SEQUENCE) ||
		!params.ReadASN1(&kdf, asn1.SEQUENCE) || !kdf.ReadASN1ObjectIdentifier(&kdfOID) ||
		!params.ReadASN1(&enc, asn1.SEQUENCE) || !enc.ReadASN1ObjectIdentifier(&encOID) {
		return e, errors.New("parse encrypted pkcs#8: bad pbes2 parameters")
	}
	switch kdfOID.String() {
	case oidPBKDF2:
		e.KDF = "pbkdf2"
	case oidScrypt:
		e.KDF = "scrypt"
	default:
		e.KDF = kdfOID.String()
	}
	if c, ok := pbes2Ciphers[encOID.String()]; ok {
		e.Cipher = c
	} else {
		e.Cipher = encOID.String()
	}
	return e, nil
}

// LegacyPEMEncryption returns the cipher named by the DEK-Info header of a
// PEM block with legacy (OpenSSL "traditional") encryption, lower-cased,
// e.g. "aes-256-cbc". It returns an error when the block has no
// "Proc-Type: 4,ENCRYPTED" header, when DEK-Info is not "CIPHER,HEX-IV"
// with a non-empty IV, or when the body is empty.
func LegacyPEMEncryption(b *pem.Block) (string, error) {
	if b.Headers["Proc-Type"] != "4,ENCRYPTED" {
		return "", errors.New("parse pem: no Proc-Type: 4,ENCRYPTED header")
	}
	alg, iv, ok := strings.Cut(b.Headers["DEK-Info"], ",")
	if !ok || alg == "" || len(alg) > maxOpenSSHName {
		return "", errors.New("parse pem: DEK-Info is not CIPHER,IV")
	}
	if raw, err := hex.DecodeString(iv); err != nil || len(raw) == 0 {
		return "", errors.New("parse pem: DEK-Info IV is not hexadecimal")
	}
	if len(b.Bytes) == 0 {
		return "", errors.New("parse pem: empty encrypted body")
	}
	return strings.ToLower(printable([]byte(alg))), nil
}
