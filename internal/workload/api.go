package workload

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/workloadattest"
)

// maxHintLen is the longest hint served (Workload API, Default Identity:
// implementations SHOULD NOT support longer values).
const maxHintLen = 1024

// api implements the generated service for one Serve call. The WIT-SVID
// profile, optional in the specification, stays Unimplemented.
type api struct {
	workloadpb.UnimplementedSpiffeWorkloadAPIServer
	s        *Server
	stopping <-chan struct{} // closed when Serve's context ends
}

var _ workloadpb.SpiffeWorkloadAPIServer = (*api)(nil)

// watch runs a response stream: it sends build's response at once, then
// waits for the source to change and sends the rebuilt response if its
// encoding differs from the last one sent. build gets the Changed channel obtained
// before it runs, for caching. Before each rebuild it checks that the
// process that opened the connection still runs. It returns when build or
// send fails, the caller goes away or the server stops.
//
// Until the first response, a build that fails with Unavailable (the
// caller's SVIDs are not signed yet) waits for the next change, up to
// deadline, instead of failing the stream.
func watch[M proto.Message](ctx context.Context, a *api, p workloadattest.Peer, deadline time.Time, build func(changed <-chan struct{}) (prepared[M], error), send func(prepared[M]) error) error {
	var last prepared[M]
	sent := false
	for checked := false; ; checked = true {
		changed := a.s.src.Changed() // before building: no change is missed
		if checked {
			if err := p.CheckAlive(); err != nil {
				return err
			}
		}
		if !a.s.src.Ready() {
			return errNotReady
		}
		resp, err := build(changed)
		if err != nil && !sent && errkind.Of(err) == errkind.Unavailable {
			ok, werr := a.s.awaitChange(ctx, changed, deadline)
			if werr != nil {
				return werr
			}
			if ok {
				continue // not signed yet: try again at the next change
			}
		}
		if err != nil {
			return err
		}
		if !sent || !resp.same(last) {
			if err := send(resp); err != nil {
				return err
			}
			last, sent = resp, true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-a.stopping:
			return errStopping
		}
	}
}

// bundleSet indexes bundles by trust domain, keeping the first bundle of a
// trust domain: the own bundle comes first and a federated bundle can never
// replace it.
type bundleSet struct {
	list []*spiffebundle.Bundle
	byTD map[spiffeid.TrustDomain]*spiffebundle.Bundle
}

func newBundleSet(bundles []*spiffebundle.Bundle) bundleSet {
	bs := bundleSet{byTD: make(map[spiffeid.TrustDomain]*spiffebundle.Bundle, len(bundles))}
	for _, b := range bundles {
		if b == nil {
			continue
		}
		if _, dup := bs.byTD[b.TrustDomain()]; dup {
			continue
		}
		bs.byTD[b.TrustDomain()] = b
		bs.list = append(bs.list, b)
	}
	return bs
}

// own returns the server's own trust domain bundle, or nil if there is none.
func (bs bundleSet) own() *spiffebundle.Bundle {
	if len(bs.list) == 0 {
		return nil
	}
	return bs.list[0]
}

// concatDER returns the certificates' DER encodings back to back, the wire
// form of chains and X.509 bundles in the Workload API.
func concatDER(certs []*x509.Certificate) []byte {
	n := 0
	for _, c := range certs {
		n += len(c.Raw)
	}
	out := make([]byte, 0, n)
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}
