package tpm_test

import (
	"context"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"

	"github.com/signet-id/signet/internal/nodeattest/tpm"
	"github.com/signet-id/signet/internal/nodeattest/tpm/tpmtest"
)

// eccAgent plays an agent whose TPM has an ECC P-256 EK (the TCG default
// ECC template): the server half seals credentials to ECC EKs too.
type eccAgent struct {
	t      transport.TPM
	ek, ak *tpm2.CreatePrimaryResponse
}

func (e eccAgent) Challenge(_ context.Context, b []byte) ([]byte, error) {
	c, err := tpm.ParseChallenge(b)
	if err != nil {
		return nil, err
	}
	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: tpm2.NamedHandle{Handle: e.ak.ObjectHandle, Name: e.ak.Name},
		KeyHandle: tpm2.AuthHandle{Handle: e.ek.ObjectHandle, Name: e.ek.Name,
			Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, h tpm2.TPMISHPolicy, n tpm2.TPM2BNonce) error {
				_, err := tpm2.PolicySecret{AuthHandle: tpm2.TPMRHEndorsement, PolicySession: h, NonceTPM: n}.Execute(t)
				return err
			})},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: c.CredentialBlob},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: c.EncryptedSecret},
	}.Execute(e.t)
	if err != nil {
		return nil, err
	}
	return rsp.CertInfo.Buffer, nil
}

func TestAttestECCEK(t *testing.T) {
	sim := tpmtest.Start(t)
	tp, err := linuxudstpm.Open(sim.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	create := func(tmpl tpm2.TPMTPublic) (*tpm2.CreatePrimaryResponse, *tpm2.TPMTPublic) {
		rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(tmpl)}.Execute(tp)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tp) })
		pub, err := rsp.OutPublic.Contents()
		if err != nil {
			t.Fatal(err)
		}
		return rsp, pub
	}
	ek, ekPub := create(tpm2.ECCEKTemplate)
	ak, akPub := create(tpm.AKTemplate)
	key, err := tpm2.Pub(*ekPub)
	if err != nil {
		t.Fatal(err)
	}
	h, err := tpm.EKHash(key)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tpm.Payload{EKPublic: tpm2.Marshal(ekPub), AKPublic: tpm2.Marshal(akPub)}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, tpm.Config{AllowedEKHashes: []string{h}}, nil)
	res, err := v.Attest(t.Context(), p, eccAgent{t: tp, ek: ek, ak: ak})
	if err != nil {
		t.Fatalf("Attest(ECC EK) error = %v", err)
	}
	wantResult(t, res, h, "")
}

// TestRespondRefusesGarbage sends malformed and forged challenges to the
// agent half: each is an error from the parser or the TPM, never a panic
// and never an answer.
func TestRespondRefusesGarbage(t *testing.T) {
	a := newAttestor(t, tpmtest.Start(t))
	forged, err := tpm.Challenge{CredentialBlob: make([]byte, 64), EncryptedSecret: make([]byte, 256)}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	huge, err := tpm.Challenge{CredentialBlob: make([]byte, 0xffff), EncryptedSecret: make([]byte, 0xffff)}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string][]byte{
		"nil": nil, "version 2": {2, 0, 1, 1, 0, 1, 1}, "truncated": forged[:len(forged)-1],
		"forged": forged, "huge": huge,
	} {
		if b, err := a.Respond(t.Context(), c); err == nil {
			t.Errorf("Respond(%s challenge) = %x, want an error", name, b)
		}
	}
}
