// Package tpm implements the tpm node attestation method: an agent proves
// that it runs on the machine holding a particular TPM 2.0, by credential
// activation against the TPM's endorsement key (EK).
//
// The agent half (Attestor) sends the EK's public area, the EK certificate
// when the TPM holds one (NV index 0x01C00002), and the public area of an
// attestation key (AK): a restricted ECDSA P-256 signing key, created as a
// primary key in the endorsement hierarchy, so the same TPM always yields
// the same AK and the agent keeps no state between the payload and the
// challenge. The EK is the persistent key at 0x81010001 when it was made
// from the TCG default RSA 2048 template, and is otherwise generated from
// that template (slow on some TPMs: provisioning it with
// `tpm2_createek -c 0x81010001` spares the agent the work). The server half (Verifier) decides whether it trusts the EK
// (its certificate chains to a configured manufacturer root, or its hash is
// allowed), then runs MakeCredential in software: a fresh random secret,
// bound to the AK's name and sealed to the EK. Only the TPM holding that EK,
// with that AK loaded, can recover it with TPM2_ActivateCredential; the
// agent returns it and the server compares in constant time. Every
// attestation draws a new secret, so a recorded exchange is worthless.
//
// The node's agent ID is spiffe://<td>/signet/agent/tpm/<EK hash>, the EK
// hash being the SHA-256, in hex, of the EK public key as a DER
// SubjectPublicKeyInfo. Its selectors are tpm:ek_hash:<EK hash> and, when an
// EK certificate chained to a configured root, tpm:manufacturer:<id> with
// the TPM manufacturer named by that certificate (such as IFX, INTC, NTC,
// STM or IBM). A TPM admitted by its hash alone gets no manufacturer
// selector: what TPM2_GetCapability reports is said by the host's software,
// not proven by the TPM, and selectors decide which node aliases (and so
// which workload SVIDs) a node gets.
//
// Configuration, server (node_attestors.tpm; give roots, hashes or both):
//
//	node_attestors:
//	  tpm:
//	    ek_ca_path: /etc/signet/tpm-ek-roots/   # PEM or DER roots (and intermediates)
//	    allowed_ek_hashes: [<EK hash>, …]      # TPMs without a manufacturer certificate
//
// and agent (node_attestor.tpm):
//
//	node_attestor:
//	  tpm: {device: /dev/tpmrm0}   # the default; or an emulator's unix socket
//
// The server half is pure Go: it needs neither cgo nor a TPM. The agent
// half talks to /dev/tpmrm0 (or another TPM character device), or to a TPM
// emulator's unix socket such as swtpm's (tests use package tpmtest).
package tpm

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
)

// Name is the attestation method name, sent as attestation_type.
const Name = "tpm"

// EKCertIndex is the NV index of the RSA 2048 EK certificate (TCG EK
// Credential Profile, "low range").
const EKCertIndex = 0x01C00002

// SelectorType is the type of the selectors this method proves.
const SelectorType = "tpm"

// secretSize is the size of the credential secret: the EK's name
// algorithm's digest size (SHA-256), the most a credential may hold.
const secretSize = 32

// EKHash returns the SHA-256, in lower-case hex, of pub as a DER
// SubjectPublicKeyInfo: the form an EK is named by in agent IDs,
// selectors and allow lists.
func EKHash(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("hash EK public key: %w", err)
	}
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:]), nil
}

// AgentID returns the SPIFFE ID of the node whose EK has the given hash:
// spiffe://<td>/signet/agent/tpm/<ekHash>.
func AgentID(td spiffeid.TrustDomain, ekHash string) (spiffeid.ID, error) {
	if !isHexSHA256(ekHash) {
		return spiffeid.ID{}, fmt.Errorf("derive tpm agent id: EK hash is not 64 lower-case hex digits")
	}
	return spiffeid.FromSegments(td, "signet", "agent", Name, ekHash)
}

// Selectors returns the selectors of a node with the given EK hash and,
// if known from a verified certificate, TPM manufacturer ("" for none).
func Selectors(ekHash, manufacturer string) []model.Selector {
	out := []model.Selector{{Type: SelectorType, Value: "ek_hash:" + ekHash}}
	if manufacturer != "" {
		out = append(out, model.Selector{Type: SelectorType, Value: "manufacturer:" + manufacturer})
	}
	return out
}

// isHexSHA256 reports whether s is 64 lower-case hex digits.
func isHexSHA256(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// AKTemplate is the template of the attestation key: a restricted ECDSA
// P-256 (SHA-256) signing key that never leaves the TPM, with an empty
// auth value, created as a primary key in the endorsement hierarchy.
var AKTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		Restricted:          true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
	}),
}
