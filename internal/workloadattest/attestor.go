// Package workloadattest identifies the local process calling the agent's
// Workload API and turns it into selectors.
//
// Identification starts in the kernel: NewCredentials returns gRPC transport
// credentials for unix sockets that record, when a connection is accepted,
// the caller's PID, UID and GID (SO_PEERCRED) and a pidfd for the calling
// process. Handlers find that Peer with PeerFromContext and hand it to every
// configured Attestor, each of which reports selectors of its own type
// ("unix", "docker", "k8s"). The pidfd lets attestors detect that the process
// died and its PID was reused while they were reading /proc, which would
// otherwise hand one process's identity to another.
package workloadattest

import (
	"context"
	"fmt"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// Attestor derives selectors for a calling process. Implementations must be
// safe for concurrent use. An error fails the caller's request: attestors
// return PermissionDenied-kinded errors when the caller cannot be identified
// (it exited, or lives in a PID namespace the agent cannot see) and
// unkinded errors for their own failures.
type Attestor interface {
	// Name is the selector type the attestor produces, such as "unix".
	Name() string
	// Attest returns the selectors of p. It may block on I/O; ctx bounds it.
	Attest(ctx context.Context, p Peer) ([]model.Selector, error)
}

// Peer is the process at the other end of a Workload API connection, as the
// kernel described it when the connection was accepted.
//
// The zero Peer has no process handle: CheckAlive fails for it, so attestors
// refuse it.
type Peer struct {
	PID int32  // in the agent's PID namespace; 0 when the caller is outside it
	UID uint32 // effective UID when the caller connected
	GID uint32 // effective primary GID when the caller connected

	proc    *pidfd // nil when no pidfd could be obtained
	procErr error  // why proc is nil
	memo    *Memo  // the connection's; nil outside NewCredentials
}

// CheckAlive reports whether the process that opened the connection is still
// running. Attestors call it after reading anything keyed by PID (such as
// /proc/<pid>): if the process exited meanwhile, the PID may already belong to
// another process and what was read must not be trusted. The error is of kind
// PermissionDenied and says what happened.
func (p Peer) CheckAlive() error {
	if p.proc == nil {
		cause := p.procErr
		if cause == nil {
			cause = errNoPidfd
		}
		return errkind.Wrap(errkind.PermissionDenied,
			fmt.Errorf("pid %d: %w", p.PID, cause),
			"cannot verify the calling process: no process handle (pidfd) for it")
	}
	if err := p.proc.alive(); err != nil {
		return errkind.Wrap(errkind.PermissionDenied, fmt.Errorf("pid %d: %w", p.PID, err),
			"calling process exited or its connection closed during attestation")
	}
	return nil
}

// String describes p for logs.
func (p Peer) String() string {
	return fmt.Sprintf("pid=%d uid=%d gid=%d", p.PID, p.UID, p.GID)
}
