//go:build linux

package unix

import (
	"os/user"
	"strconv"
	"sync"
	"time"
)

// nameTTL is how long a resolved (or unresolvable) user or group name is
// remembered. Lookups read /etc/passwd and /etc/group (or ask NSS) on every
// call otherwise, which dominates attestation time.
const nameTTL = 30 * time.Second

// maxCachedNames bounds each name cache.
const maxCachedNames = 4096

// nameCache maps numeric IDs to names through a lookup function, caching
// results, including failures, for nameTTL.
type nameCache struct {
	lookup func(id string) (string, error)
	now    func() time.Time

	mu      sync.Mutex
	entries map[uint32]nameEntry
}

type nameEntry struct {
	name    string // "" when the ID does not resolve
	expires time.Time
}

func newUserNames() *nameCache {
	return &nameCache{now: time.Now, lookup: func(id string) (string, error) {
		u, err := user.LookupId(id)
		if err != nil {
			return "", err
		}
		return u.Username, nil
	}}
}

func newGroupNames() *nameCache {
	return &nameCache{now: time.Now, lookup: func(id string) (string, error) {
		g, err := user.LookupGroupId(id)
		if err != nil {
			return "", err
		}
		return g.Name, nil
	}}
}

// name returns the name of id, or "" when it does not resolve.
func (c *nameCache) name(id uint32) string {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.name
	}
	name, err := c.lookup(strconv.FormatUint(uint64(id), 10))
	if err != nil {
		name = ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxCachedNames {
		c.entries = make(map[uint32]nameEntry)
	}
	c.entries[id] = nameEntry{name: name, expires: now.Add(nameTTL)}
	return name
}
