package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"

	"github.com/signet-id/signet/internal/nodeattest"
)

// DefaultDevice is the TPM the agent uses unless configured otherwise: the
// kernel's resource-managed TPM 2.0 device.
const DefaultDevice = "/dev/tpmrm0"

// AgentConfig is the agent half's configuration, the value of
// node_attestor.tpm in the agent's file.
type AgentConfig struct {
	// Device is the TPM: a character device (/dev/tpmrm0, the default) or
	// the unix socket of a TPM emulator's command channel (swtpm's
	// --server type=unixio).
	Device string `yaml:"device"`
}

// Validate reports a device that is not an absolute path.
func (c AgentConfig) Validate() error {
	if c.Device != "" && !filepath.IsAbs(c.Device) {
		return fmt.Errorf("device: %q is not an absolute path: use a TPM device such as %s or an emulator's unix socket", c.Device, DefaultDevice)
	}
	return nil
}

// Attestor is the agent half of tpm attestation. It keeps no TPM state:
// each call opens the device, recreates the EK and AK (primary keys are
// derived from the endorsement seed, so they are the same each time) and
// flushes them again. Calls on attestors of the same device are serialized
// within the process, since an emulator socket and /dev/tpm0 have no
// resource manager to keep concurrent users apart. Create one with New.
type Attestor struct {
	device string
	open   func() (transport.TPMCloser, error)
	mu     *sync.Mutex
	log    *slog.Logger
}

var (
	_ nodeattest.Attestor  = (*Attestor)(nil)
	_ nodeattest.Responder = (*Attestor)(nil)
)

// deviceLocks holds one mutex per device path, shared by every Attestor of
// that device in the process.
var deviceLocks sync.Map // string → *sync.Mutex

// New returns an attestor using the TPM at cfg.Device (DefaultDevice when
// empty). It checks at once that the device exists, opens, and answers as
// a TPM 2.0, so a misconfigured agent fails at start-up with the key and
// the path in the error. A nil log discards log lines.
func New(cfg AgentConfig, log *slog.Logger) (*Attestor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dev := cfg.Device
	if dev == "" {
		dev = DefaultDevice
	}
	dev = filepath.Clean(dev)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fi, err := os.Stat(dev)
	if err != nil {
		return nil, fmt.Errorf("device: %s: %w%s", dev, unwrapPathError(err), hint(err))
	}
	a := &Attestor{device: dev, log: log}
	switch {
	case fi.Mode()&os.ModeSocket != 0:
		a.open = func() (transport.TPMCloser, error) { return linuxudstpm.Open(dev) }
	case fi.Mode()&os.ModeDevice != 0:
		a.open = func() (transport.TPMCloser, error) { return linuxtpm.Open(dev) }
	default:
		return nil, fmt.Errorf("device: %s is a %s, neither a TPM character device nor a TPM emulator's unix socket", dev, fileKind(fi.Mode()))
	}
	mu, _ := deviceLocks.LoadOrStore(dev, new(sync.Mutex))
	a.mu = mu.(*sync.Mutex)
	if err := a.with(context.Background(), func(t transport.TPM) error {
		_, err := manufacturer(t)
		return err
	}); err != nil {
		return nil, fmt.Errorf("device: %s: %w%s", dev, err, hint(err))
	}
	return a, nil
}

// hint explains the usual causes of a device that cannot be used.
func hint(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return " (is a TPM 2.0 enabled in the firmware and its kernel driver loaded? An emulator is given by its unix socket)"
	case errors.Is(err, os.ErrPermission):
		return " (the agent's user needs read-write access to the device: on most distributions, membership of the tss group)"
	}
	return ""
}

// Name returns "tpm".
func (a *Attestor) Name() string { return Name }

// String names the attestor and its device (no evidence).
func (a *Attestor) String() string { return "tpm(" + a.device + ")" }

// Payload reads the EK (and its certificate, if the TPM holds one that
// matches) and the AK, and encodes their public parts. It blocks while
// another call uses the same device.
func (a *Attestor) Payload(ctx context.Context) ([]byte, error) {
	var p Payload
	err := a.with(ctx, func(t transport.TPM) error {
		ek, err := loadEK(t)
		if err != nil {
			return err
		}
		defer ek.flush(t)
		if err := ctx.Err(); err != nil {
			return err
		}
		ak, err := createPrimary(t, tpm2.TPMRHEndorsement, AKTemplate)
		if err != nil {
			return fmt.Errorf("create the AK: %w", err)
		}
		defer ak.flush(t)
		p.EKPublic, p.AKPublic = tpm2.Marshal(ek.public), tpm2.Marshal(ak.public)
		if err := ctx.Err(); err != nil {
			return err
		}
		p.EKCert = a.ekCert(t, ek.public)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm payload from %s: %w", a.device, err)
	}
	return p.Marshal()
}

// ekCert returns the EK certificate in NV if it certifies ek, or nil.
// A missing certificate is normal (software TPMs, some firmware TPMs); one
// that does not parse or certifies another key is logged and left out, so
// that the EK can still be admitted by its hash.
func (a *Attestor) ekCert(t transport.TPM, ek *tpm2.TPMTPublic) []byte {
	der, err := readNV(t, EKCertIndex)
	if err != nil {
		a.log.Debug("no EK certificate in the TPM", "nv_index", fmt.Sprintf("%#x", EKCertIndex), "err", err)
		return nil
	}
	der = trimDER(der)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		a.log.Warn("EK certificate in the TPM does not parse: leaving it out", "nv_index", fmt.Sprintf("%#x", EKCertIndex), "err", err)
		return nil
	}
	pub, err := tpm2.Pub(*ek)
	if err != nil {
		return nil
	}
	if k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
		a.log.Warn("EK certificate in the TPM certifies another key than the default-template EK: leaving it out",
			"nv_index", fmt.Sprintf("%#x", EKCertIndex))
		return nil
	}
	return der
}

// Respond answers a credential challenge: it activates the credential with
// the EK and AK and returns the secret the server sealed in it.
func (a *Attestor) Respond(ctx context.Context, challenge []byte) ([]byte, error) {
	c, err := ParseChallenge(challenge)
	if err != nil {
		return nil, err
	}
	var secret []byte
	err = a.with(ctx, func(t transport.TPM) error {
		ek, err := loadEK(t)
		if err != nil {
			return err
		}
		defer ek.flush(t)
		ak, err := createPrimary(t, tpm2.TPMRHEndorsement, AKTemplate)
		if err != nil {
			return fmt.Errorf("create the AK: %w", err)
		}
		defer ak.flush(t)
		if err := ctx.Err(); err != nil {
			return err
		}
		rsp, err := tpm2.ActivateCredential{
			ActivateHandle: tpm2.NamedHandle{Handle: ak.handle, Name: ak.name},
			KeyHandle: tpm2.AuthHandle{Handle: ek.handle, Name: ek.name,
				Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, ekPolicy)},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: c.CredentialBlob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: c.EncryptedSecret},
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("activate credential: %w", err)
		}
		secret = rsp.CertInfo.Buffer
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm challenge on %s: %w", a.device, err)
	}
	return secret, nil
}

// with runs f on an open connection to the device, holding the device's
// lock, and closes the connection after.
func (a *Attestor) with(ctx context.Context, f func(t transport.TPM) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := a.open()
	if err != nil {
		return fmt.Errorf("open: %w", unwrapPathError(err))
	}
	defer t.Close()
	return f(t)
}

// object is a loaded TPM object.
type object struct {
	handle     tpm2.TPMHandle
	name       tpm2.TPM2BName
	public     *tpm2.TPMTPublic
	persistent bool
}

// flush unloads o unless it is persistent.
func (o object) flush(t transport.TPM) {
	if !o.persistent {
		flush(t, o.handle)
	}
}

// EKHandle is the persistent handle where provisioning tools (tpm2_createek,
// swtpm_setup, manufacturers) keep the RSA EK.
const EKHandle = 0x81010001

// loadEK returns the RSA EK: the persistent one at EKHandle when it was
// made from the TCG default template (the same key CreatePrimary would
// give, without generating it again), or else a transient one created from
// that template.
func loadEK(t transport.TPM) (object, error) {
	if rsp, err := (tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(EKHandle)}).Execute(t); err == nil {
		if pub, err := rsp.OutPublic.Contents(); err == nil && isDefaultEK(pub) {
			return object{handle: EKHandle, name: rsp.Name, public: pub, persistent: true}, nil
		}
	}
	ek, err := createPrimary(t, tpm2.TPMRHEndorsement, tpm2.RSAEKTemplate)
	if err != nil {
		return object{}, fmt.Errorf("create the EK: %w", err)
	}
	return ek, nil
}

// isDefaultEK reports whether pub is the public area of a key made from the
// TCG default RSA EK template.
func isDefaultEK(pub *tpm2.TPMTPublic) bool {
	if pub.Type != tpm2.TPMAlgRSA {
		return false
	}
	p := *pub
	p.Unique = tpm2.RSAEKTemplate.Unique
	return bytes.Equal(tpm2.Marshal(p), tpm2.Marshal(tpm2.RSAEKTemplate))
}

func createPrimary(t transport.TPM, hierarchy tpm2.TPMHandle, template tpm2.TPMTPublic) (object, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: hierarchy, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(template),
	}.Execute(t)
	if err != nil {
		return object{}, err
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush(t, rsp.ObjectHandle)
		return object{}, err
	}
	return object{handle: rsp.ObjectHandle, name: rsp.Name, public: pub}, nil
}

func flush(t transport.TPM, h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t)
}

// ekPolicy satisfies the default EK template's policy,
// PolicySecret(TPM_RH_ENDORSEMENT), with the endorsement hierarchy's
// (empty) auth value.
func ekPolicy(t transport.TPM, handle tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
	_, err := tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		PolicySession: handle,
		NonceTPM:      nonceTPM,
	}.Execute(t)
	return err
}

// manufacturer returns TPM_PT_MANUFACTURER, as its 4 ASCII characters
// (trailing NULs and spaces trimmed) when printable.
func manufacturer(t transport.TPM) (string, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTManufacturer),
		PropertyCount: 1,
	}.Execute(t)
	if err != nil {
		return "", fmt.Errorf("not answering as a TPM 2.0: %w", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil || len(props.TPMProperty) == 0 || props.TPMProperty[0].Property != tpm2.TPMPTManufacturer {
		return "", errors.New("not answering as a TPM 2.0: no TPM_PT_MANUFACTURER property")
	}
	v := props.TPMProperty[0].Value
	return vendorID([]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nil
}

// readNV reads the whole of an NV index, authorizing with the index's own
// (empty) auth value and then with the owner's.
func readNV(t transport.TPM, index tpm2.TPMHandle) ([]byte, error) {
	rp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t)
	if err != nil {
		return nil, err
	}
	pub, err := rp.NVPublic.Contents()
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, auth := range []tpm2.TPMHandle{index, tpm2.TPMRHOwner} {
		if out, err = readNVAs(t, index, rp.NVName, pub.DataSize, auth); err == nil {
			return out, nil
		}
	}
	return nil, err
}

// nvChunk is how much readNVAs asks for at once: below every TPM's
// TPM_PT_NV_BUFFER_MAX.
const nvChunk = 512

func readNVAs(t transport.TPM, index tpm2.TPMHandle, name tpm2.TPM2BName, size uint16, auth tpm2.TPMHandle) ([]byte, error) {
	ah := tpm2.AuthHandle{Handle: auth, Auth: tpm2.PasswordAuth(nil)}
	if auth == index {
		ah.Name = name
	}
	out := make([]byte, 0, size)
	for off := uint16(0); off < size; {
		n := min(size-off, nvChunk)
		rsp, err := tpm2.NVRead{
			AuthHandle: ah,
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: name},
			Size:       n,
			Offset:     off,
		}.Execute(t)
		if err != nil {
			return nil, err
		}
		if len(rsp.Data.Buffer) == 0 {
			return nil, errors.New("NV read returned no data")
		}
		out = append(out, rsp.Data.Buffer...)
		off += uint16(len(rsp.Data.Buffer))
	}
	return out, nil
}

// trimDER cuts padding after a DER SEQUENCE (NV indices are often larger
// than the certificate they hold).
func trimDER(b []byte) []byte {
	if len(b) < 4 || b[0] != 0x30 {
		return b
	}
	var l, hdr int
	switch {
	case b[1] < 0x80:
		l, hdr = int(b[1]), 2
	case b[1] == 0x81:
		l, hdr = int(b[2]), 3
	case b[1] == 0x82:
		l, hdr = int(b[2])<<8|int(b[3]), 4
	default:
		return b
	}
	if hdr+l <= len(b) {
		return b[:hdr+l]
	}
	return b
}

// vendorID renders a 4-byte TCG vendor ID: its ASCII characters with
// trailing NULs and spaces trimmed when they are all printable, otherwise
// its 8 upper-case hex digits.
func vendorID(b []byte) string {
	s := string(bytes.TrimRight(b, "\x00 "))
	if s == "" {
		return fmt.Sprintf("%X", b)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Sprintf("%X", b)
		}
	}
	return s
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&os.ModeNamedPipe != 0:
		return "named pipe"
	default:
		return "file of mode " + m.String()
	}
}
