package ca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/cputime"
)

// reportCPU runs loop and reports, besides ns/op, the process CPU time
// per operation (cpu-ns/op) and the operations per second one core
// sustains (ops/s/core), which stay meaningful when the machine is shared.
func reportCPU(b *testing.B, loop func()) {
	b.ReportAllocs()
	start, ok := cputime.Process()
	loop()
	end, _ := cputime.Process()
	if ok && b.N > 0 {
		perOp := float64(end-start) / float64(b.N)
		b.ReportMetric(perOp, "cpu-ns/op")
		b.ReportMetric(1e9/perOp, "ops/s/core")
	}
}

// BenchmarkSignX509SVID measures the whole server path for one P-256
// X509-SVID: CSR parse and checks (including the ECDSA signature
// verification that proves possession), template, signing, parsing the
// result.
func BenchmarkSignX509SVID(b *testing.B) {
	e := newEnv(b, func(c *Config) { c.Now = nil })
	csr := newCSR(b, newP256(b), nil)
	p := X509Params{ID: workload, TTL: time.Hour, DNSNames: []string{"web.example.org"}}
	ctx := context.Background()
	reportCPU(b, func() {
		for b.Loop() {
			if _, err := e.m.SignX509SVID(ctx, csr, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMintX509SVID is BenchmarkSignX509SVID through MintX509SVID, the
// agent API's path: the same checks and signature, no parse of the leaf.
func BenchmarkMintX509SVID(b *testing.B) {
	e := newEnv(b, func(c *Config) { c.Now = nil })
	csr := newCSR(b, newP256(b), nil)
	p := X509Params{ID: workload, TTL: time.Hour, DNSNames: []string{"web.example.org"}}
	ctx := context.Background()
	reportCPU(b, func() {
		for b.Loop() {
			if _, err := e.m.MintX509SVID(ctx, csr, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRawCreateCertificate is the floor: x509.CreateCertificate alone
// with the same template, CA certificate and keys.
func BenchmarkRawCreateCertificate(b *testing.B) {
	e := newEnv(b, func(c *Config) { c.Now = nil })
	s := e.m.x509.Load()
	parsed, err := x509.ParseCertificateRequest(newCSR(b, newP256(b), nil))
	if err != nil {
		b.Fatal(err)
	}
	ski, err := subjectKeyID(parsed.RawSubjectPublicKeyInfo)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	p := X509Params{ID: workload, TTL: time.Hour, DNSNames: []string{"web.example.org"}}
	tmpl := e.m.leafTemplate(p, parsed.PublicKey, ski, now, now.Add(time.Hour))
	tmpl.AuthorityKeyId = s.cert.SubjectKeyId
	reportCPU(b, func() {
		for b.Loop() {
			if _, err := x509.CreateCertificate(rand.Reader, tmpl, s.cert, parsed.PublicKey, s.key.signer); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSignJWTSVID measures minting one ES256 JWT-SVID.
func BenchmarkSignJWTSVID(b *testing.B) {
	e := newEnv(b, func(c *Config) { c.Now = nil })
	p := JWTParams{ID: workload, Audience: []string{"spiffe://example.org/db"}, TTL: 5 * time.Minute}
	ctx := context.Background()
	reportCPU(b, func() {
		for b.Loop() {
			if _, _, err := e.m.SignJWTSVID(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkParallelSignX509SVID shows minting scales across cores (no
// global lock on the hot path).
func BenchmarkParallelSignX509SVID(b *testing.B) {
	e := newEnv(b, func(c *Config) { c.Now = nil })
	csr := newCSR(b, newP256(b), nil)
	p := X509Params{ID: workload, TTL: time.Hour}
	ctx := context.Background()
	reportCPU(b, func() {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := e.m.SignX509SVID(ctx, csr, p); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
