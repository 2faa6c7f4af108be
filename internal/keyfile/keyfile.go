// Package keyfile reads the certificate and private key files Signet is
// given (node certificates, SSH host keys, an upstream CA): bounded in
// size, private keys only from regular files their owner alone may read,
// and PEM decoded the one way every caller needs. It is safe on a node: it
// imports nothing of Signet's server.
package keyfile

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxSize bounds every file read through this package.
const MaxSize = 1 << 20

// Read returns the contents of path, at most MaxSize bytes. Errors name the
// path (the os errors do).
func Read(path string) ([]byte, error) { return ReadLimited(path, MaxSize) }

// ReadLimited returns the contents of path, refusing a file larger than
// limit bytes (a token, a trust bundle: whatever has a smaller bound than
// MaxSize).
func ReadLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readBounded(f, path, limit)
}

// ReadPrivate is Read for a private key: path must be a regular file that
// neither its group nor others may read (mode 0600 or stricter), else the
// error says which mode it has and how to fix it. Callers clear the
// returned bytes when done with them.
func ReadPrivate(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others (mode %04o): run chmod 600 %s", path, perm, path)
	}
	return readBounded(f, path, MaxSize)
}

func readBounded(r io.Reader, path string, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		clear(data)
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// Certificates parses every PEM CERTIFICATE block of data, read from path,
// in order; other blocks are skipped. There must be at least one.
func Certificates(path string, data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM CERTIFICATE block", path)
	}
	return certs, nil
}

// ErrNoKey is returned by Signer for data without a private key block.
var ErrNoKey = errors.New("no PEM private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")

// Signer parses the first private key PEM block of data, read from path:
// PKCS #8 ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS #1 ("RSA
// PRIVATE KEY"). The decoded key bytes are cleared after parsing.
func Signer(path string, data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, fmt.Errorf("%s holds %w", path, ErrNoKey)
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		clear(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: parse %s: %w", path, b.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: %T cannot sign", path, k)
		}
		return s, nil
	}
}
