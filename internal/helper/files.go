package helper

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/signet-id/signet/internal/atomicfile"
)

// The X.509 files are written into a new generation directory inside
// x509.dir, and a symbolic link, dataLink, is switched to it with one
// rename; every configured name in x509.dir is a link through dataLink
// (svid.pem -> ..signet-data/svid.pem). So one rename replaces the
// certificate, the key, the bundle and the keystore together: a reader
// that resolves the names after it sees only new files, one that resolved
// them before sees only old ones.
const (
	dataLink  = "..signet-data"
	genPrefix = "..signet-"
)

// x509Material is one complete set of X.509 files' contents.
type x509Material struct {
	chainDER [][]byte
	keyDER   []byte
	bundle   [][]byte
}

func materialOf(svid *x509svid.SVID, bundle []*x509.Certificate) (x509Material, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		return x509Material{}, fmt.Errorf("encode the key of %s: %w", svid.ID, err)
	}
	m := x509Material{keyDER: keyDER}
	for _, c := range svid.Certificates {
		m.chainDER = append(m.chainDER, c.Raw)
	}
	for _, c := range bundle {
		m.bundle = append(m.bundle, c.Raw)
	}
	return m, nil
}

func (m x509Material) equal(o x509Material) bool {
	eq := func(a, b [][]byte) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if !bytes.Equal(a[i], b[i]) {
				return false
			}
		}
		return true
	}
	return bytes.Equal(m.keyDER, o.keyDER) && eq(m.chainDER, o.chainDER) && eq(m.bundle, o.bundle)
}

func pemCerts(ders [][]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out
}

// files returns the contents and modes of every configured X.509 file.
func (x *X509) files(m x509Material) (map[string][]byte, map[string]os.FileMode, error) {
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: m.keyDER})
	data := map[string][]byte{}
	mode := map[string]os.FileMode{}
	if x.Cert == x.Key {
		data[x.Key], mode[x.Key] = append(keyPEM, pemCerts(m.chainDER)...), 0o600
	} else {
		data[x.Cert], mode[x.Cert] = pemCerts(m.chainDER), 0o644
		data[x.Key], mode[x.Key] = keyPEM, 0o600
	}
	if x.Bundle != "" {
		data[x.Bundle], mode[x.Bundle] = pemCerts(m.bundle), 0o644
	}
	if x.PKCS12 != "" {
		p12, err := x.keystore(m)
		if err != nil {
			return nil, nil, err
		}
		data[x.PKCS12], mode[x.PKCS12] = p12, 0o600
	}
	return data, mode, nil
}

// keystore encodes the key and chain as PKCS#12 with modern encryption
// (AES-256, PBKDF2), under the password in pkcs12_password_file (trailing
// newlines trimmed).
func (x *X509) keystore(m x509Material) ([]byte, error) {
	pw, err := os.ReadFile(x.PKCS12PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("x509.pkcs12_password_file: %w", err)
	}
	password := strings.TrimRight(string(pw), "\r\n")
	if password == "" {
		return nil, fmt.Errorf("x509.pkcs12_password_file: %s is empty: Java keystores need a password", x.PKCS12PasswordFile)
	}
	key, err := x509.ParsePKCS8PrivateKey(m.keyDER)
	if err != nil {
		return nil, fmt.Errorf("encode pkcs#12: %w", err)
	}
	certs := make([]*x509.Certificate, len(m.chainDER))
	for i, d := range m.chainDER {
		if certs[i], err = x509.ParseCertificate(d); err != nil {
			return nil, fmt.Errorf("encode pkcs#12: %w", err)
		}
	}
	out, err := pkcs12.Modern.Encode(key, certs[0], certs[1:], password)
	if err != nil {
		return nil, fmt.Errorf("encode pkcs#12: %w", err)
	}
	return out, nil
}

// write installs one complete set of X.509 files in x.Dir (see dataLink).
// When it fails, the previous files stay in place.
func (x *X509) write(m x509Material) (err error) {
	data, mode, err := x.files(m)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(x.Dir, 0o755); err != nil {
		return fmt.Errorf("x509.dir: %w", err)
	}
	gen, err := os.MkdirTemp(x.Dir, genPrefix)
	if err != nil {
		return fmt.Errorf("x509.dir: create generation directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(gen)
		}
	}()
	if err := os.Chmod(gen, 0o755); err != nil {
		return fmt.Errorf("x509.dir: %w", err)
	}
	for name, b := range data {
		if err := writeNew(filepath.Join(gen, name), b, mode[name]); err != nil {
			return err
		}
	}
	if err := atomicfile.SyncDir(gen); err != nil {
		return err
	}
	// The switch: one rename.
	if err := replaceLink(filepath.Join(x.Dir, dataLink), filepath.Base(gen)); err != nil {
		return err
	}
	for name := range data {
		p := filepath.Join(x.Dir, name)
		want := filepath.Join(dataLink, name)
		if cur, err := os.Readlink(p); err == nil && cur == want {
			continue
		}
		if err := replaceLink(p, want); err != nil {
			return err
		}
	}
	if err := atomicfile.SyncDir(x.Dir); err != nil {
		return err
	}
	return x.prune(filepath.Base(gen))
}

// prune removes generation directories other than current.
func (x *X509) prune(current string) error {
	ents, err := os.ReadDir(x.Dir)
	if err != nil {
		return fmt.Errorf("x509.dir: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), genPrefix) && e.Name() != current {
			errs = append(errs, os.RemoveAll(filepath.Join(x.Dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// writeNew creates path with exactly mode and fsyncs it.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// replaceLink makes path a symbolic link to target with one rename (a
// temporary link in the same directory renamed over path).
func replaceLink(path, target string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".link-*")
	if err != nil {
		return fmt.Errorf("link %s: %w", path, err)
	}
	name := tmp.Name()
	tmp.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("link %s: %w", path, err)
	}
	if err := os.Symlink(target, name); err != nil {
		return fmt.Errorf("link %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("link %s: %w", path, err)
	}
	return nil
}
