// Package systemd is the "systemd" workload attestor: it describes a caller
// by the systemd unit it runs in.
//
// Selectors, of type "systemd":
//
//	id:<unit>               the unit, such as backup.service, from the caller's cgroup
//	fragment_path:<path>    the unit file, such as /etc/systemd/system/backup.service,
//	                        asked of systemd over D-Bus when the system bus is there
//
// The unit comes from /proc/<pid>/cgroup without D-Bus: it is the first
// unit on the path of systemd's hierarchy, the one the system manager runs
// (package cgroup explains why not a deeper one). After reading it the
// attestor checks through the connection's pidfd that the caller is still
// the process that connected. Without a system bus, or for a unit without a
// unit file (a transient scope), fragment_path is omitted and a debug line
// says why; omitting a selector never grants more.
package systemd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workloadattest"
	"github.com/signet-id/signet/internal/workloadattest/cgroup"
)

// Name is the attestor's name and selector type.
const Name = "systemd"

const (
	fragmentTTL     = 5 * time.Second  // a daemon-reload may move a unit file
	reconnectPeriod = 30 * time.Second // between attempts to reach the bus
	callTimeout     = 2 * time.Second
	maxCached       = 4096
)

// Log keys.
const (
	logKeyPID  = "pid"
	logKeyUnit = "unit"
	logKeyErr  = "err"
)

// Config configures the attestor (workload_attestors.systemd: {}); it has
// no settings.
type Config struct{}

// Attestor is the systemd workload attestor. It is safe for concurrent use.
type Attestor struct {
	log      *slog.Logger
	procRoot string
	now      func() time.Time
	// connect opens the system bus (tests: a private bus).
	connect func() (*dbus.Conn, error)

	mu        sync.Mutex
	conn      *dbus.Conn
	lastTry   time.Time
	fragments map[string]fragment
}

type fragment struct {
	path    string // "" when the unit has none
	expires time.Time
}

var _ workloadattest.Attestor = (*Attestor)(nil)

// New returns an attestor. It connects to the system bus on first use. A
// nil log discards log lines.
func New(_ Config, log *slog.Logger) (*Attestor, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Attestor{
		log:       log.With("attestor", Name),
		procRoot:  "/proc",
		now:       time.Now,
		connect:   func() (*dbus.Conn, error) { return dbus.ConnectSystemBus() },
		fragments: make(map[string]fragment),
	}, nil
}

// Name returns "systemd".
func (a *Attestor) Name() string { return Name }

// Close closes the bus connection, if one is open.
func (a *Attestor) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil {
		return nil
	}
	err := a.conn.Close()
	a.conn = nil
	return err
}

// Attest returns the systemd selectors of p, none when it runs in no unit.
func (a *Attestor) Attest(ctx context.Context, p workloadattest.Peer) ([]model.Selector, error) {
	if p.PID <= 0 {
		return nil, errkind.New(errkind.PermissionDenied,
			"cannot attest the caller: it runs in a PID namespace the agent cannot see; run the agent in the host PID namespace")
	}
	lines, err := cgroup.Read(a.procRoot, p.PID)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return nil, errkind.Wrap(errkind.PermissionDenied, fmt.Errorf("read cgroup: %w", err),
				fmt.Sprintf("cannot attest the caller: process %d exited", p.PID))
		}
		return nil, fmt.Errorf("attest pid %d: read cgroup: %w", p.PID, err)
	}
	unit, unitErr := cgroup.SystemdUnit(lines)
	if err := p.CheckAlive(); err != nil {
		return nil, err
	}
	if unitErr != nil {
		a.log.Debug("no systemd selectors", logKeyPID, p.PID, logKeyErr, unitErr)
		return nil, nil
	}
	if unit == "" {
		return nil, nil
	}
	sels := []model.Selector{{Type: Name, Value: "id:" + unit}}
	if path := a.fragmentPath(ctx, unit); path != "" {
		sels = append(sels, model.Selector{Type: Name, Value: "fragment_path:" + path})
	}
	out := sels[:0]
	for _, s := range sels {
		if err := s.Validate(); err != nil {
			a.log.Debug("selector dropped", logKeyPID, p.PID, logKeyErr, err)
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// fragmentPath asks systemd for the unit's file, "" when it has none or
// the bus cannot be asked.
func (a *Attestor) fragmentPath(ctx context.Context, unit string) string {
	now := a.now()
	a.mu.Lock()
	if f, ok := a.fragments[unit]; ok && now.Before(f.expires) {
		a.mu.Unlock()
		return f.path
	}
	conn := a.conn
	if conn == nil && now.Sub(a.lastTry) >= reconnectPeriod {
		a.lastTry = now
		c, err := a.connect()
		if err != nil {
			a.log.Debug("no system bus; fragment_path selectors omitted", logKeyErr, err)
		} else {
			a.conn, conn = c, c
		}
	}
	a.mu.Unlock()
	if conn == nil {
		return ""
	}
	path, err := queryFragment(ctx, conn, unit)
	if err != nil {
		a.log.Debug("cannot ask systemd for the unit file; fragment_path omitted", logKeyUnit, unit, logKeyErr, err)
		if !conn.Connected() {
			a.mu.Lock()
			if a.conn == conn {
				a.conn = nil
			}
			a.mu.Unlock()
		}
		return ""
	}
	a.mu.Lock()
	if len(a.fragments) >= maxCached {
		clear(a.fragments)
	}
	a.fragments[unit] = fragment{path: path, expires: now.Add(fragmentTTL)}
	a.mu.Unlock()
	return path
}

// queryFragment asks org.freedesktop.systemd1 for the unit's object and
// reads its FragmentPath property.
func queryFragment(ctx context.Context, conn *dbus.Conn, unit string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var obj dbus.ObjectPath
	err := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").
		CallWithContext(ctx, "org.freedesktop.systemd1.Manager.GetUnit", 0, unit).Store(&obj)
	if err != nil {
		return "", fmt.Errorf("GetUnit(%s): %w", unit, err)
	}
	var v dbus.Variant
	err = conn.Object("org.freedesktop.systemd1", obj).
		CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, "org.freedesktop.systemd1.Unit", "FragmentPath").Store(&v)
	if err != nil {
		return "", fmt.Errorf("FragmentPath of %s: %w", unit, err)
	}
	path, ok := v.Value().(string)
	if !ok {
		return "", fmt.Errorf("FragmentPath of %s: %s, want a string", unit, v.Signature())
	}
	return path, nil
}
