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
	"strings"
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
	// selfDepth is the agent's own NSpid depth (0: unknown, compare the
	// namespace links instead); selfNS its /proc/self/ns/pid link.
	selfDepth int
	selfNS    string
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
	a := &Attestor{
		cfg:      cfg,
		log:      log.With("attestor", Name),
		procRoot: "/proc",
		users:    newUserNames(),
		groups:   newGroupNames(),
	}
	if err := a.readSelf(); err != nil {
		return nil, fmt.Errorf("unix attestor: %w", err)
	}
	return a, nil
}

// readSelf records the agent's own PID namespace, against which callers
// are told apart from containerized ones.
func (a *Attestor) readSelf() error {
	data, err := readProcFile(filepath.Join(a.procRoot, "self", "status"), make([]byte, 0, 4096))
	if err != nil {
		return fmt.Errorf("read the agent's own status: %w", err)
	}
	st, err := parseStatus(data)
	if err != nil {
		return fmt.Errorf("the agent's own status: %w", err)
	}
	a.selfDepth = st.NSpidDepth
	if a.selfNS, err = os.Readlink(filepath.Join(a.procRoot, "self", "ns", "pid")); err != nil && a.selfDepth == 0 {
		return fmt.Errorf("read the agent's PID namespace: %w", err)
	}
	return nil
}

// containerized reports whether the caller runs in another PID namespace
// than the agent. The caller is visible in the agent's /proc, so its
// namespace is the agent's or one below it: the NSpid depths tell them
// apart without needing ptrace rights over the caller, which reading its
// ns/pid link would. Kernels before 4.1 have no NSpid line; then the links
// are compared, and a caller whose link cannot be read is refused.
func (a *Attestor) containerized(p workloadattest.Peer, dir string, st procStatus) (bool, error) {
	if a.selfDepth > 0 && st.NSpidDepth > 0 {
		return st.NSpidDepth != a.selfDepth, nil
	}
	ns, err := os.Readlink(filepath.Join(dir, "ns", "pid"))
	if err != nil {
		return false, procError(p, "read PID namespace", err)
	}
	return ns != a.selfNS, nil
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
	inContainer, err := a.containerized(p, dir, st)
	if err != nil {
		return nil, err
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
	if inContainer {
		sels = append(sels, model.ContainerSelector)
	}
	if a.cfg.DiscoverWorkloadPath {
		path, sum, err := a.executable(ctx, p, dir, inContainer)
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
			if path != "" {
				add("path:%s", path)
			}
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
//
// For a containerized caller the path is the one inside the caller's own
// root (/proc/<pid>/root): the kernel's link is stripped of the root's
// location and the result is checked, resolving it inside that root, to
// name the very file the process runs; when it does not, the path is
// omitted (an empty path with a nil error) and only the hash remains.
func (a *Attestor) executable(ctx context.Context, p workloadattest.Peer, dir string, inContainer bool) (path, sum string, err error) {
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
	if inContainer {
		inRoot, err := pathInRoot(dir, path, &st)
		if err != nil {
			a.log.Warn("cannot place the containerized caller's executable inside its root; path selector omitted",
				logKeyPID, p.PID, logKeyPath, path, logKeyErr, err)
		}
		path = inRoot
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

// pathInRoot returns the path of the executable exe (as the kernel's
// /proc/<pid>/exe link spells it, exeSt its stat) inside the caller's root,
// dir/root. It resolves the candidate inside that root (RESOLVE_IN_ROOT, so
// the container's symlinks cannot point outside it) and accepts it only if
// it is the same file.
func pathInRoot(dir, exe string, exeSt *syscall.Stat_t) (string, error) {
	rootLink, err := os.Readlink(filepath.Join(dir, "root"))
	if err != nil {
		return "", fmt.Errorf("read root link: %w", err)
	}
	candidate := exe
	if rootLink != "/" {
		rest, ok := strings.CutPrefix(exe, rootLink+"/")
		if !ok {
			// The root is not reachable from the agent's: the kernel
			// already spelled the path from the caller's mount root.
			rest = strings.TrimPrefix(exe, "/")
		}
		candidate = "/" + rest
	}
	rootFD, err := sysunix.Open(filepath.Join(dir, "root"), sysunix.O_PATH|sysunix.O_DIRECTORY|sysunix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open root: %w", err)
	}
	defer sysunix.Close(rootFD)
	fd, err := sysunix.Openat2(rootFD, strings.TrimPrefix(candidate, "/"), &sysunix.OpenHow{
		Flags:   sysunix.O_PATH | sysunix.O_CLOEXEC,
		Resolve: sysunix.RESOLVE_IN_ROOT | sysunix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return "", fmt.Errorf("resolve %s inside the caller's root: %w", candidate, err)
	}
	defer sysunix.Close(fd)
	var st sysunix.Stat_t
	if err := sysunix.Fstat(fd, &st); err != nil {
		return "", fmt.Errorf("stat %s inside the caller's root: %w", candidate, err)
	}
	if uint64(st.Dev) != uint64(exeSt.Dev) || st.Ino != exeSt.Ino {
		return "", fmt.Errorf("%s inside the caller's root is not the file it runs", candidate)
	}
	return candidate, nil
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
