//go:build !linux

package workloadattest

import (
	"errors"
	"net"
)

// readPeer fails: peer credentials with process handles need Linux.
func readPeer(net.Conn) (Peer, error) {
	return Peer{}, errors.New("peercred handshake: peer credentials are supported on Linux only")
}

// pidfd is never created off Linux.
type pidfd struct{}

func (*pidfd) alive() error { return errNoPidfd }
func (*pidfd) close()       {}
