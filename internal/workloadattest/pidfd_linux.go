//go:build linux

package workloadattest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// readPeer asks the kernel for the credentials and a pidfd of c's peer. It
// works on the socket through SyscallConn, without duplicating its fd.
func readPeer(c net.Conn) (Peer, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Peer{}, fmt.Errorf("peercred handshake: %T: %w", c, errNotUnixConn)
	}
	if la := c.LocalAddr(); la == nil || la.Network() != "unix" {
		return Peer{}, fmt.Errorf("peercred handshake: %T: %w", c, errNotUnixConn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("peercred handshake: %w", err)
	}
	var (
		cred           *unix.Ucred
		credErr, fdErr error
		fd             = -1
	)
	ctlErr := raw.Control(func(sfd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(sfd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr != nil {
			return
		}
		// SO_PEERPIDFD (Linux 6.5+) names exactly the process that
		// connected, with no window for PID reuse.
		fd, fdErr = unix.GetsockoptInt(int(sfd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
	})
	if ctlErr != nil {
		return Peer{}, fmt.Errorf("peercred handshake: %w", ctlErr)
	}
	if credErr != nil {
		return Peer{}, fmt.Errorf("peercred handshake: read SO_PEERCRED: %w", credErr)
	}
	p := Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
	if errors.Is(fdErr, unix.ENOPROTOOPT) && cred.Pid > 0 {
		// Older kernel: open the PID now. A process that exited and whose
		// PID was reused since it connected is not detected here; the
		// window is the time between connect and accept.
		fd, fdErr = unix.PidfdOpen(int(cred.Pid), 0)
	}
	switch {
	case cred.Pid <= 0:
		if fdErr == nil {
			_ = unix.Close(fd)
		}
		p.procErr = errors.New("the caller is in a PID namespace the agent cannot see (kernel reported pid 0)")
	case errors.Is(fdErr, unix.ESRCH) || errors.Is(fdErr, unix.EINVAL):
		p.procErr = fmt.Errorf("open pidfd: %w", errExited)
	case fdErr != nil:
		p.procErr = fmt.Errorf("open pidfd: %w", fdErr)
	default:
		p.proc = &pidfd{fd: fd}
	}
	return p, nil
}

// pidfd is a process handle shared by a connection and the RPCs running on
// it. close waits for in-flight checks so that a check never runs on a
// descriptor number the process has since reused for something else.
type pidfd struct {
	mu sync.RWMutex
	fd int // -1 once closed
}

// alive reports whether the process is still running. A zombie (exited, not
// yet reaped) counts as exited.
func (p *pidfd) alive() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.fd < 0 {
		return errConnClosed
	}
	// A pidfd polls readable once the process has exited, zombie or reaped
	// alike: one system call answers, and this check runs on every RPC.
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll pidfd: %w", err)
		}
		if n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0 {
			return errExited
		}
		return nil
	}
}

func (p *pidfd) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd >= 0 {
		_ = unix.Close(p.fd)
		p.fd = -1
	}
}
