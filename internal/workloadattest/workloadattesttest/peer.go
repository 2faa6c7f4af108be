//go:build linux

// Package workloadattesttest gives workload attestor tests real callers:
// Peers obtained through the kernel exactly as the Workload API obtains
// them.
package workloadattesttest

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/signet-id/signet/internal/workloadattest"
)

// SelfPeer connects to a fresh unix socket from this process and returns
// the Peer the server side's peer credentials describe: this process, with
// a live pidfd. The connection is closed at the end of the test, which makes
// CheckAlive fail from then on.
func SelfPeer(t testing.TB) workloadattest.Peer {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "peer.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc, ai, err := workloadattest.NewCredentials().ServerHandshake(server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.Close()
		_ = sc.Close()
	})
	return ai.(workloadattest.AuthInfo).Peer
}
