package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The wire format of both messages is a version byte followed by fields,
// each a big-endian uint16 length and that many bytes, with nothing after
// the last. TPM structures are carried in their TPM marshalling
// (TPMT_PUBLIC, TPM2B_ID_OBJECT contents, …), and must be in canonical form:
// re-marshalling a parsed structure gives back the same bytes.
const wireVersion = 1

// Payload is the agent's evidence: the TPM's endorsement key, its
// certificate when the TPM holds one, and the attestation key whose name
// the server binds its challenge to.
type Payload struct {
	// EKPublic is the EK's TPMT_PUBLIC.
	EKPublic []byte
	// EKCert is the EK certificate (DER) read from the TPM's NV, or empty.
	EKCert []byte
	// AKPublic is the AK's TPMT_PUBLIC.
	AKPublic []byte
}

// Challenge is the server's credential challenge: the output of
// MakeCredential for the AK's name, sealed to the EK.
type Challenge struct {
	// CredentialBlob is the TPM2B_ID_OBJECT's contents.
	CredentialBlob []byte
	// EncryptedSecret is the TPM2B_ENCRYPTED_SECRET's contents: the seed
	// encrypted to the EK.
	EncryptedSecret []byte
}

// Marshal encodes p. It fails when a field is over 65535 bytes.
func (p Payload) Marshal() ([]byte, error) { return marshalFields(p.EKPublic, p.EKCert, p.AKPublic) }

// Marshal encodes c. It fails when a field is over 65535 bytes.
func (c Challenge) Marshal() ([]byte, error) {
	return marshalFields(c.CredentialBlob, c.EncryptedSecret)
}

// ParsePayload decodes an agent's payload. It checks the framing only (the
// verifier checks the keys); the EK and AK must be non-empty.
func ParsePayload(b []byte) (Payload, error) {
	f, err := parseFields(b, 3)
	if err != nil {
		return Payload{}, fmt.Errorf("tpm payload: %w", err)
	}
	if len(f[0]) == 0 || len(f[2]) == 0 {
		return Payload{}, errors.New("tpm payload: the EK and AK public areas are required")
	}
	return Payload{EKPublic: f[0], EKCert: f[1], AKPublic: f[2]}, nil
}

// ParseChallenge decodes a server's challenge; both fields must be
// non-empty.
func ParseChallenge(b []byte) (Challenge, error) {
	f, err := parseFields(b, 2)
	if err != nil {
		return Challenge{}, fmt.Errorf("tpm challenge: %w", err)
	}
	if len(f[0]) == 0 || len(f[1]) == 0 {
		return Challenge{}, errors.New("tpm challenge: the credential blob and the encrypted secret are required")
	}
	return Challenge{CredentialBlob: f[0], EncryptedSecret: f[1]}, nil
}

func marshalFields(fields ...[]byte) ([]byte, error) {
	n := 1
	for i, f := range fields {
		if len(f) > 0xffff {
			return nil, fmt.Errorf("field %d is %d bytes: at most 65535", i, len(f))
		}
		n += 2 + len(f)
	}
	out := make([]byte, 1, n)
	out[0] = wireVersion
	for _, f := range fields {
		out = binary.BigEndian.AppendUint16(out, uint16(len(f)))
		out = append(out, f...)
	}
	return out, nil
}

// parseFields splits b into exactly n fields. The fields alias b.
func parseFields(b []byte, n int) ([][]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	if b[0] != wireVersion {
		return nil, fmt.Errorf("version %d: want %d", b[0], wireVersion)
	}
	b = b[1:]
	out := make([][]byte, n)
	for i := range out {
		if len(b) < 2 {
			return nil, fmt.Errorf("truncated before field %d", i)
		}
		l := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if len(b) < l {
			return nil, fmt.Errorf("field %d is %d bytes but only %d remain", i, l, len(b))
		}
		out[i], b = b[:l:l], b[l:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(b))
	}
	return out, nil
}

// parsePublic decodes a TPMT_PUBLIC in canonical form: no trailing bytes,
// and the bytes it re-marshals to are the input (so that the name the
// server computes is the name of exactly what the agent sent).
func parsePublic(b []byte) (pub *tpm2.TPMTPublic, err error) {
	defer func() {
		// The TPM structures are decoded by reflection: keep a decoder
		// bug on hostile input from becoming a crash of the server.
		if r := recover(); r != nil {
			pub, err = nil, fmt.Errorf("malformed TPMT_PUBLIC")
		}
	}()
	pub, err = tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, fmt.Errorf("malformed TPMT_PUBLIC: %w", err)
	}
	if !bytes.Equal(tpm2.Marshal(pub), b) {
		return nil, errors.New("TPMT_PUBLIC is not in canonical form (trailing or non-canonical bytes)")
	}
	return pub, nil
}
