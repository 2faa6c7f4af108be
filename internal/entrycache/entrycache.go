// Package entrycache is the server's in-memory index of registration
// entries, kept current from the store's change feed. It answers, without a
// database round trip, the question every agent call asks: which entries
// belong to this node?
package entrycache

import (
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// Cache is the server's in-memory index of registration entries, kept
// current from the store's change feed (store.EntryChanges). Every replica
// keeps its own; the store's revision makes them converge.
//
// It answers the question every agent call asks: which entries belong to
// this node? An entry belongs to a node when its parent is the node's ID, or
// when its parent is a node alias the node qualifies for: an alias is an
// entry whose parent is the server's own ID and whose selectors are a subset
// of the node's.
type Cache struct {
	serverID spiffeid.ID

	mu       sync.RWMutex
	revision int64
	byID     map[string]*model.Entry
	byParent map[spiffeid.ID]map[string]*model.Entry
	admins   map[spiffeid.ID]map[string]*model.Entry // admin entries by SPIFFE ID
}

// New returns an empty cache for the trust domain whose server has
// serverID (the parent of node aliases).
func New(serverID spiffeid.ID) *Cache {
	return &Cache{
		serverID: serverID,
		byID:     make(map[string]*model.Entry),
		byParent: make(map[spiffeid.ID]map[string]*model.Entry),
		admins:   make(map[spiffeid.ID]map[string]*model.Entry),
	}
}

// Revision is the store revision the cache reflects.
func (c *Cache) Revision() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.revision
}

// Apply folds a change set into the cache. Change sets older than what the
// cache holds are ignored, so concurrent refreshes are harmless.
func (c *Cache) Apply(cs store.EntryChangeSet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs.Revision < c.revision && !cs.Full {
		return
	}
	if cs.Full {
		c.byID = make(map[string]*model.Entry, len(cs.Changed))
		c.byParent = make(map[spiffeid.ID]map[string]*model.Entry)
		c.admins = make(map[spiffeid.ID]map[string]*model.Entry)
	}
	for _, id := range cs.Deleted {
		c.removeLocked(id)
	}
	for i := range cs.Changed {
		e := cs.Changed[i]
		c.removeLocked(e.ID)
		c.byID[e.ID] = &e
		addTo(c.byParent, e.ParentID, &e)
		if e.Admin {
			addTo(c.admins, e.SPIFFEID, &e)
		}
	}
	c.revision = cs.Revision
}

// ApplyCreated folds in entries that one store transaction just created,
// all at revision rev, and reports true, when the cache holds exactly the
// revision before it: the set is then the complete change from that
// revision to rev. Otherwise (something else was written in between, or the
// cache has moved past rev) it changes nothing and reports false; the
// caller then reads the changes from the store.
func (c *Cache) ApplyCreated(rev int64, created []store.Entry) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.revision != rev-1 {
		return false
	}
	for i := range created {
		if created[i].Revision != rev {
			return false
		}
	}
	for i := range created {
		e := created[i]
		c.removeLocked(e.ID)
		c.byID[e.ID] = &e
		addTo(c.byParent, e.ParentID, &e)
		if e.Admin {
			addTo(c.admins, e.SPIFFEID, &e)
		}
	}
	c.revision = rev
	return true
}

// addTo files e under key in an index of entry sets.
func addTo(index map[spiffeid.ID]map[string]*model.Entry, key spiffeid.ID, e *model.Entry) {
	m := index[key]
	if m == nil {
		m = make(map[string]*model.Entry)
		index[key] = m
	}
	m[e.ID] = e
}

// removeFrom takes the entry with id out of an index of entry sets.
func removeFrom(index map[spiffeid.ID]map[string]*model.Entry, key spiffeid.ID, id string) {
	if m := index[key]; m != nil {
		delete(m, id)
		if len(m) == 0 {
			delete(index, key)
		}
	}
}

func (c *Cache) removeLocked(id string) {
	old, ok := c.byID[id]
	if !ok {
		return
	}
	delete(c.byID, id)
	removeFrom(c.byParent, old.ParentID, id)
	removeFrom(c.admins, old.SPIFFEID, id)
}

// Get returns the entry with id, or nil.
func (c *Cache) Get(id string) *model.Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byID[id]
}

// Len is the number of cached entries.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byID)
}

// parentsFor returns the IDs a node's entries may hang under: the node's
// own ID and every alias the node's selectors qualify it for.
func (c *Cache) parentsFor(node spiffeid.ID, nodeSels []model.Selector) []spiffeid.ID {
	parents := []spiffeid.ID{node}
	for _, alias := range c.byParent[c.serverID] {
		if model.SubsetOf(alias.Selectors, nodeSels) {
			parents = append(parents, alias.SPIFFEID)
		}
	}
	return parents
}

// NodeParents returns the IDs a node's entries may hang under: the node's
// own ID and every node alias its selectors qualify it for.
func (c *Cache) NodeParents(node spiffeid.ID, nodeSels []model.Selector) []spiffeid.ID {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.parentsFor(node, nodeSels)
}

// NodeEntries returns the unexpired entries that belong to the node.
func (c *Cache) NodeEntries(node spiffeid.ID, nodeSels []model.Selector, now time.Time) []*model.Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*model.Entry
	seen := make(map[string]bool)
	for _, p := range c.parentsFor(node, nodeSels) {
		for id, e := range c.byParent[p] {
			if seen[id] || expired(e, now) {
				continue
			}
			seen[id] = true
			out = append(out, e)
		}
	}
	return out
}

// BelongsTo returns the entry with id when it is unexpired and belongs to
// the node, and nil otherwise.
func (c *Cache) BelongsTo(id string, node spiffeid.ID, nodeSels []model.Selector, now time.Time) *model.Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.byID[id]
	if e == nil || expired(e, now) {
		return nil
	}
	if e.ParentID == node {
		return e
	}
	for _, p := range c.parentsFor(node, nodeSels)[1:] {
		if e.ParentID == p {
			return e
		}
	}
	return nil
}

// IsAdmin reports whether id is the SPIFFE ID of an unexpired admin entry.
func (c *Cache) IsAdmin(id spiffeid.ID, now time.Time) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, e := range c.admins[id] {
		if !expired(e, now) {
			return true
		}
	}
	return false
}

func expired(e *model.Entry, now time.Time) bool {
	return !e.ExpiresAt.IsZero() && !now.Before(e.ExpiresAt)
}
