// Package cloudtest holds test doubles for the cloud node attestation
// methods: fake metadata services and key endpoints that speak the real
// wire formats (AWS IMDSv2, the GCE metadata server, Azure IMDS, JWKS) on
// 127.0.0.1, signing with keys generated at test time, and an in-memory
// node lookup that records admitted nodes, as the server's store does.
//
// It is for tests only: nothing outside _test files imports it.
package cloudtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
)

var keys struct {
	sync.Mutex
	m map[string]*rsa.PrivateKey
}

// Key returns the RSA-2048 key called name, generated on first use and then
// shared by every test of the process (generating one takes a while under
// the race detector). Distinct names give distinct keys.
func Key(t testing.TB, name string) *rsa.PrivateKey {
	t.Helper()
	keys.Lock()
	defer keys.Unlock()
	if k, ok := keys.m[name]; ok {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if keys.m == nil {
		keys.m = map[string]*rsa.PrivateKey{}
	}
	keys.m[name] = k
	return k
}

// RandomHex returns n random bytes in hex.
func RandomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Nodes is an in-memory node lookup: GetNode finds the nodes admitted so
// far and reports others as NotFound, like the server's store. The zero
// value is empty and ready; it is safe for concurrent use.
type Nodes struct {
	mu sync.Mutex
	m  map[spiffeid.ID]model.Node
}

// GetNode returns the node admitted as id, or a NotFound error.
func (n *Nodes) GetNode(ctx context.Context, id spiffeid.ID) (model.Node, error) {
	if err := ctx.Err(); err != nil {
		return model.Node{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	node, ok := n.m[id]
	if !ok {
		return model.Node{}, errkind.New(errkind.NotFound, "node %s not found", id)
	}
	return node, nil
}

// Admit records a node, as the server does after a successful attestation.
func (n *Nodes) Admit(id spiffeid.ID, sels []model.Selector) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[spiffeid.ID]model.Node{}
	}
	n.m[id] = model.Node{SPIFFEID: id, Selectors: sels}
}

// Evict forgets a node, as `signet node evict` does.
func (n *Nodes) Evict(id spiffeid.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.m, id)
}

// Admitting wraps v so that each node it admits is recorded in nodes, as the
// server's attestation does, so trust-on-first-use methods see their own
// earlier admissions.
func Admitting(v nodeattest.Verifier, nodes *Nodes) nodeattest.Verifier {
	return &admitting{Verifier: v, nodes: nodes}
}

type admitting struct {
	nodeattest.Verifier
	nodes *Nodes
}

func (a *admitting) Attest(ctx context.Context, p []byte, c nodeattest.Challenger) (nodeattest.Result, error) {
	res, err := a.Verifier.Attest(ctx, p, c)
	if err == nil {
		a.nodes.Admit(res.AgentID, res.Selectors)
	}
	return res, err
}
