package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/errkind"
)

// TestMintX509SVIDMatchesCertificate: what MintX509SVID reports without
// parsing (serial, NotAfter) is what the certificate it minted says, and
// its chain is SignX509SVID's, for a self-signed and an upstream-signed CA.
func TestMintX509SVIDMatchesCertificate(t *testing.T) {
	ctx := context.Background()
	c := newCorp(t, 365*24*time.Hour)
	for name, mod := range map[string]func(*Config){
		"self-signed": func(c *Config) { c.Now = nil }, // the real clock: NotAfter has nanoseconds to drop
		"upstream":    c.use(t),
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, mod)
			p := X509Params{ID: workload, TTL: time.Hour, DNSNames: []string{"web.example.org"}}
			m, err := e.m.MintX509SVID(ctx, newCSR(t, newP256(t), nil), p)
			if err != nil {
				t.Fatalf("MintX509SVID() = %v", err)
			}
			chain := make([]*x509.Certificate, len(m.Chain))
			for i, der := range m.Chain {
				if chain[i], err = x509.ParseCertificate(der); err != nil {
					t.Fatalf("chain[%d]: %v", i, err)
				}
			}
			leaf := chain[0]
			if leaf.SerialNumber.Cmp(m.Serial) != 0 {
				t.Errorf("Serial = %s, certificate says %s", m.Serial, leaf.SerialNumber)
			}
			if m.NotAfter != leaf.NotAfter.UTC() {
				t.Errorf("NotAfter = %v, certificate says %v", m.NotAfter, leaf.NotAfter)
			}
			if got := verifyX509(t, chain, e.bundle(t), leaf.NotBefore.Add(time.Minute)); got != workload {
				t.Errorf("verified ID = %s, want %s", got, workload)
			}
			signed, err := e.m.SignX509SVID(ctx, newCSR(t, newP256(t), nil), p)
			if err != nil {
				t.Fatal(err)
			}
			if len(signed) != len(chain) {
				t.Fatalf("chain lengths: mint %d, sign %d", len(chain), len(signed))
			}
			for i := 1; i < len(chain); i++ {
				if !bytes.Equal(signed[i].Raw, m.Chain[i]) {
					t.Errorf("chain[%d] differs from SignX509SVID's", i)
				}
			}
		})
	}
}

// TestMintX509SVIDChecks: MintX509SVID refuses what SignX509SVID refuses.
func TestMintX509SVIDChecks(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	_, err := e.m.MintX509SVID(ctx, []byte("not a csr"), X509Params{ID: workload, TTL: time.Hour})
	wantKind(t, "MintX509SVID(garbage csr)", err, errkind.InvalidArgument, "csr")
	_, err = e.m.MintX509SVID(ctx, newCSR(t, newP256(t), nil), X509Params{ID: workload})
	wantKind(t, "MintX509SVID(no ttl)", err, errkind.InvalidArgument, "ttl")
}
