package workload

import (
	"strings"
	"sync"

	"github.com/signet-id/signet/internal/model"
)

// maxCachedResponses bounds a respCache: about the number of distinct
// workloads (selector sets) on a node worth remembering.
const maxCachedResponses = 1024

// respCache remembers responses built from the source, each with the
// Changed channel obtained before it was built. A response stays valid while
// that channel is open: by the Source contract, nothing it was built from has
// changed since. Cached messages are shared and must not be modified (gRPC
// only reads them when sending).
type respCache[M any] struct {
	mu      sync.Mutex
	entries map[string]cachedResp[M]
}

type cachedResp[M any] struct {
	changed <-chan struct{}
	resp    M
}

// get returns the valid response cached under key.
func (c *respCache[M]) get(key string) (M, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		var zero M
		return zero, false
	}
	select {
	case <-e.changed:
		delete(c.entries, key)
		var zero M
		return zero, false
	default:
		return e.resp, true
	}
}

// put caches resp under key, valid until changed is closed. When full, it
// drops stale entries first, then an arbitrary one.
func (c *respCache[M]) put(key string, changed <-chan struct{}, resp M) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]cachedResp[M])
	}
	if _, ok := c.entries[key]; !ok && len(c.entries) >= maxCachedResponses {
		for k, e := range c.entries {
			select {
			case <-e.changed:
				delete(c.entries, k)
			default:
			}
		}
		for k := range c.entries {
			if len(c.entries) < maxCachedResponses {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = cachedResp[M]{changed: changed, resp: resp}
}

// cached returns the response for key from c, or builds it with build and
// caches it. changed must have been obtained from the Source before any data
// build reads; errors are not cached.
func cached[M any](c *respCache[M], key string, changed <-chan struct{}, build func() (M, error)) (M, error) {
	if resp, ok := c.get(key); ok {
		return resp, nil
	}
	resp, err := build()
	if err != nil {
		return resp, err
	}
	c.put(key, changed, resp)
	return resp, nil
}

// selectorsKey is a cache key for a canonical selector set.
func selectorsKey(sels []model.Selector) string {
	var b strings.Builder
	for _, s := range sels {
		b.WriteString(s.Type)
		b.WriteByte(0)
		b.WriteString(s.Value)
		b.WriteByte(0)
	}
	return b.String()
}
