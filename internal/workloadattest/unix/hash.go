//go:build linux

package unix

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// maxCachedHashes bounds the hash cache; past it an arbitrary entry is
// evicted. A node rarely runs more distinct binaries than this.
const maxCachedHashes = 4096

// errTooLarge marks a binary above the size limit: no sha256 selector.
var errTooLarge = errors.New("binary larger than the hashing limit")

// fileKey identifies one version of a file. ctime is included because it
// cannot be set from user space, unlike mtime.
type fileKey struct {
	dev, ino  uint64
	size      int64
	mtimeSec  int64
	mtimeNsec int64
	ctimeSec  int64
	ctimeNsec int64
}

func keyOf(st *syscall.Stat_t) fileKey {
	return fileKey{
		dev: uint64(st.Dev), ino: uint64(st.Ino), size: st.Size,
		mtimeSec: int64(st.Mtim.Sec), mtimeNsec: int64(st.Mtim.Nsec),
		ctimeSec: int64(st.Ctim.Sec), ctimeNsec: int64(st.Ctim.Nsec),
	}
}

// hashResult is a finished or in-flight hash. done is closed when sum and
// err are set.
type hashResult struct {
	done chan struct{}
	sum  string
	err  error
}

// hashCache memoizes SHA-256 sums of executables by fileKey, and makes
// concurrent callers for the same file share one computation.
type hashCache struct {
	mu      sync.Mutex
	entries map[fileKey]*hashResult
}

// sum returns the lower-case hex SHA-256 of the file whose stat is st,
// calling open to read it only when the cache has no sum for that version of
// the file. It returns errTooLarge when the file is above limit, with fresh
// set on the first such call for this file version so that the caller logs
// it once.
func (c *hashCache) sum(ctx context.Context, st *syscall.Stat_t, open func() (*os.File, error), limit int64) (sum string, fresh bool, err error) {
	key := keyOf(st)
	for {
		r, owner := c.lookup(key)
		if owner {
			return c.compute(ctx, key, r, open, st.Size, limit)
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			return "", false, ctx.Err()
		}
		if r.err != nil && !errors.Is(r.err, errTooLarge) {
			// The computing caller failed (and uncached its result),
			// perhaps only because its own context ended: try again.
			if err := ctx.Err(); err != nil {
				return "", false, err
			}
			continue
		}
		return r.sum, false, r.err
	}
}

// lookup returns the entry for key, creating it when absent; owner reports
// whether the caller created it and must compute it.
func (c *hashCache) lookup(key fileKey) (r *hashResult, owner bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.entries[key]; ok {
		return r, false
	}
	if c.entries == nil {
		c.entries = make(map[fileKey]*hashResult)
	}
	if len(c.entries) >= maxCachedHashes {
		c.evictOne()
	}
	r = &hashResult{done: make(chan struct{})}
	c.entries[key] = r
	return r, true
}

// evictOne drops one finished entry. c.mu must be held.
func (c *hashCache) evictOne() {
	for k, v := range c.entries {
		select {
		case <-v.done:
			delete(c.entries, k)
			return
		default:
		}
	}
}

// compute fills r, publishes it, and uncaches it if it failed for a reason
// other than the size limit.
func (c *hashCache) compute(ctx context.Context, key fileKey, r *hashResult, open func() (*os.File, error), size, limit int64) (string, bool, error) {
	if size > limit {
		r.err = fmt.Errorf("%d bytes, limit %d: %w", size, limit, errTooLarge)
	} else {
		r.sum, r.err = hashOpened(ctx, key, open)
	}
	if r.err != nil && !errors.Is(r.err, errTooLarge) {
		c.mu.Lock()
		if c.entries[key] == r {
			delete(c.entries, key)
		}
		c.mu.Unlock()
	}
	close(r.done)
	return r.sum, true, r.err
}

// hashOpened opens the file and hashes it if it still is the version key
// describes.
func hashOpened(ctx context.Context, key fileKey, open func() (*os.File, error)) (string, error) {
	f, err := open()
	if err != nil {
		return "", err
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if keyOf(&st) != key {
		return "", fmt.Errorf("hash %s: the file changed while being opened", f.Name())
	}
	return hashFile(ctx, f)
}

// hashFile hashes f from its start, checking ctx between chunks.
func hashFile(ctx context.Context, f *os.File) (string, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := f.ReadAt(buf, off)
		h.Write(buf[:n])
		off += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", f.Name(), err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
