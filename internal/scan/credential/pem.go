package credential

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
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
	Type      string // "rsa", "ecdsa", "ed25519" or "" when not parsed
	Encrypted bool
	// Key is the parsed private key; nil when encrypted or not parsable.
	Key crypto.Signer
}

// ErrNotPrivateKey is returned by ParsePrivateKeyBlock for PEM blocks that do
// not hold a private key.
var ErrNotPrivateKey = errors.New("pem block is not a private key")

// ParsePrivateKeyBlock classifies a PEM block holding a private key: PKCS#1
// ("RSA PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY"), PKCS#8 ("PRIVATE KEY",
// "ENCRYPTED PRIVATE KEY") or OpenSSH ("OPENSSH PRIVATE KEY"). Legacy
// Proc-Type encryption, encrypted PKCS#8 and OpenSSH keys with a cipher
// other than "none" are reported as Encrypted without an error. It returns
// ErrNotPrivateKey for other block types and a parse error for unencrypted
// keys whose body does not decode.
func ParsePrivateKeyBlock(b *pem.Block) (KeyInfo, error) {
	if strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
		return KeyInfo{Encrypted: true}, nil
	}
	var (
		key any
		err error
	)
	switch b.Type {
	case "ENCRYPTED PRIVATE KEY":
		return KeyInfo{Encrypted: true}, nil
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "OPENSSH PRIVATE KEY":
		cipher, _, herr := ParseOpenSSHHeader(b.Bytes)
		if herr != nil {
			return KeyInfo{}, herr
		}
		if cipher != "none" {
			return KeyInfo{Encrypted: true}, nil
		}
		key, err = ssh.ParseRawPrivateKey(pem.EncodeToMemory(b))
		if err != nil {
			// The header says unencrypted; the key type may just be one
			// x/crypto does not parse. It is still a plaintext key.
			return KeyInfo{}, nil
		}
	default:
		return KeyInfo{}, ErrNotPrivateKey
	}
	if err != nil {
		return KeyInfo{}, fmt.Errorf("parse %s: %w", strings.ToLower(b.Type), err)
	}
	return keyInfo(key), nil
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

// ParseOpenSSHHeader reads the cipher and KDF names from the binary body of
// an "OPENSSH PRIVATE KEY" PEM block (the openssh-key-v1 format).
func ParseOpenSSHHeader(data []byte) (cipher, kdf string, err error) {
	const magic = "openssh-key-v1\x00"
	if !bytes.HasPrefix(data, []byte(magic)) {
		return "", "", errors.New("parse openssh key: bad magic")
	}
	rest := data[len(magic):]
	readString := func() (string, error) {
		if len(rest) < 4 {
			return "", errors.New("parse openssh key: truncated")
		}
		n := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(len(rest)) {
			return "", errors.New("parse openssh key: truncated")
		}
		s := string(rest[:n])
		rest = rest[n:]
		return s, nil
	}
	if cipher, err = readString(); err != nil {
		return "", "", err
	}
	if kdf, err = readString(); err != nil {
		return "", "", err
	}
	return cipher, kdf, nil
}

// DetectPEM reports unencrypted private keys in PEM blocks and dismisses
// encrypted ones. When a certificate for the key sits in the same content,
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
		if err != nil {
			continue // not a key, or unparsable: left to generic rules
		}
		if info.Encrypted {
			hits = append(hits, Hit{
				Rule: "encrypted-private-key", Start: b.start, End: b.end,
				Dismiss: true, Priority: priorityGeneric,
			})
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
