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
	"encoding/hex"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// Extension OIDs an X509-SVID carries.
var (
	oidSKI = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidKU  = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidBC  = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidEKU = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidAKI = asn1.ObjectIdentifier{2, 5, 29, 35}
)

// verifyX509 checks chain with go-spiffe against b at time now.
func verifyX509(t testing.TB, chain []*x509.Certificate, b x509bundle.Source, now time.Time) spiffeid.ID {
	t.Helper()
	id, chains, err := x509svid.Verify(chain, b, x509svid.WithTime(now))
	if err != nil {
		t.Fatalf("x509svid.Verify() = %v", err)
	}
	if len(chains) == 0 {
		t.Fatal("x509svid.Verify() returned no chain")
	}
	return id
}

// mustKey returns a freshly generated key, panicking if generation failed.
func mustKey[K crypto.Signer](k K, err error) crypto.Signer {
	if err != nil {
		panic(err)
	}
	return k
}

func TestSignX509SVIDProfile(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ca := e.m.x509.Load().cert
	now := e.clock.Now()

	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		key    crypto.Signer
		wantKU x509.KeyUsage
	}{
		{"ecdsa-p256", newP256(t), x509.KeyUsageDigitalSignature},
		{"ecdsa-p384", mustKey(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)), x509.KeyUsageDigitalSignature},
		{"rsa-2048", mustKey(rsa.GenerateKey(rand.Reader, 2048)), x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
		{"ed25519", edKey, x509.KeyUsageDigitalSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The CSR asks for another identity, a CA and names: all ignored.
			evil, _ := url.Parse("spiffe://evil.example/admin")
			csr := newCSR(t, tt.key, &x509.CertificateRequest{
				Subject:        pkix.Name{CommonName: "evil", Organization: []string{"Evil"}},
				DNSNames:       []string{"evil.example"},
				URIs:           []*url.URL{evil},
				EmailAddresses: []string{"x@evil.example"},
			})
			p := X509Params{ID: workload, TTL: time.Hour, DNSNames: []string{"web.example.org", "web"}}
			chain, err := e.m.SignX509SVID(ctx, csr, p)
			if err != nil {
				t.Fatalf("SignX509SVID() = %v", err)
			}
			if len(chain) != 1 {
				t.Fatalf("SignX509SVID() returned %d certificates, want [leaf]", len(chain))
			}
			leaf := chain[0]

			// Verifies with go-spiffe against the bundle, both entry points.
			if id := verifyX509(t, chain, e.bundle(t), now); id != workload {
				t.Errorf("verified ID = %s, want %s", id, workload)
			}
			if _, _, err := x509svid.ParseAndVerify([][]byte{leaf.Raw}, e.bundle(t), x509svid.WithTime(now)); err != nil {
				t.Errorf("x509svid.ParseAndVerify() = %v", err)
			}
			if err := leaf.CheckSignatureFrom(ca); err != nil {
				t.Errorf("leaf.CheckSignatureFrom(ca) = %v", err)
			}

			// Section 2: exactly one URI SAN, the SPIFFE ID.
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != workload.String() {
				t.Errorf("URIs = %v, want exactly [%s]", leaf.URIs, workload)
			}
			if !slices.Equal(leaf.DNSNames, p.DNSNames) {
				t.Errorf("DNSNames = %q, want %q", leaf.DNSNames, p.DNSNames)
			}
			if len(leaf.EmailAddresses)+len(leaf.IPAddresses) != 0 {
				t.Errorf("leaf carries requested SANs: %v %v", leaf.EmailAddresses, leaf.IPAddresses)
			}
			// Section 4.1: cA false, basic constraints present.
			if !leaf.BasicConstraintsValid || leaf.IsCA || leaf.MaxPathLen > 0 {
				t.Errorf("basic constraints valid=%v CA=%v maxPathLen=%d, want valid, CA=false",
					leaf.BasicConstraintsValid, leaf.IsCA, leaf.MaxPathLen)
			}
			// Section 4.3: critical key usage, digitalSignature, never certSign/crlSign.
			if leaf.KeyUsage != tt.wantKU {
				t.Errorf("KeyUsage = %b, want %b", leaf.KeyUsage, tt.wantKU)
			}
			// Section 4.4: serverAuth and clientAuth.
			if want := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}; !slices.Equal(leaf.ExtKeyUsage, want) || len(leaf.UnknownExtKeyUsage) > 0 {
				t.Errorf("ExtKeyUsage = %v %v, want %v", leaf.ExtKeyUsage, leaf.UnknownExtKeyUsage, want)
			}
			// Exactly these extensions; key usage critical.
			var oids []string
			for _, ext := range leaf.Extensions {
				oids = append(oids, ext.Id.String())
				if ext.Id.Equal(oidKU) && !ext.Critical {
					t.Error("key usage extension is not critical")
				}
				if ext.Id.Equal(oidSAN) && ext.Critical {
					t.Error("SAN extension is critical although the subject is set")
				}
			}
			slices.Sort(oids)
			wantOIDs := []string{oidSKI.String(), oidKU.String(), oidSAN.String(), oidBC.String(), oidAKI.String(), oidEKU.String()}
			slices.Sort(wantOIDs)
			if !slices.Equal(oids, wantOIDs) {
				t.Errorf("extensions = %v, want %v", oids, wantOIDs)
			}
			// Serial: positive, at most 128 bits.
			if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %x is not a positive 128-bit number", leaf.SerialNumber)
			}
			// Validity.
			if want := now.Add(-10 * time.Second); !leaf.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %s, want %s", leaf.NotBefore, want)
			}
			if want := now.Add(time.Hour); !leaf.NotAfter.Equal(want) {
				t.Errorf("NotAfter = %s, want %s", leaf.NotAfter, want)
			}
			// Subject: O=Signet, CN = first DNS name.
			if !slices.Equal(leaf.Subject.Organization, []string{"Signet"}) || leaf.Subject.CommonName != "web.example.org" ||
				len(leaf.Subject.Names) != 2 {
				t.Errorf("Subject = %s, want CN=web.example.org,O=Signet", leaf.Subject)
			}
			// Key ids: SKI by RFC 7093 method 1, AKI = the CA's SKI.
			ski, err := subjectKeyID(leaf.RawSubjectPublicKeyInfo)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(leaf.SubjectKeyId, ski) || len(ski) != 20 {
				t.Errorf("SubjectKeyId = %x, want %x", leaf.SubjectKeyId, ski)
			}
			if !bytes.Equal(leaf.AuthorityKeyId, ca.SubjectKeyId) {
				t.Errorf("AuthorityKeyId = %x, want CA SKI %x", leaf.AuthorityKeyId, ca.SubjectKeyId)
			}
			if !tt.key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
				t.Error("leaf public key is not the CSR's")
			}
		})
	}
}

func TestSignX509SVIDSerialsDiffer(t *testing.T) {
	e := newEnv(t, nil)
	seen := map[string]bool{}
	csr := newCSR(t, newP256(t), nil)
	for range 20 {
		chain, err := e.m.SignX509SVID(context.Background(), csr, X509Params{ID: workload, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		s := chain[0].SerialNumber.String()
		if seen[s] {
			t.Fatalf("serial %s issued twice", s)
		}
		seen[s] = true
	}
}

func TestSignX509SVIDWithoutDNSNames(t *testing.T) {
	e := newEnv(t, nil)
	chain, err := e.m.SignX509SVID(context.Background(), newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if leaf.Subject.CommonName != "" || len(leaf.DNSNames) != 0 || leaf.Subject.String() != "O=Signet" {
		t.Errorf("Subject = %q, DNSNames = %q; want O=Signet and none", leaf.Subject, leaf.DNSNames)
	}
}

func TestSignX509SVIDCappedAtCA(t *testing.T) {
	e := newEnv(t, nil)
	caEnd := e.m.x509.Load().cert.NotAfter
	e.clock.Set(caEnd.Add(-30 * time.Minute))
	chain, err := e.m.SignX509SVID(context.Background(), newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := chain[0].NotAfter; !got.Equal(caEnd) {
		t.Errorf("NotAfter = %s, want the CA's %s", got, caEnd)
	}

	e.clock.Set(caEnd.Add(time.Second))
	_, err = e.m.SignX509SVID(context.Background(), newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour})
	wantKind(t, "SignX509SVID(after CA end)", err, errkind.Unavailable, "expired")
}

func TestSignX509SVIDMaxTTL(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxSVIDTTL = 2 * time.Hour })
	chain, err := e.m.SignX509SVID(context.Background(), newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: 10 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := chain[0].NotAfter, e.clock.Now().Add(2*time.Hour); !got.Equal(want) {
		t.Errorf("NotAfter = %s, want now+MaxSVIDTTL %s", got, want)
	}
}

func TestSignX509SVIDRejectsParams(t *testing.T) {
	e := newEnv(t, nil)
	csr := newCSR(t, newP256(t), nil)
	tests := []struct {
		name string
		p    X509Params
		want string
	}{
		{"zero id", X509Params{TTL: time.Hour}, "required"},
		{"other trust domain", X509Params{ID: spiffeid.RequireFromString("spiffe://other.org/web"), TTL: time.Hour}, "not in trust domain"},
		{"no path", X509Params{ID: testTD.ID(), TTL: time.Hour}, "no path"},
		{"zero ttl", X509Params{ID: workload}, "ttl"},
		{"negative ttl", X509Params{ID: workload, TTL: -time.Second}, "ttl"},
		{"bad dns", X509Params{ID: workload, TTL: time.Hour, DNSNames: []string{"a b"}}, "dns name"},
		{"empty dns", X509Params{ID: workload, TTL: time.Hour, DNSNames: []string{""}}, "dns name"},
		{"dns dots", X509Params{ID: workload, TTL: time.Hour, DNSNames: []string{"a..b"}}, "dns name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.m.SignX509SVID(context.Background(), csr, tt.p)
			wantKind(t, "SignX509SVID()", err, errkind.InvalidArgument, tt.want)
		})
	}
	if _, err := e.m.SignX509SVID(context.Background(), csr,
		X509Params{ID: workload, TTL: time.Hour, DNSNames: []string{"*.web.example.org", "a-b.c"}}); err != nil {
		t.Errorf("SignX509SVID(wildcard dns) = %v", err)
	}
}

func TestSignBeforeInit(t *testing.T) {
	m, err := New(Config{TrustDomain: testTD, ServerID: "s", Store: newMemStore(), KeyManager: newMemKeys()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.SignX509SVID(context.Background(), newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour})
	wantKind(t, "SignX509SVID() before Init", err, errkind.FailedPrecondition, "not initialized")
	_, _, err = m.SignJWTSVID(context.Background(), JWTParams{ID: workload, TTL: time.Hour, Audience: []string{"a"}})
	wantKind(t, "SignJWTSVID() before Init", err, errkind.FailedPrecondition, "not initialized")
}

// csrWithExtension builds a CSR for key carrying one extra extension.
func csrWithExtension(t *testing.T, key crypto.Signer, id asn1.ObjectIdentifier, value any) []byte {
	t.Helper()
	v, err := asn1.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	return newCSR(t, key, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{{Id: id, Critical: true, Value: v}}})
}

func TestParseCSRRejects(t *testing.T) {
	good := newCSR(t, newP256(t), nil)
	badSig := bytes.Clone(good)
	badSig[len(badSig)-5] ^= 0xff // inside the signature value

	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	type bc struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional,default:-1"`
	}
	// The CSR of another key with this one's public key swapped in: a
	// signature by a key the requester does not hold.
	other := newCSR(t, newP256(t), nil)
	victim, _ := x509.ParseCertificateRequest(good)
	otherParsed, _ := x509.ParseCertificateRequest(other)
	stolen := bytes.Replace(bytes.Clone(other), otherParsed.RawSubjectPublicKeyInfo, victim.RawSubjectPublicKeyInfo, 1)

	tests := []struct {
		name string
		der  []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"garbage", []byte("hello, i am a csr"), "malformed"},
		{"truncated", good[:len(good)/2], "malformed"},
		{"trailing data", append(bytes.Clone(good), 0), "malformed"},
		{"too large", make([]byte, maxCSRSize+1), "larger"},
		{"certificate not csr", e2eCert(t), "malformed"},
		{"wrong signature", badSig, "signature does not verify"},
		{"stolen public key", stolen, "signature does not verify"},
		{"rsa 1024", newCSR(t, rsa1024, nil), "RSA key of 1024 bits"},
		{"p-224", newCSR(t, p224, nil), "P-224"},
		{"ca request", csrWithExtension(t, newP256(t), oidBC, bc{IsCA: true, MaxPathLen: -1}), "CA certificate"},
		{"cert sign usage", csrWithExtension(t, newP256(t), oidKU, asn1.BitString{Bytes: []byte{0x04}, BitLength: 6}), "keyCertSign"},
		{"crl sign usage", csrWithExtension(t, newP256(t), oidKU, asn1.BitString{Bytes: []byte{0x02}, BitLength: 7}), "keyCertSign or cRLSign"},
		{"malformed basic constraints", csrWithExtension(t, newP256(t), oidBC, 7), "basic constraints"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCSR(tt.der)
			wantKind(t, "ParseCSR()", err, errkind.InvalidArgument, tt.want)
		})
	}

	// And through the signing path.
	e := newEnv(t, nil)
	for _, tt := range tests {
		_, err := e.m.SignX509SVID(context.Background(), tt.der, X509Params{ID: workload, TTL: time.Hour})
		if errkind.Of(err) != errkind.InvalidArgument {
			t.Errorf("SignX509SVID(%s) = %v, want InvalidArgument", tt.name, err)
		}
	}
}

// e2eCert returns the DER of some self-signed certificate (not a CSR).
func e2eCert(t *testing.T) []byte {
	t.Helper()
	k := newP256(t)
	tmpl := &x509.Certificate{SerialNumber: randomSerial(), NotBefore: testEpoch, NotAfter: testEpoch.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestParseCSRAccepts(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	type bc struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional,default:-1"`
	}
	tests := []struct {
		name string
		der  []byte
	}{
		{"p-256", newCSR(t, newP256(t), nil)},
		{"p-384", newCSR(t, mustKey(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)), nil)},
		{"p-521", newCSR(t, mustKey(ecdsa.GenerateKey(elliptic.P521(), rand.Reader)), nil)},
		{"rsa-2048", newCSR(t, mustKey(rsa.GenerateKey(rand.Reader, 2048)), nil)},
		{"ed25519", newCSR(t, ed, nil)},
		{"leaf basic constraints", csrWithExtension(t, newP256(t), oidBC, bc{MaxPathLen: -1})},
		{"digital signature usage", csrWithExtension(t, newP256(t), oidKU, asn1.BitString{Bytes: []byte{0x80}, BitLength: 1})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseCSR(tt.der); err != nil {
				t.Errorf("ParseCSR() = %v, want success", err)
			}
		})
	}
}

func TestCACertificateProfile(t *testing.T) {
	e := newEnv(t, nil)
	a := e.active(t, model.AuthorityX509)
	ca, err := x509.ParseCertificate(a.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if !ca.BasicConstraintsValid || !ca.IsCA {
		t.Error("CA certificate lacks CA=true")
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; ca.KeyUsage != want {
		t.Errorf("CA KeyUsage = %b, want certSign|cRLSign", ca.KeyUsage)
	}
	for _, ext := range ca.Extensions {
		if ext.Id.Equal(oidKU) && !ext.Critical {
			t.Error("CA key usage is not critical")
		}
	}
	if len(ca.URIs) != 1 || ca.URIs[0].String() != "spiffe://example.org" {
		t.Errorf("CA URIs = %v, want [spiffe://example.org]", ca.URIs)
	}
	if !slices.Equal(ca.Subject.Organization, []string{"Signet"}) || ca.Subject.SerialNumber != a.ID {
		t.Errorf("CA Subject = %s, want O=Signet, serialNumber=%s", ca.Subject, a.ID)
	}
	if got := hex.EncodeToString(ca.SubjectKeyId); got != a.ID {
		t.Errorf("CA SKI = %s, want the authority id %s", got, a.ID)
	}
	h := sha256.Sum256(mustSPKIBits(t, ca.RawSubjectPublicKeyInfo))
	if !bytes.Equal(ca.SubjectKeyId, h[:20]) {
		t.Errorf("CA SKI = %x, want RFC 7093 method 1 %x", ca.SubjectKeyId, h[:20])
	}
	if !ca.NotBefore.Equal(testEpoch.Add(-clockSkew)) || !ca.NotAfter.Equal(testEpoch.Add(DefaultCATTL)) {
		t.Errorf("CA validity = [%s, %s], want [now-10s, now+24h]", ca.NotBefore, ca.NotAfter)
	}
	if ca.SerialNumber.Sign() <= 0 || ca.SerialNumber.BitLen() > 128 {
		t.Errorf("CA serial %x is not a positive 128-bit number", ca.SerialNumber)
	}
	if !bytes.Equal(a.PublicKey, ca.RawSubjectPublicKeyInfo) {
		t.Error("authority PublicKey is not the certificate's")
	}
}

func mustSPKIBits(t *testing.T, spki []byte) []byte {
	t.Helper()
	var info struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		t.Fatal(err)
	}
	return info.PublicKey.Bytes
}

func TestAuthorityKeyTypes(t *testing.T) {
	tests := []struct {
		keyType string
		sigAlg  x509.SignatureAlgorithm
		jwsAlg  string
	}{
		{KeyTypeECP256, x509.ECDSAWithSHA256, "ES256"},
		{KeyTypeECP384, x509.ECDSAWithSHA384, "ES384"},
		{KeyTypeRSA2048, x509.SHA256WithRSA, "RS256"},
		{KeyTypeRSA4096, x509.SHA256WithRSA, "RS256"},
	}
	for _, tt := range tests {
		t.Run(tt.keyType, func(t *testing.T) {
			if tt.keyType == KeyTypeRSA4096 && (testing.Short() || raceEnabled) {
				t.Skip("RSA-4096 key generation is slow (skipped with -short and -race)")
			}
			e := newEnv(t, func(c *Config) { c.KeyType = tt.keyType; c.Now = nil })
			ca := e.m.x509.Load().cert
			if ca.SignatureAlgorithm != tt.sigAlg {
				t.Errorf("CA signature algorithm = %s, want %s", ca.SignatureAlgorithm, tt.sigAlg)
			}
			chain, err := e.m.SignX509SVID(context.Background(), newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			verifyX509(t, chain, e.bundle(t), time.Now())
			if chain[0].SignatureAlgorithm != tt.sigAlg {
				t.Errorf("leaf signature algorithm = %s, want %s", chain[0].SignatureAlgorithm, tt.sigAlg)
			}
			tok, _, err := e.m.SignJWTSVID(context.Background(), JWTParams{ID: workload, Audience: []string{"a"}, TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if h := jwtHeader(t, tok); h["alg"] != tt.jwsAlg {
				t.Errorf("JWT alg = %v, want %s", h["alg"], tt.jwsAlg)
			}
			validateJWT(t, tok, e.bundle(t), "a")
		})
	}
}
