package sshpop_test

import (
	"testing"

	"github.com/signet-id/signet/internal/nodeattest/sshpop"
)

// FuzzParsePayload checks that the payload parser never panics, and that
// a certificate it accepts re-marshals to the same bytes. Seeds are in
// testdata/fuzz/FuzzParsePayload.
func FuzzParsePayload(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		cert, err := sshpop.ParsePayload(p)
		if err != nil {
			return
		}
		if string(cert.Marshal()) != string(p) {
			t.Fatalf("Marshal(ParsePayload(p)) differs from p")
		}
		_ = sshpop.Selectors(cert)
		_ = sshpop.Fingerprint(cert.Key)
	})
}

// FuzzParseResponse checks that the challenge-answer parser never panics,
// and that verifying whatever it accepts never does either.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 11, 's', 's', 'h', '-', 'e', 'd', '2', '5', '5', '1', '9', 0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		sig, err := sshpop.ParseResponse(b)
		if err != nil {
			return
		}
		if sig.Format == "" || len(sig.Blob) == 0 {
			t.Fatalf("ParseResponse accepted an empty signature")
		}
	})
}

// FuzzParseAuthorities checks that the CA file parser never panics.
func FuzzParseAuthorities(f *testing.F) {
	f.Add([]byte("@cert-authority *.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDg8vDkLqPj0S4FLeLV3OAeIRXDr4tLLfrI0VzIk3lXo ca\n"))
	f.Add([]byte("# c\n\ncert-authority ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDg8vDkLqPj0S4FLeLV3OAeIRXDr4tLLfrI0VzIk3lXo\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = sshpop.ParseAuthorities(b)
	})
}
