package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The leaf encoder. x509.CreateCertificate signs a certificate and then
// verifies the signature it just made (a guard against faulty
// crypto.Signers), which is about a third of the cost of minting an
// X509-SVID. The leaf's signature is verified anyway, once, by the agent
// that receives it (it checks every leaf against the bundle before serving
// it) and by every peer that is shown it, so the server encodes the
// X509-SVID profile itself and signs it once. The encoding is the one
// x509.CreateCertificate gives for leafTemplate, byte for byte: field
// order, string types, times, extension order and criticality (tests
// compare the TBSCertificate of both for many templates and fuzz it).

// OIDs of the leaf profile.
var (
	oidCommonName    = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidExtSKI        = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtSAN        = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtAKI        = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtEKU        = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidServerAuth    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidClientAuth    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	oidECDSAWithSHA2 = map[crypto.Hash]asn1.ObjectIdentifier{
		crypto.SHA256: {1, 2, 840, 10045, 4, 3, 2},
		crypto.SHA384: {1, 2, 840, 10045, 4, 3, 3},
		crypto.SHA512: {1, 2, 840, 10045, 4, 3, 4},
	}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidEd25519       = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// The constant extensions of every X509-SVID, DER, in the order
// x509.CreateCertificate writes them: key usage (critical), extended key
// usage, basic constraints (critical, CA=false). SKI, AKI and SAN follow.
var (
	extKeyUsageDigitalSignature = extension(oidExtKeyUsage, true, bitString(0x80, 7))
	// digitalSignature and keyEncipherment, for RSA subject keys.
	extKeyUsageRSA = extension(oidExtKeyUsage, true, bitString(0xa0, 5))
	extExtKeyUsage = extension(oidExtEKU, false, der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidServerAuth)
			b.AddASN1ObjectIdentifier(oidClientAuth)
		})
	}))
	extBasicConstraintsLeaf = extension(oidExtBasicConstraints, true, []byte{0x30, 0})
)

// bitString is the DER BIT STRING of one byte with unused trailing bits.
func bitString(b byte, unused byte) []byte { return []byte{0x03, 0x02, unused, b} }

// der runs f on a fresh builder; it is only used for constants, which
// cannot fail to encode.
func der(f cryptobyte.BuilderContinuation) []byte {
	var b cryptobyte.Builder
	f(&b)
	return b.BytesOrPanic()
}

// extension encodes an Extension: SEQUENCE { extnID, critical (only when
// true, DER omits the default), extnValue }.
func extension(oid asn1.ObjectIdentifier, critical bool, value []byte) []byte {
	return der(func(b *cryptobyte.Builder) { addExtension(b, oid, critical, value) })
}

func addExtension(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, critical bool, value []byte) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1OctetString(value)
	})
}

// leafSigning is what an X.509 authority contributes to every leaf it
// signs, encoded once when it becomes the active signer.
type leafSigning struct {
	sigAlg []byte      // the AlgorithmIdentifier DER
	hash   crypto.Hash // 0 for Ed25519, which signs the message itself
	aki    []byte      // the authority key identifier extension, nil without one
}

// newLeafSigning picks the signature algorithm x509.CreateCertificate uses
// for key (ECDSA with the curve's SHA-2, SHA-256 with RSA PKCS #1 v1.5,
// Ed25519) and encodes the AKI from the CA's subject key id.
func newLeafSigning(key crypto.PublicKey, caSKI []byte) (leafSigning, error) {
	var ls leafSigning
	var oid asn1.ObjectIdentifier
	rsaNull := false
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			ls.hash = crypto.SHA256
		case elliptic.P384():
			ls.hash = crypto.SHA384
		case elliptic.P521():
			ls.hash = crypto.SHA512
		default:
			return leafSigning{}, fmt.Errorf("ECDSA curve %s cannot sign x509-svids: use P-256, P-384 or P-521", k.Curve.Params().Name)
		}
		oid = oidECDSAWithSHA2[ls.hash]
	case *rsa.PublicKey:
		ls.hash, oid, rsaNull = crypto.SHA256, oidSHA256WithRSA, true
	case ed25519.PublicKey:
		oid = oidEd25519
	default:
		return leafSigning{}, fmt.Errorf("key type %T cannot sign x509-svids: use ECDSA, RSA or Ed25519", key)
	}
	ls.sigAlg = der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			if rsaNull {
				b.AddASN1NULL()
			}
		})
	})
	if len(caSKI) > 0 {
		// AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
		ls.aki = extension(oidExtAKI, false, der(func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(caSKI) })
			})
		}))
	}
	return ls, nil
}

// leafSubject is Config.Subject as the leaves carry it, pre-encoded: the
// RDNs before and after the common name, which is the only part that
// varies (the first DNS name). pkix.Name.ToRDNSequence decides the order.
type leafSubject struct {
	prefix, suffix []byte // concatenated DER RDNs
	// fixedCN: Subject.ExtraNames sets the common name, which then replaces
	// any other (pkix.Name drops CommonName), so no CN is inserted.
	fixedCN bool
}

// newLeafSubject encodes name (its CommonName is ignored) around the
// common name's place.
func newLeafSubject(name pkix.Name) (leafSubject, error) {
	name.CommonName = ""
	without := name.ToRDNSequence()
	name.CommonName = "x"
	with := name.ToRDNSequence()
	var ls leafSubject
	at := len(without)
	switch {
	case len(with) == len(without):
		ls.fixedCN = true
	case len(with) == len(without)+1:
		for i := range without {
			if len(without[i]) != len(with[i]) || !without[i][0].Type.Equal(with[i][0].Type) {
				at = i
				break
			}
		}
	default:
		return leafSubject{}, fmt.Errorf("subject: unexpected encoding of %s", name)
	}
	enc := func(rdns pkix.RDNSequence) ([]byte, error) {
		var out []byte
		for _, rdn := range rdns {
			d, err := asn1.Marshal(rdn)
			if err != nil {
				return nil, fmt.Errorf("subject %s: %w", name, err)
			}
			out = append(out, d...)
		}
		return out, nil
	}
	var err error
	if ls.prefix, err = enc(without[:at]); err != nil {
		return leafSubject{}, err
	}
	if ls.suffix, err = enc(without[at:]); err != nil {
		return leafSubject{}, err
	}
	return ls, nil
}

// add appends the subject Name with common name cn (none when empty).
func (ls *leafSubject) add(b *cryptobyte.Builder, cn string) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(ls.prefix)
		if cn != "" && !ls.fixedCN {
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidCommonName)
					addDirectoryString(b, cn)
				})
			})
		}
		b.AddBytes(ls.suffix)
	})
}

// empty reports whether the subject with common name cn is the empty
// sequence (the SAN is then critical, RFC 5280 4.2.1.6).
func (ls *leafSubject) empty(cn string) bool {
	return len(ls.prefix) == 0 && len(ls.suffix) == 0 && (cn == "" || ls.fixedCN)
}

// addDirectoryString writes s as encoding/asn1 writes a Go string: a
// PrintableString when every byte is in its set ('*' and '&' excluded),
// otherwise a UTF8String.
func addDirectoryString(b *cryptobyte.Builder, s string) {
	tag := cbasn1.PrintableString
	for i := 0; i < len(s); i++ {
		if !printable(s[i]) {
			tag = cbasn1.UTF8String
			if !utf8.ValidString(s) {
				b.SetError(fmt.Errorf("common name %q is not valid UTF-8", s))
				return
			}
			break
		}
	}
	b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
}

// printable is encoding/asn1's PrintableString set (X.680 41.4).
func printable(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		'\'' <= c && c <= ')' || '+' <= c && c <= '/' || c == ' ' || c == ':' || c == '=' || c == '?'
}

// leafFields are the variable parts of one X509-SVID.
type leafFields struct {
	serial              *big.Int
	notBefore, notAfter time.Time
	id                  spiffeid.ID
	dnsNames            []string
	spki                []byte // the subject's SubjectPublicKeyInfo, DER
	ski                 []byte
	rsa                 bool // the subject key is RSA: keyEncipherment too
}

// leafTBS encodes the TBSCertificate of the X509-SVID f describes, signed
// by s: what x509.CreateCertificate encodes for leafTemplate.
func (m *Manager) leafTBS(s *x509Signer, f *leafFields) ([]byte, error) {
	cn := ""
	if len(f.dnsNames) > 0 {
		cn = f.dnsNames[0]
	}
	size := 400 + len(s.cert.RawSubject) + 2*len(m.leafSubject.prefix) + len(f.spki) + len(s.leaf.aki)
	for _, n := range f.dnsNames {
		size += len(n) + 4
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, size))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1Int64(2) // v3
		})
		b.AddASN1BigInt(f.serial)
		b.AddBytes(s.leaf.sigAlg)
		b.AddBytes(s.cert.RawSubject)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addTime(b, f.notBefore)
			addTime(b, f.notAfter)
		})
		m.leafSubject.add(b, cn)
		b.AddBytes(f.spki)
		b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if f.rsa {
					b.AddBytes(extKeyUsageRSA)
				} else {
					b.AddBytes(extKeyUsageDigitalSignature)
				}
				b.AddBytes(extExtKeyUsage)
				b.AddBytes(extBasicConstraintsLeaf)
				addExtension(b, oidExtSKI, false, der(func(b *cryptobyte.Builder) { b.AddASN1OctetString(f.ski) }))
				b.AddBytes(s.leaf.aki)
				// SubjectAltName: the DNS names, then the SPIFFE ID
				// (x509.CreateCertificate's order).
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidExtSAN)
					if m.leafSubject.empty(cn) {
						b.AddASN1Boolean(true)
					}
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							for _, n := range f.dnsNames {
								b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(n)) })
							}
							b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(f.id.String())) })
						})
					})
				})
			})
		})
	})
	return b.Bytes()
}

// addTime writes t as RFC 5280 4.1.2.5 wants: UTCTime through 2049,
// GeneralizedTime from 2050, in UTC to the second.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		b.AddASN1UTCTime(t)
		return
	}
	b.AddASN1GeneralizedTime(t)
}

// signLeaf signs tbs with s's key and returns the Certificate DER.
func signLeaf(s *x509Signer, tbs []byte) ([]byte, error) {
	sig, err := crypto.SignMessage(s.key.signer, rand.Reader, tbs, s.leaf.hash)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(s.leaf.sigAlg)+len(sig)+16))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(s.leaf.sigAlg)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}
