package agent

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/trace"

	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/workloadattest"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultSyncInterval = 5 * time.Second
	DefaultMaxBackoff   = time.Minute
	DefaultRPCTimeout   = 30 * time.Second
	// DefaultAttestTimeout bounds how long a node without an SVID keeps
	// trying to reach the server before the agent gives up.
	DefaultAttestTimeout = time.Minute
)

// maxSocketPath is the longest unix socket path the kernel accepts
// (sizeof(sockaddr_un.sun_path) minus the terminating NUL on Linux).
const maxSocketPath = 107

// Config configures an Agent. Fields marked required have no default; New
// reports every problem at once, each prefixed with the field's name.
type Config struct {
	// ServerAddress is the server's agent API, host:port, or a
	// comma-separated list of the agent APIs of server replicas, tried in
	// order (a DNS name stands for each of its addresses). Required.
	ServerAddress string
	// TrustBundle holds the bootstrap CA certificates the server's TLS
	// certificate is checked against until the first synced bundle replaces
	// them. Required unless DataDir already holds a bundle.json from an
	// earlier run, which is preferred over it.
	TrustBundle []*x509.Certificate
	// TrustDomain is the trust domain's name, such as example.org. When
	// empty it is derived from the spiffe:// URI SAN of the TrustBundle
	// certificates (which must agree) or, failing that, from the persisted
	// agent SVID.
	TrustDomain string
	// JoinToken is presented once when DataDir holds no valid agent SVID.
	// It is never logged.
	JoinToken string
	// NodeAttestor, when set, attests the node instead of JoinToken; set at
	// most one of the two.
	NodeAttestor nodeattest.Attestor
	// DataDir holds the agent's state (required); it is created 0700.
	DataDir string
	// SocketPath is the unix socket the Workload API listens on (required).
	SocketPath string
	// SyncInterval is how often the agent syncs with the server
	// (default DefaultSyncInterval); each wait is jittered by ±10%.
	SyncInterval time.Duration
	// MaxBackoff caps the delay between attempts while the server is
	// unreachable (default DefaultMaxBackoff).
	MaxBackoff time.Duration
	// RPCTimeout bounds each call to the server (default DefaultRPCTimeout).
	RPCTimeout time.Duration
	// SyncPageSize is how many entries the agent asks for per Sync page
	// (default DefaultSyncPageSize; the server caps it).
	SyncPageSize int
	// AttestTimeout bounds the retries of the first attestation while the
	// server is unreachable (default DefaultAttestTimeout); then Run fails.
	AttestTimeout time.Duration
	// Attestors identify Workload API callers; they are passed to the
	// Workload API server unchanged (default: the unix attestor with its
	// default config).
	Attestors []workloadattest.Attestor
	// Logger receives the agent's logs (default: discard).
	Logger *slog.Logger
	// Clock is the time source of certificate lifetimes, renewal, sync and
	// retry schedules (default: the system clock).
	Clock Clock
	// Registerer registers the agent's metrics; nil registers none.
	Registerer prometheus.Registerer
	// TracerProvider, when set, gives every RPC on the Workload API socket
	// (Workload API, SDS, AgentInfo, health) a span; nil: no tracing.
	TracerProvider trace.TracerProvider
	// Version is the agent's build version, reported to local workloads
	// by the AgentInfo service.
	Version string
	// IdleProcs, when positive, is the GOMAXPROCS the agent runs with
	// once it has signed no SVID for DefaultIdleProcsGrace; signing brings
	// back the Go runtime's default first (see procs). GOMAXPROCS is
	// process-wide: set it only in a process that is the agent. Zero
	// leaves GOMAXPROCS alone.
	IdleProcs int
}

// withDefaults returns c with zero fields defaulted.
func (c Config) withDefaults() Config {
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.AttestTimeout == 0 {
		c.AttestTimeout = DefaultAttestTimeout
	}
	if c.SyncPageSize <= 0 {
		c.SyncPageSize = DefaultSyncPageSize
	}
	if c.RPCTimeout == 0 {
		c.RPCTimeout = DefaultRPCTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	return c
}

// validate reports every problem of c, each naming its field. It does not
// look at the data dir.
func (c Config) validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.IdleProcs < 0 {
		add("IdleProcs", "%d: want a number of Ps, or 0 to leave GOMAXPROCS alone", c.IdleProcs)
	}
	if _, err := ParseServerAddresses(c.ServerAddress); err != nil {
		add("ServerAddress", "%v", err)
	}
	for i, cert := range c.TrustBundle {
		if cert == nil {
			add(fmt.Sprintf("TrustBundle[%d]", i), "nil certificate")
		}
	}
	if c.TrustDomain != "" {
		if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
			add("TrustDomain", "%q: %v", c.TrustDomain, err)
		}
	}
	if c.JoinToken != "" {
		if err := jointoken.Check(c.JoinToken); err != nil {
			add("JoinToken", "%v", err)
		}
		if c.NodeAttestor != nil {
			add("NodeAttestor", "set either JoinToken or NodeAttestor, not both")
		}
	}
	if c.NodeAttestor != nil {
		if err := nodeattest.ValidName(c.NodeAttestor.Name()); err != nil {
			add("NodeAttestor", "%v", err)
		}
	}
	if c.DataDir == "" {
		add("DataDir", "required: a directory for the agent's state")
	}
	if c.SocketPath == "" {
		add("SocketPath", "required: the Workload API's unix socket path")
	} else if len(c.SocketPath) > maxSocketPath {
		add("SocketPath", "%q is %d bytes, over the %d-byte limit of unix socket paths", c.SocketPath, len(c.SocketPath), maxSocketPath)
	}
	if c.SyncInterval < 0 {
		add("SyncInterval", "%s is negative", c.SyncInterval)
	}
	if c.MaxBackoff < 0 {
		add("MaxBackoff", "%s is negative", c.MaxBackoff)
	}
	if c.RPCTimeout < 0 {
		add("RPCTimeout", "%s is negative", c.RPCTimeout)
	}
	for i, a := range c.Attestors {
		if a == nil {
			add(fmt.Sprintf("Attestors[%d]", i), "nil attestor")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid agent config: %w", errors.Join(errs...))
	}
	return nil
}

// trustDomainFromCerts derives the trust domain from the spiffe:// URI SANs
// of CA certificates. Certificates without one are skipped; certificates
// naming different trust domains make the answer ambiguous.
func trustDomainFromCerts(certs []*x509.Certificate) (spiffeid.TrustDomain, error) {
	var found spiffeid.TrustDomain
	for i, c := range certs {
		for _, u := range c.URIs {
			if u.Scheme != "spiffe" {
				continue
			}
			td, err := spiffeid.TrustDomainFromURI(u)
			if err != nil {
				return spiffeid.TrustDomain{}, fmt.Errorf("TrustBundle[%d]: URI SAN %q: %w", i, u, err)
			}
			if !found.IsZero() && found != td {
				return spiffeid.TrustDomain{}, fmt.Errorf("TrustBundle names several trust domains (%s, %s): set TrustDomain", found, td)
			}
			found = td
		}
	}
	if found.IsZero() {
		return spiffeid.TrustDomain{}, errors.New("TrustBundle certificates carry no spiffe:// URI SAN: set TrustDomain")
	}
	return found, nil
}
