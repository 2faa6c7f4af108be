package tokenapi

import (
	"crypto/x509"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// maxVerifiedPeers bounds the verified-peer cache; when it is full the
// cache starts over. A parsed certificate is a few KiB: the cache holds
// at most a few MiB.
const maxVerifiedPeers = 1024

// peerCache remembers the client certificates verified as X509-SVIDs, so
// that the requests of one keep-alive connection (whose TLS state holds
// the same parsed *x509.Certificate values) verify the chain's signatures
// once. A remembered verification stands for a request only while it
// would give the same answer: the trust domain's bundle holds the same
// authorities (the same parsed certificates, in the same order) it was
// verified against, and the request's time is inside the validity of
// every certificate of the chain it built. Anything else verifies again.
// The zero value is an empty cache, safe for concurrent use.
type peerCache struct {
	mu    sync.Mutex
	peers map[*x509.Certificate]verifiedPeer
}

// verifiedPeer is one verification: the SVID's ID, the authorities it was
// verified against and the validity common to its chain.
type verifiedPeer struct {
	id        spiffeid.ID
	roots     []*x509.Certificate
	notBefore time.Time
	notAfter  time.Time
}

// verify is x509svid.Verify(certs, source, at now), remembered.
func (c *peerCache) verify(certs []*x509.Certificate, source x509bundle.Source, now time.Time) (spiffeid.ID, error) {
	leaf := certs[0]
	c.mu.Lock()
	v, ok := c.peers[leaf]
	c.mu.Unlock()
	if ok && !now.Before(v.notBefore) && !now.After(v.notAfter) {
		if b, err := source.GetX509BundleForTrustDomain(v.id.TrustDomain()); err == nil && slices.Equal(b.X509Authorities(), v.roots) {
			return v.id, nil
		}
	}
	id, chains, err := x509svid.Verify(certs, source, x509svid.WithTime(now))
	if err != nil {
		return spiffeid.ID{}, err
	}
	b, err := source.GetX509BundleForTrustDomain(id.TrustDomain())
	if err != nil || len(chains) == 0 {
		return id, nil // verified; not remembered
	}
	v = verifiedPeer{id: id, roots: b.X509Authorities()}
	for i, cert := range chains[0] {
		if i == 0 || cert.NotBefore.After(v.notBefore) {
			v.notBefore = cert.NotBefore
		}
		if i == 0 || cert.NotAfter.Before(v.notAfter) {
			v.notAfter = cert.NotAfter
		}
	}
	c.mu.Lock()
	if c.peers == nil || len(c.peers) >= maxVerifiedPeers {
		c.peers = map[*x509.Certificate]verifiedPeer{}
	}
	c.peers[leaf] = v
	c.mu.Unlock()
	return id, nil
}
