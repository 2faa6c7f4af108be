package workload

import (
	"context"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"google.golang.org/grpc"

	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workloadattest"
)

// Service is another gRPC service served on the Workload API socket beside
// the Workload API, such as Envoy SDS (package workload/sds). Its callers
// are identified exactly as Workload API callers are, its RPCs pass through
// the same interceptors (errkind mapping, metrics, failure logs), and only
// the Workload API's security header is not required of them: clients of
// such services (Envoy) do not send it.
type Service interface {
	// ServiceName is the full gRPC service name, such as
	// "envoy.service.secret.v3.SecretDiscoveryService".
	ServiceName() string
	// Register registers the service's implementation with r. Handlers
	// identify callers and learn of shutdown through h.
	Register(r grpc.ServiceRegistrar, h Host)
}

// Host is what a Service's handlers get from the server they run in. Its
// zero value is not usable; Serve passes one to every Service.
type Host struct {
	s        *Server
	stopping <-chan struct{}
}

// Attest identifies the caller of the RPC in ctx: its peer and the union of
// every attestor's selectors, in canonical order.
func (h Host) Attest(ctx context.Context) (workloadattest.Peer, []model.Selector, error) {
	return h.s.attest(ctx)
}

// AwaitReady returns once the Source has synced, waiting for it up to the
// server's Config.ReadyWait; ErrNotReady after that.
func (h Host) AwaitReady(ctx context.Context) error { return h.s.awaitReady(ctx, h.s.readyDeadline()) }

// Source is the server's Source.
func (h Host) Source() Source { return h.s.src }

// NoIdentity is the error for a caller with selectors sels who gets no SVID
// (PermissionDenied, or the Source's own explanation).
func (h Host) NoIdentity(sels []model.Selector) error { return h.s.noIdentity(sels) }

// BundlesFor returns the bundles a caller with selectors sels may see: the
// own trust domain's first, then those its entries federate with (see
// CallerBundler).
func (h Host) BundlesFor(sels []model.Selector) []*spiffebundle.Bundle { return h.s.bundlesFor(sels) }

// Stopping is closed when the server stops; streams then end with
// ErrStopping so that clients reconnect.
func (h Host) Stopping() <-chan struct{} { return h.stopping }

// ErrNotReady and ErrStopping are the Unavailable errors of a server whose
// Source has not synced yet and of a server shutting down.
var (
	ErrNotReady = errNotReady
	ErrStopping = errStopping
)

// headerExempt reports whether fullMethod belongs to one of the extra
// services, whose callers need not send the security header.
func (s *Server) headerExempt(fullMethod string) bool {
	for _, prefix := range s.exemptPrefixes {
		if strings.HasPrefix(fullMethod, prefix) {
			return true
		}
	}
	return false
}
