package tpm

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

var (
	// oidSubjectAltName is id-ce-subjectAltName.
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	// OIDTPMManufacturer is tcg-at-tpmManufacturer, the attribute of an EK
	// certificate's subject alternative name (a directoryName) naming the
	// TPM's manufacturer as "id:" and 8 hex digits.
	OIDTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
)

// maxRootsSize bounds each file LoadEKRoots reads.
const maxRootsSize = 16 << 20

// LoadEKRoots reads the EK CA certificates at path, a file or a directory
// of files (not recursive), each holding PEM certificates or one DER
// certificate. Self-signed certificates become roots, the others
// intermediates. It fails when a file cannot be read or parsed, or when
// no root is found.
func LoadEKRoots(path string) (roots, intermediates *x509.CertPool, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	files := []string{path}
	if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, unwrapPathError(err))
		}
		files = files[:0]
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	roots, intermediates = x509.NewCertPool(), x509.NewCertPool()
	nroots := 0
	for _, f := range files {
		certs, err := readCerts(f)
		if err != nil {
			return nil, nil, err
		}
		for _, c := range certs {
			if bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil {
				roots.AddCert(c)
				nroots++
			} else {
				intermediates.AddCert(c)
			}
		}
	}
	if nroots == 0 {
		return nil, nil, fmt.Errorf("%s: no self-signed EK root certificate found", path)
	}
	return roots, intermediates, nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	if len(b) > maxRootsSize {
		return nil, fmt.Errorf("%s: %d bytes, over the %d limit", path, len(b), maxRootsSize)
	}
	var out []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("%s: neither PEM certificates nor one DER certificate", path)
		}
		out = append(out, c)
	}
	return out, nil
}

// verifyEKCert checks that certDER certifies ek and chains to the
// verifier's roots, and returns the TPM manufacturer it names ("" if
// none).
func (v *Verifier) verifyEKCert(ek *tpm2.TPMTPublic, certDER []byte) (string, error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return "", fmt.Errorf("EK certificate does not parse: %v", err)
	}
	pub, err := tpm2.Pub(*ek)
	if err != nil {
		return "", fmt.Errorf("EK public key: %v", err)
	}
	if k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
		return "", errors.New("EK certificate certifies another key")
	}
	// EK certificates have an empty subject and a critical subject
	// alternative name holding only a directoryName, which crypto/x509
	// does not handle: it is handled here.
	cert.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(cert.UnhandledCriticalExtensions),
		func(o asn1.ObjectIdentifier) bool { return o.Equal(oidSubjectAltName) })
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: v.inter,
		CurrentTime:   v.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return "", fmt.Errorf("EK certificate (issuer %q, serial %s) does not chain to a root of ek_ca_path: %v",
			cert.Issuer.String(), cert.SerialNumber, err)
	}
	return ekCertManufacturer(cert), nil
}

// ekCertManufacturer returns the tcg-at-tpmManufacturer attribute of cert's
// subject alternative name (or, failing that, subject), rendered by
// vendorID, or "".
func ekCertManufacturer(cert *x509.Certificate) string {
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &seq); err != nil || len(rest) != 0 {
			return ""
		}
		for b := seq.Bytes; len(b) > 0; {
			var gn asn1.RawValue
			var err error
			if b, err = asn1.Unmarshal(b, &gn); err != nil {
				return ""
			}
			if gn.Class != asn1.ClassContextSpecific || gn.Tag != 4 {
				continue
			}
			var name pkix.RDNSequence
			if _, err := asn1.Unmarshal(gn.Bytes, &name); err != nil {
				continue
			}
			for _, rdn := range name {
				for _, atv := range rdn {
					if m := manufacturerValue(atv); m != "" {
						return m
					}
				}
			}
		}
	}
	for _, atv := range cert.Subject.Names {
		if m := manufacturerValue(atv); m != "" {
			return m
		}
	}
	return ""
}

// manufacturerValue decodes a tcg-at-tpmManufacturer attribute value,
// "id:" and 8 hex digits.
func manufacturerValue(atv pkix.AttributeTypeAndValue) string {
	if !atv.Type.Equal(OIDTPMManufacturer) {
		return ""
	}
	s, ok := atv.Value.(string)
	if !ok {
		return ""
	}
	id, ok := strings.CutPrefix(strings.ToLower(s), "id:")
	if !ok || len(id) != 8 {
		return ""
	}
	b, err := hex.DecodeString(id)
	if err != nil {
		return ""
	}
	return vendorID(b)
}
