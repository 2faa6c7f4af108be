package awsiid_test

import (
	"crypto/x509"
	"encoding/base64"
	"testing"

	"github.com/signet-id/signet/internal/cloudtest"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/nodeattest/awsiid"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// FuzzAttest feeds arbitrary payloads to the verifier: payload JSON,
// base64, PKCS#7 BER and document parsers. Nothing may panic, and every
// failure is a refusal.
func FuzzAttest(f *testing.F) {
	signer := cloudtest.NewAWSSigner(f, "fuzz")
	doc := cloudtest.NewAWSDocument(f).JSON()
	f.Add(payloadOf(f, doc, signer.Sign(f, doc)))
	f.Add([]byte(`{"document":"{}","pkcs7":"MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwGggCSABA=="}`))
	f.Add([]byte(`{}`))
	v, err := awsiid.NewVerifier(td, awsiid.Config{Certificates: []string{signer.CertPEM}}, &cloudtest.Nodes{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		_, err := v.Attest(t.Context(), p, nil)
		if err != nil && errkind.Of(err) != errkind.InvalidArgument && errkind.Of(err) != errkind.PermissionDenied {
			t.Fatalf("Attest = %v, want a refusal", err)
		}
	})
}

// FuzzVerifySignature feeds arbitrary signatures to the PKCS#7 check.
func FuzzVerifySignature(f *testing.F) {
	signer := cloudtest.NewAWSSigner(f, "fuzz")
	doc := cloudtest.NewAWSDocument(f).JSON()
	der, _ := base64.StdEncoding.DecodeString(removeNewlines(signer.Sign(f, doc)))
	f.Add(doc, der)
	f.Add([]byte("{}"), []byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x80, 0x30, 0x80})
	f.Fuzz(func(t *testing.T, doc, sig []byte) {
		_, _ = awsiid.VerifySignature(doc, sig, []*x509.Certificate{signer.Cert})
	})
}

// FuzzParseDocument feeds arbitrary documents to the document parser.
func FuzzParseDocument(f *testing.F) {
	f.Add(cloudtest.NewAWSDocument(f).JSON())
	f.Add([]byte(`{"accountId": 123}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := awsiid.ParseDocument(b)
		if err != nil {
			return
		}
		if _, err := awsiid.AgentID(td, d); err != nil {
			t.Fatalf("ParseDocument accepted a document whose agent ID is invalid: %v", err)
		}
		for _, s := range awsiid.Selectors(d) {
			if err := s.Validate(); err != nil {
				t.Fatalf("ParseDocument accepted a document with a bad selector: %v", err)
			}
		}
	})
}

func removeNewlines(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\n' {
			out = append(out, s[i])
		}
	}
	return string(out)
}
