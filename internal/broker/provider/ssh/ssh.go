// Package ssh is the broker's provider of OpenSSH user certificates: a
// Signet-held SSH user CA signs the public key a client generated (the
// private key never leaves the client) for the configured principals,
// extensions and critical options, valid for the lease. A policy rule's
// ssh key narrows them (Request.SSH, checked by CheckOptions), and
// source_address_from_node binds source-address to the addresses the
// caller's node connects to the server from (Request.NodeAddresses).
// Revocation is a
// key revocation list in OpenSSH's KRL format, rewritten on every revoke
// and served for sshd's RevokedKeys (see Handler and `signet ssh krl`).
//
// A certificate's serial number is derived from the lease id, so a Revoke
// that carries nothing but the lease id (a server that crashed between
// signing and activating the lease) still revokes it.
//
// The CA key lives in ca_key_file (OpenSSH or PKCS#8 PEM, unencrypted,
// mode 0600). When the file does not exist the provider generates an
// ed25519 key there at start, once: every replica of an HA server must be
// given the same file. The KRL state (revoked serials and until when they
// matter) lives in krl_file beside it.
package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	gossh "golang.org/x/crypto/ssh"

	"github.com/signet-id/signet/internal/atomicfile"
	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/errkind"
)

// Name is the provider's registry name and config value.
const Name = "ssh"

// Config is an ssh credential's configuration (besides the broker's own
// provider, default_ttl and max_ttl keys).
type Config struct {
	// CAKeyFile holds the user CA's private key; generated (ed25519, 0600)
	// when absent.
	CAKeyFile string `yaml:"ca_key_file"`
	// Principals are the certificate's principals (login names, or names
	// sshd's AuthorizedPrincipalsFile maps to accounts).
	Principals []string `yaml:"principals"`
	// Extensions are granted in the certificate, e.g. permit-pty.
	Extensions []string `yaml:"extensions"`
	// CriticalOptions are force-command, source-address and
	// verify-required.
	CriticalOptions map[string]string `yaml:"critical_options"`
	// SourceAddressFromNode binds the certificate's source-address to the
	// addresses the caller's node was seen connecting to the server from
	// on the mTLS agent API (each as /32 or /128). A request whose node has
	// no recorded address is refused. It excludes
	// critical_options.source-address.
	SourceAddressFromNode bool `yaml:"source_address_from_node"`
	// KRLFile keeps the revoked serials; default ca_key_file + ".krl.json".
	KRLFile string `yaml:"krl_file"`
}

// extensions are the certificate extensions OpenSSH defines.
var extensions = []string{
	"no-touch-required", "permit-X11-forwarding", "permit-agent-forwarding",
	"permit-port-forwarding", "permit-pty", "permit-user-rc",
}

// Validate reports every problem of c, naming fields by their keys.
func (c *Config) Validate() error {
	var errs []error
	if c.CAKeyFile == "" {
		errs = append(errs, errors.New("ca_key_file: required (the SSH user CA's private key; generated there when absent)"))
	}
	if len(c.Principals) == 0 {
		errs = append(errs, errors.New("principals: at least one principal is required, e.g. [deploy]"))
	}
	for i, p := range c.Principals {
		if p == "" || len(p) > 256 || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == ',' || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("principals[%d]: %q is not a principal (non-empty, no spaces, commas or control characters)", i, p))
		}
	}
	for i, e := range c.Extensions {
		if !slices.Contains(extensions, e) {
			errs = append(errs, fmt.Errorf("extensions[%d]: unknown extension %q (accepted: %s)", i, e, strings.Join(extensions, ", ")))
		}
	}
	for _, k := range sortedKeys(c.CriticalOptions) {
		v := c.CriticalOptions[k]
		switch k {
		case "force-command":
			if v == "" {
				errs = append(errs, errors.New("critical_options.force-command: empty (name the command to force)"))
			}
		case "source-address":
			if err := checkSourceAddress(v); err != nil {
				errs = append(errs, fmt.Errorf("critical_options.source-address: %w", err))
			}
		case "verify-required":
			if v != "" {
				errs = append(errs, errors.New("critical_options.verify-required: takes no value (use \"\")"))
			}
		default:
			errs = append(errs, fmt.Errorf("critical_options.%s: unknown option (accepted: force-command, source-address, verify-required)", k))
		}
	}
	if _, fixed := c.CriticalOptions["source-address"]; fixed && c.SourceAddressFromNode {
		errs = append(errs, errors.New("source_address_from_node: true conflicts with critical_options.source-address: "+
			"bind the certificate either to the node's addresses or to fixed CIDRs, not both"))
	}
	return errors.Join(errs...)
}

// checkSourceAddress accepts a comma-separated list of addresses and CIDRs.
func checkSourceAddress(v string) error {
	if v == "" {
		return errors.New("empty (want addresses or CIDRs, comma-separated, e.g. 10.0.0.0/8,192.0.2.7)")
	}
	for a := range strings.SplitSeq(v, ",") {
		if _, err := netip.ParsePrefix(a); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("%q is not an address or CIDR (want e.g. 10.0.0.0/8,192.0.2.7)", a)
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Provider signs SSH user certificates for leases and keeps the KRL.
type Provider struct {
	credential string
	signer     gossh.Signer
	cfg        Config
	now        func() time.Time
	krlFile    string

	mu    sync.Mutex
	state krlState
	krl   []byte
}

var (
	_ provider.Provider = (*Provider)(nil)
)

// krlState is krl_file's content.
type krlState struct {
	Version uint64       `json:"version"`
	Revoked []revocation `json:"revoked"`
}

type revocation struct {
	Serial uint64 `json:"serial"`
	Lease  string `json:"lease"`
	// Until is when the certificate expires anyway; the entry is dropped
	// after it.
	Until time.Time `json:"until"`
}

// unknownExpiryRetention is how long a serial revoked without knowing its
// certificate's end (a lease reconciled after a crash) stays in the KRL.
const unknownExpiryRetention = 30 * 24 * time.Hour

// backdate is how far before issuance a certificate becomes valid, for
// hosts whose clocks run slightly behind the server's.
const backdate = time.Minute

// New returns the provider of credential. cfg must be valid; now is the
// clock (time.Now when nil).
func New(credential string, cfg Config, now func() time.Time) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	signer, err := loadOrCreateCA(cfg.CAKeyFile, credential)
	if err != nil {
		return nil, err
	}
	p := &Provider{credential: credential, signer: signer, cfg: cfg, now: now, krlFile: cfg.KRLFile}
	if p.krlFile == "" {
		p.krlFile = cfg.CAKeyFile + ".krl.json"
	}
	b, err := os.ReadFile(p.krlFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("krl_file: %w", err)
	default:
		if err := json.Unmarshal(b, &p.state); err != nil {
			return nil, fmt.Errorf("krl_file: %s is not Signet's KRL state: %v", p.krlFile, err)
		}
	}
	p.rebuild()
	return p, nil
}

// loadOrCreateCA reads the CA key in path, or generates an ed25519 key
// there (mode 0600) when the file does not exist.
func loadOrCreateCA(path, credential string) (gossh.Signer, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		blk, err := gossh.MarshalPrivateKey(priv, "signet ssh user ca "+credential)
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) { // another process made it meanwhile
			return loadOrCreateCA(path, credential)
		}
		if err != nil {
			return nil, fmt.Errorf("ca_key_file: generate: %w", err)
		}
		if err := pem.Encode(f, blk); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("ca_key_file: generate: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("ca_key_file: generate: %w", err)
		}
		return gossh.NewSignerFromKey(priv)
	}
	if err != nil {
		return nil, fmt.Errorf("ca_key_file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ca_key_file: %s has mode %04o: it is the SSH CA's private key, make it 0600 (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca_key_file: %w", err)
	}
	key, err := gossh.ParseRawPrivateKey(b)
	var missing *gossh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("ca_key_file: %s is encrypted: Signet needs it unencrypted (protect it with mode 0600)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("ca_key_file: %s: not an SSH private key (OpenSSH or PEM): %v", path, err)
	}
	signer, err := gossh.NewSignerFromKey(key)
	if err != nil {
		return nil, fmt.Errorf("ca_key_file: %s: %v", path, err)
	}
	if rk, ok := key.(*rsa.PrivateKey); ok {
		if rk.N.BitLen() < 3072 {
			return nil, fmt.Errorf("ca_key_file: %s: an RSA CA key needs at least 3072 bits (ed25519 is the default)", path)
		}
		// Never SHA-1 signatures.
		return gossh.NewSignerWithAlgorithms(signer.(gossh.AlgorithmSigner), []string{gossh.KeyAlgoRSASHA512})
	}
	return signer, nil
}

// CAPublicKey returns the CA's public key in authorized_keys format (one
// line, for sshd's TrustedUserCAKeys), with the credential as comment.
func (p *Provider) CAPublicKey() string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(p.signer.PublicKey()))) + " signet-" + p.credential + "\n"
}

// CA returns the CA's public key.
func (p *Provider) CA() gossh.PublicKey { return p.signer.PublicKey() }

// Serial returns the certificate serial of a lease: 63 bits of a hash of
// the lease id, never 0.
func Serial(leaseID string) uint64 {
	h := sha256.Sum256([]byte("signet broker ssh serial v1\x00" + leaseID))
	return binary.BigEndian.Uint64(h[:8])>>1 | 1
}

// SerialString is Serial(leaseID) in decimal, as in the issued data.
func SerialString(leaseID string) string { return strconv.FormatUint(Serial(leaseID), 10) }

// ParsePublicKey reads a client's public key in authorized_keys format,
// refusing certificates and weak keys.
func ParsePublicKey(s string) (gossh.PublicKey, error) {
	if s == "" {
		return nil, errors.New("the request carries no public key: send the client's SSH public key (authorized_keys format) as parameter public_key")
	}
	if len(s) > 16<<10 {
		return nil, errors.New("public_key: longer than 16 KiB")
	}
	pub, _, _, rest, err := gossh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("public_key: not an SSH public key in authorized_keys format (e.g. ssh-ed25519 AAAA…): %v", err)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, errors.New("public_key: more than one key given")
	}
	switch pub.Type() {
	case gossh.KeyAlgoED25519, gossh.KeyAlgoECDSA256, gossh.KeyAlgoECDSA384, gossh.KeyAlgoECDSA521, gossh.KeyAlgoSKED25519, gossh.KeyAlgoSKECDSA256:
	case gossh.KeyAlgoRSA:
		ck, ok := pub.(gossh.CryptoPublicKey)
		if rk, isRSA := ck.CryptoPublicKey().(*rsa.PublicKey); !ok || !isRSA || rk.N.BitLen() < 2048 {
			return nil, errors.New("public_key: an RSA key needs at least 2048 bits (prefer ssh-ed25519)")
		}
	default:
		return nil, fmt.Errorf("public_key: key type %s is not accepted (use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa of 2048+ bits)", pub.Type())
	}
	return pub, nil
}

// Issue signs the request's public key for the lease.
func (p *Provider) Issue(ctx context.Context, r provider.Request) (provider.Credential, error) {
	if err := ctx.Err(); err != nil {
		return provider.Credential{}, err
	}
	pub, err := ParsePublicKey(r.PublicKey)
	if err != nil {
		return provider.Credential{}, errkind.New(errkind.InvalidArgument, "ssh credential %s: %v", p.credential, err)
	}
	now := p.now()
	if !r.ExpiresAt.After(now) {
		return provider.Credential{}, p.errorf("the lease has already ended")
	}
	principals, exts, opts, err := p.permissions(r)
	if err != nil {
		return provider.Credential{}, err
	}
	cert := &gossh.Certificate{
		Key:             pub,
		Serial:          Serial(r.LeaseID),
		CertType:        gossh.UserCert,
		KeyId:           "signet lease " + r.LeaseID + " " + r.Subject.String(),
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-backdate).Unix()),
		ValidBefore:     uint64(r.ExpiresAt.Unix()),
		Permissions: gossh.Permissions{
			CriticalOptions: opts,
			Extensions:      map[string]string{},
		},
	}
	for _, e := range exts {
		cert.Extensions[e] = ""
	}
	if err := cert.SignCert(rand.Reader, p.signer); err != nil {
		return provider.Credential{}, p.errorf("sign certificate: %w", err)
	}
	rd := binary.BigEndian.AppendUint64(nil, cert.ValidBefore)
	return provider.Credential{
		Data: map[string]string{
			"certificate": strings.TrimSpace(string(gossh.MarshalAuthorizedKey(cert))),
			"serial":      SerialString(r.LeaseID),
			"principals":  strings.Join(principals, ","),
		},
		RevokeData: rd,
	}, nil
}

// permissions returns the principals, extensions and critical options of
// r's certificate: the configuration, narrowed by r.SSH, with
// source-address bound to the node's addresses when
// source_address_from_node is set.
func (p *Provider) permissions(r provider.Request) (principals, exts []string, opts map[string]string, err error) {
	principals, exts = slices.Clone(p.cfg.Principals), slices.Clone(p.cfg.Extensions)
	opts = make(map[string]string, len(p.cfg.CriticalOptions)+2)
	for k, v := range p.cfg.CriticalOptions {
		opts[k] = v
	}
	if o := r.SSH; o != nil {
		if err := p.CheckOptions(*o); err != nil {
			return nil, nil, nil, errkind.New(errkind.FailedPrecondition, "ssh credential %s: the policy's ssh options: %v", p.credential, err)
		}
		if o.Principals != nil {
			principals = slices.Clone(o.Principals)
		}
		if o.Extensions != nil {
			exts = slices.Clone(o.Extensions)
		}
		if o.ForceCommand != "" {
			opts["force-command"] = o.ForceCommand
		}
	}
	if p.cfg.SourceAddressFromNode {
		src, err := sourceAddress(r.Node, r.NodeAddresses)
		if err != nil {
			return nil, nil, nil, errkind.New(errkind.FailedPrecondition, "ssh credential %s: source_address_from_node: %v", p.credential, err)
		}
		opts["source-address"] = src
	}
	return principals, exts, opts, nil
}

// sourceAddress is the source-address option binding a certificate to the
// node's addresses, each as a /32 or /128.
func sourceAddress(node spiffeid.ID, addrs []netip.Addr) (string, error) {
	if node.IsZero() {
		return "", errors.New("the caller runs on no attested node (its entry's parent is not an agent), so there is no node address to bind the certificate to")
	}
	var out []string
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if !a.IsValid() {
			continue
		}
		if s := netip.PrefixFrom(a, a.BitLen()).String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return "", fmt.Errorf("node %s has no recorded address: the server records the addresses an agent calls its agent API from, "+
			"and this node's agent has not been seen since (is its agent running and connected?)", node)
	}
	return strings.Join(out, ","), nil
}

// CheckOptions reports whether o only narrows the credential's
// configuration: its principals and extensions must be among the
// configured ones, and a force_command must agree with a configured
// critical_options.force-command. Errors name the field and the values
// that would be accepted.
func (p *Provider) CheckOptions(o provider.SSHOptions) error { return p.cfg.checkOptions(o) }

func (c *Config) checkOptions(o provider.SSHOptions) error {
	var errs []error
	if o.Principals != nil && len(o.Principals) == 0 {
		errs = append(errs, fmt.Errorf("principals: empty would allow no login: name some of [%s], or leave principals out", strings.Join(c.Principals, ", ")))
	}
	for i, pr := range o.Principals {
		if !slices.Contains(c.Principals, pr) {
			errs = append(errs, fmt.Errorf("principals[%d]: %q is not a principal of the credential (configured: [%s]); a rule can narrow, never widen",
				i, pr, strings.Join(c.Principals, ", ")))
		}
	}
	for i, e := range o.Extensions {
		if !slices.Contains(c.Extensions, e) {
			errs = append(errs, fmt.Errorf("extensions[%d]: %q is not an extension of the credential (configured: [%s]); a rule can narrow, never widen",
				i, e, strings.Join(c.Extensions, ", ")))
		}
	}
	if fc, ok := c.CriticalOptions["force-command"]; ok && o.ForceCommand != "" && o.ForceCommand != fc {
		errs = append(errs, fmt.Errorf("force_command: %q differs from the credential's critical_options.force-command %q; a rule can narrow, never replace it",
			o.ForceCommand, fc))
	}
	if strings.ContainsAny(o.ForceCommand, "\x00\n") {
		errs = append(errs, errors.New("force_command: contains a NUL or a newline"))
	}
	return errors.Join(errs...)
}

// Revoke adds the lease's certificate serial to the KRL and persists it.
// Revoking twice, or a lease that was never signed, is harmless.
func (p *Provider) Revoke(_ context.Context, ref provider.Ref) error {
	now := p.now()
	until := now.Add(unknownExpiryRetention)
	if len(ref.RevokeData) == 8 {
		until = time.Unix(int64(binary.BigEndian.Uint64(ref.RevokeData)), 0)
	}
	serial := Serial(ref.LeaseID)
	p.mu.Lock()
	defer p.mu.Unlock()
	next := krlState{Version: p.state.Version + 1}
	found := false
	for _, r := range p.state.Revoked {
		if r.Serial == serial {
			found = true
			if until.After(r.Until) {
				r.Until = until
			}
		}
		if r.Until.After(now) {
			next.Revoked = append(next.Revoked, r)
		}
	}
	if !found && until.After(now) {
		next.Revoked = append(next.Revoked, revocation{Serial: serial, Lease: ref.LeaseID, Until: until.UTC()})
	}
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return p.errorf("revoke: %w", err)
	}
	if err := atomicfile.WriteFile(p.krlFile, append(b, '\n'), 0o600); err != nil {
		return p.errorf("revoke: write krl_file: %w", err)
	}
	p.state = next
	p.rebuild()
	return nil
}

// Revoked reports whether the lease's certificate is in the KRL.
func (p *Provider) Revoked(leaseID string) bool {
	serial := Serial(leaseID)
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.ContainsFunc(p.state.Revoked, func(r revocation) bool { return r.Serial == serial })
}

// rebuild re-encodes the KRL from the state; p.mu held (or p not shared).
func (p *Provider) rebuild() {
	serials := make([]uint64, 0, len(p.state.Revoked))
	for _, r := range p.state.Revoked {
		serials = append(serials, r.Serial)
	}
	p.krl = MarshalKRL(p.state.Version, p.now(), "signet "+p.credential, []CARevocations{{CA: p.signer.PublicKey(), Serials: serials}})
}

// KRL returns the current KRL of this CA alone (OpenSSH format).
func (p *Provider) KRL() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.krl
}

// revocations returns the state's version and this CA's revoked serials.
func (p *Provider) revocations() (uint64, CARevocations) {
	p.mu.Lock()
	defer p.mu.Unlock()
	serials := make([]uint64, 0, len(p.state.Revoked))
	for _, r := range p.state.Revoked {
		serials = append(serials, r.Serial)
	}
	return p.state.Version, CARevocations{CA: p.signer.PublicKey(), Serials: serials}
}

func (p *Provider) errorf(format string, args ...any) error {
	return fmt.Errorf("ssh credential %s: "+format, append([]any{p.credential}, args...)...)
}
