package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/atomicfile"
)

// Files in the data dir. Only the agent's own identity and the trust bundle
// are persisted; workload SVIDs are fetched again after a restart.
const (
	lockFile      = "agent.lock"
	agentSVIDFile = "agent_svid.pem"
	agentKeyFile  = "agent_key.pem"
	bundleFile    = "bundle.json"
)

// maxStateFile bounds what the agent reads back from its data dir, so a
// corrupted or planted file cannot exhaust memory.
const maxStateFile = 16 << 20

// dataDir is the agent's state directory, locked for the agent's lifetime.
type dataDir struct {
	path string
	lock *os.File
}

// openDataDir creates path (0700) if needed, tightens its mode, and takes an
// exclusive, non-blocking flock on its lock file so that two agents never
// share one state directory.
func openDataDir(path string) (*dataDir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if err := os.Chmod(path, 0o700); err != nil {
		return nil, fmt.Errorf("restrict data dir mode: %w", err)
	}
	lockPath := filepath.Join(path, lockFile)
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another agent (%s is locked)", path, lockPath)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", path, err)
	}
	return &dataDir{path: path, lock: f}, nil
}

// Close releases the lock.
func (d *dataDir) Close() error {
	return d.lock.Close() // closing the descriptor drops the flock
}

func (d *dataDir) file(name string) string { return filepath.Join(d.path, name) }

// loadAgentSVID returns the persisted agent SVID of td, whether or not it
// is valid now: an expired one still proves the node's identity to
// agent_reauth. A missing SVID is (nil, nil); an unusable one is reported
// in err so the caller can log why it attests again.
func (d *dataDir) loadAgentSVID(td spiffeid.TrustDomain) (*x509svid.SVID, error) {
	certPEM, err := readStateFile(d.file(agentSVIDFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	keyPEM, err := readStateFile(d.file(agentKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s exists but %s does not", agentSVIDFile, agentKeyFile)
	}
	if err != nil {
		return nil, err
	}
	return parseAgentSVID(td, certPEM, keyPEM)
}

// parseAgentSVID parses a persisted agent SVID and checks it belongs to td
// (any trust domain when td is zero) and that its key matches.
func parseAgentSVID(td spiffeid.TrustDomain, certPEM, keyPEM []byte) (*x509svid.SVID, error) {
	svid, err := x509svid.Parse(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse persisted agent svid: %w", err)
	}
	if !td.IsZero() && !svid.ID.MemberOf(td) {
		return nil, fmt.Errorf("persisted agent svid %s is not in trust domain %s", svid.ID, td)
	}
	return svid, nil
}

// saveAgentSVID writes the agent SVID and its key (both 0600). Each file is
// replaced atomically; the key goes first, and a crash between the two
// renames leaves a pair that parseAgentSVID rejects as mismatched, so the
// agent never runs with a key that does not belong to its certificate.
func (d *dataDir) saveAgentSVID(svid *x509svid.SVID) error {
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return fmt.Errorf("encode agent svid: %w", err)
	}
	if err := atomicfile.WriteFile(d.file(agentKeyFile), keyPEM, 0o600); err != nil {
		return fmt.Errorf("persist agent key: %w", err)
	}
	if err := atomicfile.WriteFile(d.file(agentSVIDFile), certPEM, 0o600); err != nil {
		return fmt.Errorf("persist agent svid: %w", err)
	}
	return nil
}

// removeAgentSVID deletes the persisted agent SVID and key.
func (d *dataDir) removeAgentSVID() error {
	var errs []error
	for _, name := range []string{agentSVIDFile, agentKeyFile} {
		if err := os.Remove(d.file(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove agent svid: %w", err)
	}
	return nil
}

// loadBundle returns the persisted trust bundle of td, or nil when there is
// none.
func (d *dataDir) loadBundle(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	data, err := readStateFile(d.file(bundleFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseBundle(td, data)
}

// parseBundle parses a persisted bundle; it must hold an X.509 authority.
func parseBundle(td spiffeid.TrustDomain, data []byte) (*spiffebundle.Bundle, error) {
	b, err := spiffebundle.Parse(td, data)
	if err != nil {
		return nil, fmt.Errorf("parse persisted bundle: %w", err)
	}
	if len(b.X509Authorities()) == 0 {
		return nil, errors.New("parse persisted bundle: no x509 authorities")
	}
	return b, nil
}

// saveBundle writes the bundle in SPIFFE bundle format.
func (d *dataDir) saveBundle(b *spiffebundle.Bundle) error {
	data, err := b.Marshal()
	if err != nil {
		return fmt.Errorf("encode bundle: %w", err)
	}
	if err := atomicfile.WriteFile(d.file(bundleFile), data, 0o600); err != nil {
		return fmt.Errorf("persist bundle: %w", err)
	}
	return nil
}

// readStateFile reads a state file of at most maxStateFile bytes.
func readStateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxStateFile {
		return nil, fmt.Errorf("read %s: over the %d-byte limit", path, maxStateFile)
	}
	return data, nil
}
