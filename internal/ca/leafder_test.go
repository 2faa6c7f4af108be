package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/signet-id/signet/internal/model"
)

// leafTemplate is the X509-SVID profile as an x509.Certificate template:
// the reference leafTBS encodes (tests hold the two byte-identical).
func (m *Manager) leafTemplate(p X509Params, pub crypto.PublicKey, ski []byte, now, notAfter time.Time) *x509.Certificate {
	ku := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		ku |= x509.KeyUsageKeyEncipherment
	}
	subject := m.subject
	subject.CommonName = ""
	if len(p.DNSNames) > 0 {
		subject.CommonName = p.DNSNames[0]
	}
	return &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               subject,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              ku,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{p.ID.URL()},
		DNSNames:              p.DNSNames,
		SubjectKeyId:          ski,
	}
}

// stdlibLeaf is what x509.CreateCertificate makes of leafTemplate for the
// key of csrDER, with the serial and validity of leaf, signed by s.
func stdlibLeaf(t testing.TB, m *Manager, s *x509Signer, csrDER []byte, p X509Params, leaf *x509.Certificate) *x509.Certificate {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	ski, err := subjectKeyID(csr.RawSubjectPublicKeyInfo)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := m.leafTemplate(p, csr.PublicKey, ski, leaf.NotBefore.Add(clockSkew), leaf.NotAfter)
	tmpl.SerialNumber = leaf.SerialNumber
	tmpl.AuthorityKeyId = s.cert.SubjectKeyId
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.cert, csr.PublicKey, s.key.signer)
	if err != nil {
		t.Fatalf("x509.CreateCertificate() = %v", err)
	}
	ref, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// checkMinted fails unless the minted chain's leaf is what
// x509.CreateCertificate gives for the same template, serial and times
// (the TBSCertificate byte for byte; the whole certificate for the
// deterministic RSA PKCS #1 v1.5 and Ed25519 signatures), its signature
// verifies against the CA, and go-spiffe accepts the chain against b.
func checkMinted(t *testing.T, m *Manager, s *x509Signer, chainDER [][]byte, csrDER []byte, p X509Params, b x509bundle.Source) *x509.Certificate {
	t.Helper()
	chain := make([]*x509.Certificate, len(chainDER))
	for i, der := range chainDER {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("x509.ParseCertificate(chain[%d]) = %v", i, err)
		}
		chain[i] = c
	}
	leaf := chain[0]
	ref := stdlibLeaf(t, m, s, csrDER, p, leaf)
	if !bytes.Equal(leaf.RawTBSCertificate, ref.RawTBSCertificate) {
		t.Errorf("RawTBSCertificate differs from x509.CreateCertificate's:\n got %x\nwant %x", leaf.RawTBSCertificate, ref.RawTBSCertificate)
	}
	if leaf.SignatureAlgorithm != ref.SignatureAlgorithm {
		t.Errorf("SignatureAlgorithm = %s, x509.CreateCertificate gives %s", leaf.SignatureAlgorithm, ref.SignatureAlgorithm)
	}
	switch s.key.signer.Public().(type) {
	case *rsa.PublicKey, ed25519.PublicKey:
		if !bytes.Equal(leaf.Raw, ref.Raw) {
			t.Errorf("certificate differs from x509.CreateCertificate's (deterministic signature):\n got %x\nwant %x", leaf.Raw, ref.Raw)
		}
	default:
		if len(leaf.Raw)-len(leaf.Signature) > len(ref.Raw)-len(ref.Signature)+2 {
			t.Errorf("certificate framing is %d bytes, x509.CreateCertificate's %d", len(leaf.Raw)-len(leaf.Signature), len(ref.Raw)-len(ref.Signature))
		}
	}
	if err := leaf.CheckSignatureFrom(s.cert); err != nil {
		t.Errorf("leaf.CheckSignatureFrom(ca) = %v", err)
	}
	id, _, err := x509svid.Verify(chain, b, x509svid.WithTime(leaf.NotBefore.Add(time.Second)))
	if err != nil {
		t.Fatalf("x509svid.Verify() = %v", err)
	}
	if id != p.ID {
		t.Errorf("x509svid.Verify() ID = %s, want %s", id, p.ID)
	}
	return leaf
}

// useSigner makes key the active X.509 CA of e, self-signed, and returns
// the bundle that trusts it: for CA key types New does not generate.
func useSigner(t *testing.T, e *env, key crypto.Signer) x509bundle.Source {
	t.Helper()
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	a := model.Authority{Kind: model.AuthorityX509, ID: fmt.Sprintf("%x", ski[:8]), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour)}
	if a.Certificate, err = e.m.caCertificate(a, ski, key); err != nil {
		t.Fatal(err)
	}
	s, err := newX509Signer(a, privateKey{id: a.ID, signer: key})
	if err != nil {
		t.Fatalf("newX509Signer() = %v", err)
	}
	e.m.x509.Store(s)
	return x509bundle.FromX509Authorities(testTD, []*x509.Certificate{s.cert})
}

// leafKeys are subject keys of every type ParseCSR accepts, made once.
var leafKeys = sync.OnceValue(func() map[string]crypto.Signer {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	return map[string]crypto.Signer{
		"p256":    mustKey(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)),
		"p384":    mustKey(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)),
		"p521":    mustKey(ecdsa.GenerateKey(elliptic.P521(), rand.Reader)),
		"rsa2048": mustKey(rsa.GenerateKey(rand.Reader, 2048)),
		"ed25519": ed,
	}
})

// TestMintMatchesCreateCertificate: for CAs of every key type, self-signed
// and upstream-signed, and for every subject key type, DNS names, subjects
// and lifetimes (past 2050 too), the minted leaf is the certificate
// x509.CreateCertificate makes of leafTemplate, verifies against its CA
// and is accepted by go-spiffe. It fails if the encoder drifts.
func TestMintMatchesCreateCertificate(t *testing.T) {
	ctx := context.Background()
	c := newCorp(t, 365*24*time.Hour)
	cas := []struct {
		name string
		mod  func(*Config)
		key  crypto.Signer // set: use it as a self-signed CA instead
	}{
		{name: "ca-p256"},
		{name: "ca-p384", mod: func(c *Config) { c.KeyType = KeyTypeECP384 }},
		{name: "ca-rsa2048", mod: func(c *Config) { c.KeyType = KeyTypeRSA2048 }},
		{name: "ca-p521", key: leafKeys()["p521"]},
		{name: "ca-ed25519", key: leafKeys()["ed25519"]},
		{name: "ca-upstream", mod: c.use(t)},
	}
	params := []struct {
		name string
		dns  []string
		ttl  time.Duration
	}{
		{"no-dns", nil, time.Hour},
		{"one-dns", []string{"web.example.org"}, time.Hour},
		{"two-dns", []string{"web.example.org", "web"}, 30 * time.Minute},
		{"wildcard", []string{"*.web.example.org", "x-1.example.org"}, time.Hour},
		{"long-dns", []string{strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + ".example"}, time.Hour},
		{"many-dns", []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10", "a11", "a12"}, time.Hour},
		{"ttl-beyond-ca", []string{"web"}, 1000 * time.Hour},
	}
	for _, ca := range cas {
		t.Run(ca.name, func(t *testing.T) {
			e := newEnv(t, ca.mod)
			b := x509bundle.Source(e.bundle(t))
			if ca.key != nil {
				b = useSigner(t, e, ca.key)
			}
			s := e.m.x509.Load()
			for kname, key := range leafKeys() {
				for _, pp := range params {
					t.Run(kname+"/"+pp.name, func(t *testing.T) {
						csr := newCSR(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}})
						p := X509Params{ID: workload, TTL: pp.ttl, DNSNames: pp.dns}
						minted, err := e.m.MintX509SVID(ctx, csr, p)
						if err != nil {
							t.Fatalf("MintX509SVID() = %v", err)
						}
						leaf := checkMinted(t, e.m, s, minted.Chain, csr, p, b)
						if leaf.SerialNumber.Cmp(minted.Serial) != 0 || !leaf.NotAfter.Equal(minted.NotAfter) {
							t.Errorf("MintX509SVID() serial %s, not after %v; certificate %s, %v", minted.Serial, minted.NotAfter, leaf.SerialNumber, leaf.NotAfter)
						}
						signed, err := e.m.SignX509SVID(ctx, csr, p)
						if err != nil {
							t.Fatalf("SignX509SVID() = %v", err)
						}
						raw := make([][]byte, len(signed))
						for i, c := range signed {
							raw[i] = c.Raw
						}
						checkMinted(t, e.m, s, raw, csr, p, b)
					})
				}
			}
		})
	}
}

// TestMintMatchesCreateCertificateSubjects: configured subjects of every
// shape (empty, which makes the SAN critical; many attributes around the
// common name; multi-valued; non-printable strings; a common name fixed by
// ExtraNames), and lifetimes in GeneralizedTime (2050 and later).
func TestMintMatchesCreateCertificateSubjects(t *testing.T) {
	ctx := context.Background()
	subjects := map[string]pkix.Name{
		"cn-only": {CommonName: "dropped"}, // with no DNS names: the empty subject
		"full": {Country: []string{"DE"}, Province: []string{"Bayern"}, Locality: []string{"München"},
			StreetAddress: []string{"Marienplatz 1"}, Organization: []string{"Example & Co", "Second"},
			OrganizationalUnit: []string{"*ops*"}, SerialNumber: "1234", PostalCode: []string{"80331"}},
		"extra-names": {Organization: []string{"Signet"}, ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, Value: "example"}}},
		"extra-cn": {Organization: []string{"Signet"}, ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: oidCommonName, Value: "fixed"}}},
		"serial-only": {SerialNumber: "7"},
	}
	clocks := map[string]time.Time{
		"2026":      testEpoch,
		"2049-edge": time.Date(2049, 12, 31, 23, 30, 0, 0, time.UTC),
		"2051":      time.Date(2051, 6, 1, 0, 0, 0, 0, time.UTC),
	}
	key := leafKeys()["p256"]
	for sname, subj := range subjects {
		for cname, now := range clocks {
			t.Run(sname+"/"+cname, func(t *testing.T) {
				e := newEnv(t, func(c *Config) {
					c.Subject, c.CATTL, c.Now = subj, 10*365*24*time.Hour, func() time.Time { return now }
				})
				s := e.m.x509.Load()
				for _, dns := range [][]string{nil, {"web.example.org"}, {"*.example.org"}} {
					for _, ttl := range []time.Duration{time.Hour, 30 * 365 * 24 * time.Hour} {
						csr := newCSR(t, key, nil)
						p := X509Params{ID: workload, TTL: ttl, DNSNames: dns}
						m, err := e.m.MintX509SVID(ctx, csr, p)
						if err != nil {
							t.Fatalf("MintX509SVID(%q, %s) = %v", dns, ttl, err)
						}
						leaf := checkMinted(t, e.m, s, m.Chain, csr, p, e.bundle(t))
						if len(dns) == 0 && sname == "cn-only" && len(leaf.RawSubject) != 2 {
							t.Errorf("subject = %x, want the empty sequence", leaf.RawSubject)
						}
					}
				}
			})
		}
	}
}

// TestLeafTBSSerials: leafTBS encodes serials of every length, including
// those whose top bit needs a leading zero, as x509.CreateCertificate does.
func TestLeafTBSSerials(t *testing.T) {
	e := newEnv(t, nil)
	for _, hex := range []string{"1", "7f", "80", "ff", "0100", "8000000000000000000000000000000000", strings.Repeat("ff", 16), strings.Repeat("7f", 20)} {
		serial, _ := new(big.Int).SetString(hex, 16)
		checkLeafTBS(t, e.m, serial, []string{"web"}, time.Hour, key256(t))
	}
}

func key256(t testing.TB) crypto.Signer { t.Helper(); return leafKeys()["p256"] }

// checkLeafTBS compares leafTBS with x509.CreateCertificate's TBS for one
// set of fields, serial given; it reports whether the parameters were
// accepted (checkDNSNames).
func checkLeafTBS(t testing.TB, m *Manager, serial *big.Int, dns []string, ttl time.Duration, key crypto.Signer) bool {
	t.Helper()
	if checkDNSNames(dns) != nil || ttl <= 0 {
		return false
	}
	s := m.x509.Load()
	now := m.now()
	notAfter := now.Add(ttl)
	if notAfter.After(s.cert.NotAfter) {
		notAfter = s.cert.NotAfter
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	ski, _ := subjectKeyID(spki)
	_, isRSA := key.Public().(*rsa.PublicKey)
	f := &leafFields{serial: serial, notBefore: now.Add(-clockSkew), notAfter: notAfter, id: workload, dnsNames: dns, spki: spki, ski: ski, rsa: isRSA}
	tbs, err := m.leafTBS(s, f)
	if err != nil {
		t.Fatalf("leafTBS(%q) = %v", dns, err)
	}
	tmpl := m.leafTemplate(X509Params{ID: workload, TTL: ttl, DNSNames: dns}, key.Public(), ski, now, notAfter)
	tmpl.SerialNumber = serial
	tmpl.AuthorityKeyId = s.cert.SubjectKeyId
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.cert, key.Public(), s.key.signer)
	if err != nil {
		t.Fatalf("x509.CreateCertificate(%q) = %v", dns, err)
	}
	ref, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tbs, ref.RawTBSCertificate) {
		t.Fatalf("leafTBS(serial %x, dns %q, ttl %s) differs from x509.CreateCertificate's:\n got %x\nwant %x", serial, dns, ttl, tbs, ref.RawTBSCertificate)
	}
	return true
}

// FuzzLeafTBS: for any DNS names checkDNSNames accepts, TTL and serial,
// leafTBS is x509.CreateCertificate's TBSCertificate.
func FuzzLeafTBS(f *testing.F) {
	f.Add("web.example.org", int64(3600), []byte{1})
	f.Add("*.a.b,c-d.e", int64(30*365*24*3600), []byte{0x80, 0})
	f.Add("", int64(1), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add("A,b,C", int64(86400*365*40), []byte{0x7f})
	e := newEnv(f, func(c *Config) { c.CATTL = 40 * 365 * 24 * time.Hour })
	f.Fuzz(func(t *testing.T, names string, ttlSeconds int64, serial []byte) {
		var dns []string
		if names != "" {
			dns = strings.Split(names, ",")
		}
		n := new(big.Int).SetBytes(serial)
		if n.Sign() == 0 || ttlSeconds <= 0 || ttlSeconds > 1<<40 {
			return
		}
		checkLeafTBS(t, e.m, n, dns, time.Duration(ttlSeconds)*time.Second, key256(t))
	})
}

// TestNewLeafSigningRefuses: CA keys x509.CreateCertificate cannot sign
// with are refused when the authority is loaded, naming the type.
func TestNewLeafSigningRefuses(t *testing.T) {
	p224 := mustKey(ecdsa.GenerateKey(elliptic.P224(), rand.Reader))
	if _, err := newLeafSigning(p224.Public(), nil); err == nil || !strings.Contains(err.Error(), "P-224") {
		t.Errorf("newLeafSigning(P-224) = %v, want an error naming P-224", err)
	}
	if _, err := newLeafSigning(struct{}{}, nil); err == nil || !strings.Contains(err.Error(), "struct {}") {
		t.Errorf("newLeafSigning(struct{}) = %v, want an error naming the type", err)
	}
}

// rsaCSRWithTrailingBytes is a PKCS #10 request for key whose
// SubjectPublicKeyInfo carries two bytes after the RSA key's SEQUENCE,
// which x509.ParseCertificateRequest tolerates (it reads the SEQUENCE and
// ignores the rest), correctly self-signed.
func rsaCSRWithTrailingBytes(t *testing.T, key *rsa.PrivateKey) []byte {
	t.Helper()
	oidRSA := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	pkcs1 := der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1BigInt(key.N)
			b.AddASN1Int64(int64(key.E))
		})
	})
	info := der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(0)
			b.AddBytes([]byte{0x30, 0}) // empty subject
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidRSA)
					b.AddASN1NULL()
				})
				b.AddASN1BitString(append(pkcs1, 0, 0))
			})
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(*cryptobyte.Builder) {})
		})
	})
	h := sha256.Sum256(info)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(info)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidSHA256WithRSA)
				b.AddASN1NULL()
			})
			b.AddASN1BitString(sig)
		})
	})
}

// TestMintCanonicalSPKI: a CSR whose public key is not canonically
// encoded (but parses, and proves possession) gets the canonical
// SubjectPublicKeyInfo in its leaf, as x509.CreateCertificate writes it,
// not the CSR's bytes.
func TestMintCanonicalSPKI(t *testing.T) {
	e := newEnv(t, nil)
	key := leafKeys()["rsa2048"].(*rsa.PrivateKey)
	csr := rsaCSRWithTrailingBytes(t, key)
	parsed, err := ParseCSR(csr)
	if err != nil {
		t.Fatalf("ParseCSR(trailing bytes) = %v; the test needs a request the parser accepts", err)
	}
	canonical, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(parsed.RawSubjectPublicKeyInfo, canonical) {
		t.Fatal("the request's public key is canonical; the test needs one that is not")
	}
	p := X509Params{ID: workload, TTL: time.Hour, DNSNames: []string{"web"}}
	m, err := e.m.MintX509SVID(context.Background(), csr, p)
	if err != nil {
		t.Fatalf("MintX509SVID() = %v", err)
	}
	leaf := checkMinted(t, e.m, e.m.x509.Load(), m.Chain, csr, p, e.bundle(t))
	if !bytes.Equal(leaf.RawSubjectPublicKeyInfo, canonical) {
		t.Errorf("leaf SubjectPublicKeyInfo = %x, want the canonical %x", leaf.RawSubjectPublicKeyInfo, canonical)
	}
}
