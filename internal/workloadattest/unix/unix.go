//go:build linux

package unix

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"

	sysunix "golang.org/x/sys/unix"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workloadattest"
)

// Name is the attestor's name and selector type.
const Name = "unix"

// DefaultWorkloadSizeLimit is the largest executable hashed by default.
const DefaultWorkloadSizeLimit = 256 << 20

// Log keys.
const (
	logKeyPID   = "pid"
	logKeyPath  = "path"
	logKeySize  = "size"
	logKeyLimit = "limit"
	logKeyErr   = "err"
)

// Config configures the attestor. Start from DefaultConfig: the zero Config
// turns path discovery off.
type Config struct {
	// DiscoverWorkloadPath adds the path and sha256 selectors of the
	// caller's executable. Reading another user's /proc/<pid>/exe needs the
	// agent to run as root (or with CAP_SYS_PTRACE).
	DiscoverWorkloadPath bool `yaml:"discover_workload_path"`
	// WorkloadSizeLimit is the largest executable, in bytes, that is hashed;
	// larger ones get no sha256 selector. Zero means
	// DefaultWorkloadSizeLimit.
	WorkloadSizeLimit int64 `yaml:"workload_size_limit"`
}

// Validate reports a negative size limit.
func (c Config) Validate() error {
	if c.WorkloadSizeLimit < 0 {
		return fmt.Errorf("workload_size_limit: %d is negative: use a size in bytes, or 0 for the default", c.WorkloadSizeLimit)
	}
	return nil
}

// DefaultConfig returns the defaults: path discovery on, a 256 MiB hashing
// limit.
func DefaultConfig() Config {
	return Config{DiscoverWorkloadPath: true, WorkloadSizeLimit: DefaultWorkloadSizeLimit}
}

// Attestor is the unix workload attestor. It is safe for concurrent use.
type Attestor struct {
	cfg      Config
	log      *slog.Logger
	procRoot string
	hashes   hashCache
	users    *nameCache
	groups   *nameCache
}

var _ workloadattest.Attestor = (*Attestor)(nil)

// New returns an attestor. A nil log discards log lines.
func New(cfg Config, log *slog.Logger) (*Attestor, error) {
	if cfg.WorkloadSizeLimit < 0 {
		return nil, errkind.New(errkind.InvalidArgument,
			"unix attestor: workload_size_limit %d is negative: use a byte count such as 268435456, or 0 for the default",
			cfg.WorkloadSizeLimit)
	}
	if cfg.WorkloadSizeLimit == 0 {
		cfg.WorkloadSizeLimit = DefaultWorkloadSizeLimit
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Attestor{
		cfg:      cfg,
		log:      log.With("attestor", Name),
		procRoot: "/proc",
		users:    newUserNames(),
		groups:   newGroupNames(),
	}, nil
}

// Name returns "unix".
func (a *Attestor) Name() string { return Name }

// Attest returns the unix selectors of p. It fails with PermissionDenied when
// the caller cannot be identified: it is outside the agent's PID namespace,
// it exited, or it exited while being attested.
func (a *Attestor) Attest(ctx context.Context, p workloadattest.Peer) ([]model.Selector, error) {
	if p.PID <= 0 {
		return nil, errkind.New(errkind.PermissionDenied,
			"cannot attest the caller: it runs in a PID namespace the agent cannot see; run the agent in the host PID namespace")
	}
	dir := filepath.Join(a.procRoot, strconv.FormatInt(int64(p.PID), 10))
	buf := statusBufs.Get().(*[]byte)
	data, err := readProcFile(filepath.Join(dir, "status"), (*buf)[:0])
	if err != nil {
		statusBufs.Put(buf)
		return nil, procError(p, "read status", err)
	}
	st, err := parseStatus(data)
	*buf = data[:0]
	statusBufs.Put(buf)
	if err != nil {
		return nil, fmt.Errorf("attest pid %d: %w", p.PID, err)
	}
	if st.State == 'Z' || st.State == 'X' {
		return nil, errkind.New(errkind.PermissionDenied, "cannot attest the caller: process %d exited", p.PID)
	}

	sels := make([]model.Selector, 0, 8+2*len(st.Groups))
	add := func(format string, args ...any) {
		sels = append(sels, model.Selector{Type: Name, Value: fmt.Sprintf(format, args...)})
	}
	add("uid:%d", p.UID)
	add("gid:%d", p.GID)
	if name := a.users.name(p.UID); name != "" {
		add("user:%s", name)
	}
	if name := a.groups.name(p.GID); name != "" {
		add("group:%s", name)
	}
	for _, gid := range st.Groups {
		add("supplementary_gid:%d", gid)
		if name := a.groups.name(gid); name != "" {
			add("supplementary_group:%s", name)
		}
	}
	if a.cfg.DiscoverWorkloadPath {
		path, sum, err := a.executable(ctx, p, dir)
		switch {
		case err != nil && errkind.Is(err, errkind.PermissionDenied):
			return nil, err
		case err != nil:
			if ctx.Err() != nil {
				return nil, fmt.Errorf("attest pid %d: %w", p.PID, ctx.Err())
			}
			// Omitting selectors never grants more (entries match on
			// subsets), so the caller keeps what uid/gid give it.
			a.log.Warn("cannot read the caller's executable; path and sha256 selectors omitted",
				logKeyPID, p.PID, logKeyErr, err)
		default:
			add("path:%s", path)
			if sum != "" {
				add("sha256:%s", sum)
			}
		}
	}
	// Everything above was read by PID: make sure it was still our caller.
	if err := p.CheckAlive(); err != nil {
		return nil, err
	}
	return validSelectors(a.log, p, sels), nil
}

// executable returns the caller's executable path and, within the size
// limit, its SHA-256 (empty above it). The hash is of the file the process
// runs, opened through /proc/<pid>/exe, not of whatever the path names now.
func (a *Attestor) executable(ctx context.Context, p workloadattest.Peer, dir string) (path, sum string, err error) {
	exe := filepath.Join(dir, "exe")
	path, err = os.Readlink(exe)
	if err != nil {
		return "", "", procError(p, "read exe link", err)
	}
	// stat follows the magic link to the file the process runs, even if
	// its path was since replaced or removed.
	var st syscall.Stat_t
	if err := syscall.Stat(exe, &st); err != nil {
		return "", "", procError(p, "stat exe", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return "", "", fmt.Errorf("stat %s: not a regular file", path)
	}
	open := func() (*os.File, error) {
		f, err := os.Open(exe)
		if err != nil {
			return nil, procError(p, "open exe", err)
		}
		return f, nil
	}
	sum, fresh, err := a.hashes.sum(ctx, &st, open, a.cfg.WorkloadSizeLimit)
	if errors.Is(err, errTooLarge) {
		if fresh {
			a.log.Info("executable too large to hash; no sha256 selector",
				logKeyPath, path, logKeySize, st.Size, logKeyLimit, a.cfg.WorkloadSizeLimit)
		}
		return path, "", nil
	}
	if err != nil {
		return "", "", err
	}
	return path, sum, nil
}

// procError turns a failure to read /proc/<pid>/... into an attestation
// error: the caller exited (PermissionDenied) or the agent cannot read it.
func procError(p workloadattest.Peer, op string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return errkind.Wrap(errkind.PermissionDenied, fmt.Errorf("%s: %w", op, err),
			fmt.Sprintf("cannot attest the caller: process %d exited", p.PID))
	}
	return fmt.Errorf("attest pid %d: %s: %w", p.PID, op, err)
}

// validSelectors drops selectors the store would refuse (a path longer than
// 1024 bytes, say): such a selector could never match an entry.
func validSelectors(log *slog.Logger, p workloadattest.Peer, sels []model.Selector) []model.Selector {
	out := sels[:0]
	for _, s := range sels {
		if err := s.Validate(); err != nil {
			log.Debug("selector dropped", logKeyPID, p.PID, logKeyErr, err)
			continue
		}
		out = append(out, s)
	}
	return out
}

// maxStatusSize bounds what readProcFile reads: a status file with the
// maximum number of groups is about 700 KiB.
const maxStatusSize = 1 << 20

// statusBufs holds buffers for /proc/<pid>/status, which is read on every
// attestation.
var statusBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readProcFile reads a /proc file into buf with plain system calls: no
// stat, no poller registration, one read for a typical status file.
func readProcFile(path string, buf []byte) ([]byte, error) {
	fd, err := sysunix.Open(path, sysunix.O_RDONLY|sysunix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer sysunix.Close(fd)
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= maxStatusSize {
				return nil, fmt.Errorf("read %s: larger than %d bytes", path, maxStatusSize)
			}
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := sysunix.Read(fd, buf[len(buf):cap(buf)])
		if errors.Is(err, sysunix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}
