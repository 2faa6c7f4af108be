package tpmtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// EKCA is a test TPM manufacturer: a self-signed root that issues EK
// certificates shaped like real ones (empty subject, a critical subject
// alternative name with the TPM manufacturer, model and version, the
// tcg-kp-EKCertificate extended key usage).
type EKCA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewEKCA makes a root valid from an hour ago for a day.
func NewEKCA(t testing.TB) *EKCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"Signet Test TPM Manufacturer"}, CommonName: "Test EK Root CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &EKCA{Cert: cert, key: key}
}

// WriteRoot writes the root as PEM into a new temp dir and returns the
// dir (usable as ek_ca_path).
func (ca *EKCA) WriteRoot(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

var (
	oidSAN             = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
	oidEKCertificate   = asn1.ObjectIdentifier{2, 23, 133, 8, 1}
)

// IssueEKCert certifies ek (the EK's public key) as a TPM of the given
// 4-byte TCG vendor ID (0x49424D00 is "IBM", swtpm's) and returns the DER.
func (ca *EKCA) IssueEKCert(t testing.TB, ek crypto.PublicKey, vendor uint32) []byte {
	t.Helper()
	name, err := asn1.Marshal(pkix.RDNSequence{
		{{Type: oidTPMManufacturer, Value: fmt.Sprintf("id:%08X", vendor)}},
		{{Type: oidTPMModel, Value: "swtpm"}},
		{{Type: oidTPMVersion, Value: "id:00020000"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(12 * time.Hour),
		KeyUsage:              x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{oidEKCertificate},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: oidSAN, Critical: true, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, ek, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// EKPublic returns the public key of the TPM's EK made from the TCG
// default RSA 2048 template, as the agent makes it.
func (s *Sim) EKPublic(t testing.TB) crypto.PublicKey {
	t.Helper()
	tp, err := linuxudstpm.Open(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tpm2.RSAEKTemplate),
	}.Execute(tp)
	if err != nil {
		t.Fatalf("create EK: %v", err)
	}
	defer tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tp)
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// EKHandle is the persistent handle PersistEK stores the EK at.
const EKHandle = 0x81010001

// PersistEK makes the EK persistent at EKHandle, as provisioning tools do
// (tpm2_createek -c 0x81010001), so that agents need not generate it.
func (s *Sim) PersistEK(t testing.TB) {
	t.Helper()
	tp, err := linuxudstpm.Open(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tpm2.RSAEKTemplate),
	}.Execute(tp)
	if err != nil {
		t.Fatalf("create EK: %v", err)
	}
	defer tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tp)
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
		PersistentHandle: EKHandle,
	}).Execute(tp); err != nil {
		t.Fatalf("persist EK: %v", err)
	}
}

// EKCertIndex is the NV index WriteEKCert provisions (the RSA 2048 EK
// certificate's).
const EKCertIndex = 0x01C00002

// WriteEKCert provisions der as the TPM's EK certificate, as a
// manufacturer does: an NV index at EKCertIndex defined by the platform
// hierarchy, readable by the owner and with the index's empty auth.
func (s *Sim) WriteEKCert(t testing.TB, der []byte) {
	t.Helper()
	tp, err := linuxudstpm.Open(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	pub := tpm2.TPMSNVPublic{
		NVIndex: EKCertIndex,
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			PPWrite: true, PPRead: true, OwnerRead: true, AuthRead: true,
			NoDA: true, PlatformCreate: true, NT: tpm2.TPMNTOrdinary,
		},
		DataSize: uint16(len(der)),
	}
	platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: platform, PublicInfo: tpm2.New2B(pub)}).Execute(tp); err != nil {
		t.Fatalf("define EK certificate NV index: %v", err)
	}
	rp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(EKCertIndex)}.Execute(tp)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(der); off += 512 {
		end := min(off+512, len(der))
		if _, err := (tpm2.NVWrite{
			AuthHandle: platform,
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(EKCertIndex), Name: rp.NVName},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: der[off:end]},
			Offset:     uint16(off),
		}).Execute(tp); err != nil {
			t.Fatalf("write EK certificate: %v", err)
		}
	}
}
