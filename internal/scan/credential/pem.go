package credential

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// MaxCertValidity is the longest certificate validity that is not flagged
// when a certificate sits next to its private key.
const MaxCertValidity = 90 * 24 * time.Hour

const pemBegin = "-----BEGIN "

// pemBlock is one decoded PEM block and its span in the content.
type pemBlock struct {
	block      *pem.Block
	start, end int
}

// scanPEMBlocks decodes every well-formed PEM block in content, in order,
// with its byte span (BEGIN line through END line, without the trailing
// newline). Malformed blocks are skipped.
func scanPEMBlocks(content []byte) []pemBlock {
	var out []pemBlock
	for off := 0; off < len(content); {
		i := bytes.Index(content[off:], []byte(pemBegin))
		if i < 0 {
			break
		}
		at := off + i
		block, rest := pem.Decode(content[at:])
		if block == nil {
			off = at + len(pemBegin)
			continue
		}
		end := len(content) - len(rest)
		// pem.Decode skips malformed blocks and returns a later one: find
		// where the returned block really begins.
		start := bytes.LastIndex(content[:end], []byte(pemBegin+block.Type+"-----"))
		if start < at {
			start = at
		}
		trimmed := end
		for trimmed > start && isSpace(content[trimmed-1]) {
			trimmed--
		}
		out = append(out, pemBlock{block: block, start: start, end: trimmed})
		off = end
	}
	return out
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// KeyInfo describes a private key found in a PEM block.
type KeyInfo struct {
	Type      string // "rsa", "ecdsa", "ed25519", "dsa", "other" or "" when not known
	Encrypted bool
	// Key is the parsed private key; nil when encrypted or not parsable.
	Key crypto.Signer
	// For an encrypted key: its container ("openssh", "pkcs8" or "pem"),
	// cipher and key derivation function, as far as the container names
	// them in the clear.
	Format, Cipher, KDF string
}

// ErrNotPrivateKey is returned by ParsePrivateKeyBlock for PEM blocks that do
// not hold a private key.
var ErrNotPrivateKey = errors.New("pem block is not a private key")

// ParsePrivateKeyBlock classifies a PEM block holding a private key: PKCS#1
// ("RSA PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY"), PKCS#8 ("PRIVATE KEY",
// "ENCRYPTED PRIVATE KEY") or OpenSSH ("OPENSSH PRIVATE KEY"). Legacy
// Proc-Type encryption (on any "... PRIVATE KEY" block), encrypted PKCS#8
// and OpenSSH keys with a cipher other than "none" are reported as
// Encrypted, after their clear parts parse (see LegacyPEMEncryption,
// ParseEncryptedPKCS8, ParseOpenSSHHeader). It returns ErrNotPrivateKey for
// other block types and a parse error for keys whose body does not decode;
// with the error, a block labelled encrypted (by its type, its Proc-Type
// header or its OpenSSH cipher name) has Encrypted and Format set.
func ParsePrivateKeyBlock(b *pem.Block) (KeyInfo, error) {
	if strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") && strings.HasSuffix(b.Type, "PRIVATE KEY") {
		cipher, err := LegacyPEMEncryption(b)
		if err != nil {
			return KeyInfo{Encrypted: true, Format: "pem"}, err
		}
		return KeyInfo{Encrypted: true, Format: "pem", Cipher: cipher, Type: legacyKeyType(b.Type)}, nil
	}
	var (
		key any
		err error
	)
	switch b.Type {
	case "ENCRYPTED PRIVATE KEY":
		e, err := ParseEncryptedPKCS8(b.Bytes)
		if err != nil {
			return KeyInfo{Encrypted: true, Format: "pkcs8"}, err
		}
		info := KeyInfo{Encrypted: true, Format: "pkcs8", Cipher: e.Cipher, KDF: e.KDF}
		if e.Cipher == "" {
			info.Cipher = e.Scheme // PBES1 and PKCS#12 schemes name KDF and cipher at once
		}
		return info, nil
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "OPENSSH PRIVATE KEY":
		h, herr := ParseOpenSSHHeader(b.Bytes)
		if herr != nil {
			if h.Cipher != "" && h.Encrypted() {
				return KeyInfo{Encrypted: true, Format: "openssh"}, herr
			}
			return KeyInfo{}, herr
		}
		if h.Encrypted() {
			return KeyInfo{Encrypted: true, Format: "openssh", Cipher: h.Cipher, KDF: h.KDF, Type: sshKeyType(h.KeyType)}, nil
		}
		key, err = ssh.ParseRawPrivateKey(pem.EncodeToMemory(b))
		if err != nil {
			// The header says unencrypted; the key type may just be one
			// x/crypto does not parse. It is still a plaintext key.
			return KeyInfo{Type: sshKeyType(h.KeyType)}, nil
		}
	default:
		return KeyInfo{}, ErrNotPrivateKey
	}
	if err != nil {
		return KeyInfo{}, fmt.Errorf("parse %s: %w", strings.ToLower(b.Type), err)
	}
	return keyInfo(key), nil
}

// legacyKeyType names the key type of a traditional OpenSSL PEM block.
func legacyKeyType(blockType string) string {
	switch blockType {
	case "RSA PRIVATE KEY":
		return "rsa"
	case "EC PRIVATE KEY":
		return "ecdsa"
	case "DSA PRIVATE KEY":
		return "dsa"
	}
	return ""
}

func keyInfo(key any) KeyInfo {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return KeyInfo{Type: "rsa", Key: k}
	case *ecdsa.PrivateKey:
		return KeyInfo{Type: "ecdsa", Key: k}
	case ed25519.PrivateKey:
		return KeyInfo{Type: "ed25519", Key: k}
	case *ed25519.PrivateKey:
		return KeyInfo{Type: "ed25519", Key: *k}
	case crypto.Signer:
		return KeyInfo{Type: "other", Key: k}
	}
	return KeyInfo{}
}

// canonicalKey returns the PKCS#8 DER encoding of key, so that the same key
// fingerprints the same whatever its container (PKCS#1, OpenSSH, base64 in
// a kubeconfig, a JSON string).
func canonicalKey(key crypto.Signer) Secret {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil
	}
	return der
}

// DetectPEM reports the private keys in PEM blocks: unencrypted ones as
// KindPrivateKey, passphrase-protected ones as KindEncryptedPrivateKey. When a certificate for the key sits in the same content,
// its validity is recorded, and a validity above MaxCertValidity raises the
// hit to critical.
func DetectPEM(content []byte) []Hit {
	blocks := scanPEMBlocks(content)
	var certs []*x509.Certificate
	for _, b := range blocks {
		if b.block.Type == "CERTIFICATE" {
			if c, err := x509.ParseCertificate(b.block.Bytes); err == nil {
				certs = append(certs, c)
			}
		}
	}
	var hits []Hit
	for _, b := range blocks {
		info, err := ParsePrivateKeyBlock(b.block)
		if err != nil && info.Encrypted {
			// Labelled encrypted but malformed: no tool would load it, and
			// it is no plaintext key either (which generic rules would
			// call it).
			hits = append(hits, Hit{Rule: "malformed-encrypted-private-key", Start: b.start, End: b.end, Dismiss: true, Priority: priorityGeneric})
			continue
		}
		if err != nil {
			continue // not a key, or unparsable: left to generic rules
		}
		if info.Encrypted {
			hits = append(hits, encryptedKeyHit(b, info))
			continue
		}
		h := Hit{
			Rule:        "pem-private-key",
			Description: "Unencrypted private key",
			Kind:        KindPrivateKey,
			Severity:    SeverityHigh,
			Start:       b.start,
			End:         b.end,
			Value:       append(Secret(nil), b.block.Bytes...),
			Details:     map[string]string{},
			Priority:    priorityGeneric,
		}
		if b.block.Type == "OPENSSH PRIVATE KEY" {
			h.Rule = "openssh-private-key"
			h.Description = "Unencrypted OpenSSH private key"
		}
		if info.Type != "" {
			h.Details["key_type"] = info.Type
		}
		if info.Key != nil {
			if v := canonicalKey(info.Key); v != nil {
				h.Value = v
			}
			if c := certificateFor(info.Key, certs); c != nil {
				annotateCert(&h, c)
			}
		}
		hits = append(hits, h)
	}
	return hits
}

// encryptedKeyHit reports a passphrase-protected key. Its canonical value is
// the block's decoded body, so the same encrypted key fingerprints the same
// whatever its line wrapping or line endings; nothing is decrypted.
func encryptedKeyHit(b pemBlock, info KeyInfo) Hit {
	details := map[string]string{"format": info.Format}
	what := map[string]string{"openssh": "OpenSSH", "pkcs8": "PKCS#8", "pem": "PEM"}[info.Format]
	if info.Type != "" {
		details["key_type"] = info.Type
	}
	if info.Cipher != "" {
		details["cipher"] = info.Cipher
		what += ", " + info.Cipher
	}
	if info.KDF != "" {
		details["kdf"] = info.KDF
	}
	return Hit{
		Rule:        "encrypted-private-key",
		Description: "Passphrase-protected private key (" + what + ")",
		Kind:        KindEncryptedPrivateKey,
		Severity:    SeverityLow,
		Start:       b.start,
		End:         b.end,
		Value:       append(Secret(nil), b.block.Bytes...),
		Details:     details,
		Priority:    priorityGeneric,
	}
}

// certificateFor returns the first certificate whose public key is key's.
func certificateFor(key crypto.Signer, certs []*x509.Certificate) *x509.Certificate {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return nil
	}
	for _, c := range certs {
		if pub.Equal(c.PublicKey) {
			return c
		}
	}
	return nil
}

func annotateCert(h *Hit, c *x509.Certificate) {
	validity := c.NotAfter.Sub(c.NotBefore)
	days := int(validity / (24 * time.Hour))
	h.Details["cert_subject"] = c.Subject.String()
	h.Details["cert_not_after"] = c.NotAfter.UTC().Format(time.RFC3339)
	h.Details["cert_validity_days"] = strconv.Itoa(days)
	if validity > MaxCertValidity {
		h.Severity = SeverityCritical
		h.Description = fmt.Sprintf("%s with a certificate valid for %d days (more than %d)",
			h.Description, days, int(MaxCertValidity/(24*time.Hour)))
		h.Details["cert_long_lived"] = "true"
	}
}
