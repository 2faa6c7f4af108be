// Package entrycache is the server's in-memory index of registration
// entries, kept current from the store's change feed. It answers, without a
// database round trip, the question every agent call asks: which entries
// belong to this node?
package entrycache

import (
	"math"
	"slices"
	"strings"
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
//
// The cache keeps, per entry, only what matching, signing and agent sync
// read (see entry): no labels, no creation, update, issued or served times.
// Entries it returns are built from that compact form on each call, so
// callers own them; those fields are zero in them.
type Cache struct {
	serverID spiffeid.ID

	mu       sync.RWMutex
	revision int64
	byID     map[string]*entry
	byParent map[spiffeid.ID]*parentSet
	admins   map[spiffeid.ID]map[string]*entry             // admin entries by SPIFFE ID
	types    map[string]string                             // interned selector types
	tds      map[spiffeid.TrustDomain]spiffeid.TrustDomain // interned federated trust domains
}

// entry is the compact form of a model.Entry the cache holds: about a third
// of its size. The parent ID shares its string with its parentSet's key,
// selector types and federated trust domains are interned, and the rarely set fields
// live behind one pointer.
type entry struct {
	id        string
	spiffeID  spiffeid.ID
	parentID  spiffeid.ID
	selectors []model.Selector
	x509TTL   time.Duration
	jwtTTL    time.Duration
	expiresAt int64 // Unix nanoseconds; 0: never
	revision  int64
	admin     bool
	down      bool
	extra     *extra // nil when none of its fields is set
	// inline holds the selectors of an entry with at most two (most
	// entries), which selectors then slices: no allocation of their own.
	// An entry is only ever used by pointer, never copied.
	inline [2]model.Selector
}

// extra holds the entry fields most entries leave empty.
type extra struct {
	dnsNames      []string
	federatesWith []spiffeid.TrustDomain
	hint          string
}

// parentSet is the entries under one parent ID, sorted by entry ID, so a
// node's entries come out in a stable order and can be paged by cursor.
type parentSet struct {
	id      spiffeid.ID
	list    []*entry // sorted by id
	pending []*entry // added since the last settle, unsorted
}

// New returns an empty cache for the trust domain whose server has
// serverID (the parent of node aliases).
func New(serverID spiffeid.ID) *Cache {
	c := &Cache{serverID: serverID}
	c.reset(0)
	return c
}

func (c *Cache) reset(size int) {
	c.byID = make(map[string]*entry, size)
	c.byParent = make(map[spiffeid.ID]*parentSet)
	c.admins = make(map[spiffeid.ID]map[string]*entry)
	c.types = make(map[string]string)
	c.tds = make(map[spiffeid.TrustDomain]spiffeid.TrustDomain)
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
		c.reset(len(cs.Changed))
	}
	for _, id := range cs.Deleted {
		c.removeLocked(id)
	}
	c.addLocked(cs.Changed)
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
	c.addLocked(created)
	c.revision = rev
	return true
}

// Staged holds entries a store transaction is writing, in the cache's
// compact form, built off to the side while the transaction runs, so that
// a batch too large to hold whole in the store's form is never read back:
// ApplyStaged folds them in once the transaction has committed. Get one
// from Stage. It is not safe for concurrent use.
type Staged struct {
	scratch *Cache // interns for the staged entries; never shared
	es      []*entry
}

// Stage returns an empty Staged for c.
func (c *Cache) Stage() *Staged { return &Staged{scratch: New(c.serverID)} }

// Add stages entries as the store wrote them.
func (s *Staged) Add(es ...*model.Entry) {
	for _, e := range es {
		s.es = append(s.es, s.scratch.compact(e))
	}
}

// Len is the number of entries staged.
func (s *Staged) Len() int { return len(s.es) }

// ApplyStaged folds in the staged entries, which one store transaction
// created at revision rev, and reports true, when the cache holds exactly
// the revision before it; otherwise (something else was written in
// between, or the cache has moved past rev) it changes nothing and reports
// false, and the caller reads the changes from the store.
func (c *Cache) ApplyStaged(rev int64, s *Staged) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.revision != rev-1 {
		return false
	}
	for _, e := range s.es {
		if e.revision != rev {
			return false
		}
	}
	for _, e := range s.es {
		for i := range e.selectors {
			e.selectors[i].Type = c.internType(e.selectors[i].Type)
		}
		if e.extra != nil {
			for i, td := range e.extra.federatesWith {
				e.extra.federatesWith[i] = c.internTD(td)
			}
		}
	}
	c.addCompactLocked(s.es)
	s.es = nil
	c.revision = rev
	return true
}

// addLocked replaces or adds entries, then puts every parent set they
// touched back in order.
func (c *Cache) addLocked(es []model.Entry) {
	compact := make([]*entry, len(es))
	for i := range es {
		compact[i] = c.compact(&es[i])
	}
	c.addCompactLocked(compact)
}

// addCompactLocked is addLocked for entries in the cache's form.
func (c *Cache) addCompactLocked(es []*entry) {
	var touched []*parentSet
	for _, e := range es {
		c.removeLocked(e.id)
		c.byID[e.id] = e
		ps := c.byParent[e.parentID]
		if ps == nil {
			ps = &parentSet{id: e.parentID}
			c.byParent[e.parentID] = ps
		}
		e.parentID = ps.id // share the key's strings
		if len(ps.pending) == 0 {
			touched = append(touched, ps)
		}
		ps.pending = append(ps.pending, e)
		if e.admin {
			m := c.admins[e.spiffeID]
			if m == nil {
				m = make(map[string]*entry)
				c.admins[e.spiffeID] = m
			}
			m[e.id] = e
		}
	}
	for _, ps := range touched {
		ps.settle()
	}
}

// settle merges the pending entries into the sorted list: one by one when
// they are few, by a sort of the whole list otherwise.
func (ps *parentSet) settle() {
	byID := func(a, b *entry) int { return strings.Compare(a.id, b.id) }
	if len(ps.pending)*16 < len(ps.list) {
		for _, e := range ps.pending {
			i, _ := slices.BinarySearchFunc(ps.list, e.id, entryIDCmp)
			ps.list = slices.Insert(ps.list, i, e)
		}
	} else {
		ps.list = append(ps.list, ps.pending...)
		slices.SortFunc(ps.list, byID)
	}
	clear(ps.pending)
	ps.pending = ps.pending[:0]
	if cap(ps.pending) > 64 {
		ps.pending = nil
	}
}

func entryIDCmp(e *entry, id string) int { return strings.Compare(e.id, id) }

// compact returns the cache's form of e, interning what entries share.
//
// The entry's own strings (its ID, SPIFFE ID and selector values) are
// copied into one allocation and the entry's fields slice it: the
// collector then marks two objects per entry (the entry, holding up to
// two selectors itself, and that string) instead of one per string, which
// is what a full collection with a million entries cached costs
// (BenchmarkCacheMemoryPerEntry), and the cache keeps nothing of the
// buffers e's strings came from.
func (c *Cache) compact(e *model.Entry) *entry {
	sid := e.SPIFFEID.String()
	size := len(e.ID) + len(sid)
	for _, s := range e.Selectors {
		size += len(s.Value)
	}
	var b strings.Builder
	b.Grow(size)
	b.WriteString(e.ID)
	b.WriteString(sid)
	for _, s := range e.Selectors {
		b.WriteString(s.Value)
	}
	own := b.String()
	id, rest := own[:len(e.ID)], own[len(e.ID):]
	spiffeID := e.SPIFFEID // the zero ID, whose string is empty, stays as it is
	if parsed, err := spiffeid.FromString(rest[:len(sid)]); err == nil {
		spiffeID = parsed
	}
	rest = rest[len(sid):]
	out := &entry{
		id:       id,
		spiffeID: spiffeID, parentID: e.ParentID,
		x509TTL: e.X509TTL, jwtTTL: e.JWTTTL, revision: e.Revision,
		admin: e.Admin, down: e.Downstream,
	}
	if !e.ExpiresAt.IsZero() {
		out.expiresAt = math.MaxInt64 // past what UnixNano can hold: never, in practice
		if e.ExpiresAt.Before(maxExpiry) {
			out.expiresAt = e.ExpiresAt.UnixNano()
		}
	}
	if len(e.Selectors) <= len(out.inline) {
		out.selectors = out.inline[:len(e.Selectors):len(e.Selectors)]
	} else {
		out.selectors = make([]model.Selector, len(e.Selectors))
	}
	for i, s := range e.Selectors {
		out.selectors[i] = model.Selector{Type: c.internType(s.Type), Value: rest[:len(s.Value)]}
		rest = rest[len(s.Value):]
	}
	if len(e.DNSNames) > 0 || len(e.FederatesWith) > 0 || e.Hint != "" {
		x := &extra{dnsNames: slices.Clone(e.DNSNames), hint: e.Hint}
		for _, td := range e.FederatesWith {
			x.federatesWith = append(x.federatesWith, c.internTD(td))
		}
		out.extra = x
	}
	return out
}

// maxExpiry is the latest expiry the cache keeps exactly (UnixNano's range
// ends in 2262); later ones are kept as this.
var maxExpiry = time.Unix(0, math.MaxInt64-1).UTC()

// maxInterned bounds the intern tables, whose strings stay after the
// entries that used them are gone.
const maxInterned = 1024

func (c *Cache) internType(t string) string {
	if s, ok := c.types[t]; ok {
		return s
	}
	if len(c.types) >= maxInterned {
		return t
	}
	c.types[t] = t
	return t
}

func (c *Cache) internTD(td spiffeid.TrustDomain) spiffeid.TrustDomain {
	if s, ok := c.tds[td]; ok {
		return s
	}
	if len(c.tds) >= maxInterned {
		return td
	}
	c.tds[td] = td
	return td
}

// model returns e as a model.Entry the caller owns.
func (e *entry) model() *model.Entry {
	out := &model.Entry{
		ID: e.id, SPIFFEID: e.spiffeID, ParentID: e.parentID,
		Selectors: slices.Clone(e.selectors),
		X509TTL:   e.x509TTL, JWTTTL: e.jwtTTL, Revision: e.revision,
		Admin: e.admin, Downstream: e.down,
	}
	switch e.expiresAt {
	case 0:
	case math.MaxInt64:
		out.ExpiresAt = maxExpiry
	default:
		out.ExpiresAt = time.Unix(0, e.expiresAt).UTC()
	}
	if x := e.extra; x != nil {
		out.DNSNames = slices.Clone(x.dnsNames)
		out.FederatesWith = slices.Clone(x.federatesWith)
		out.Hint = x.hint
	}
	return out
}

func (c *Cache) removeLocked(id string) {
	old, ok := c.byID[id]
	if !ok {
		return
	}
	delete(c.byID, id)
	if ps := c.byParent[old.parentID]; ps != nil {
		if i, found := slices.BinarySearchFunc(ps.list, id, entryIDCmp); found && ps.list[i] == old {
			ps.list = slices.Delete(ps.list, i, i+1)
		} else if j := slices.Index(ps.pending, old); j >= 0 {
			ps.pending = slices.Delete(ps.pending, j, j+1)
		}
		if len(ps.list) == 0 && len(ps.pending) == 0 {
			delete(c.byParent, old.parentID)
		}
	}
	if m := c.admins[old.spiffeID]; m != nil {
		delete(m, id)
		if len(m) == 0 {
			delete(c.admins, old.spiffeID)
		}
	}
}

// Get returns the entry with id, or nil. The entry is the caller's; it
// carries the fields the cache keeps (see Cache).
func (c *Cache) Get(id string) *model.Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e := c.byID[id]; e != nil {
		return e.model()
	}
	return nil
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
	if ps := c.byParent[c.serverID]; ps != nil {
		for _, alias := range ps.list {
			if model.SubsetOf(alias.selectors, nodeSels) {
				parents = append(parents, alias.spiffeID)
			}
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

// NodeEntries returns the unexpired entries that belong to the node, sorted
// by entry ID.
func (c *Cache) NodeEntries(node spiffeid.ID, nodeSels []model.Selector, now time.Time) []*model.Entry {
	out, _ := c.NodeEntriesAfter(node, nodeSels, now, "", 0)
	return out
}

// NodeEntriesAfter returns, sorted by entry ID, at most limit (0: no limit)
// of the unexpired entries that belong to the node and whose IDs sort after
// the cursor after ("" for the first page), and whether more follow. The
// order is stable, so a caller pages through a node's entries by passing
// the last ID it got as the next cursor.
func (c *Cache) NodeEntriesAfter(node spiffeid.ID, nodeSels []model.Selector, now time.Time, after string, limit int) ([]*model.Entry, bool) {
	items, more := c.NodePage(node, nodeSels, now, Query{After: after, Limit: limit})
	out := make([]*model.Entry, len(items))
	for i, it := range items {
		out[i] = it.Entry
	}
	return out, more
}

// Query selects one page of a node's entries (NodePage).
type Query struct {
	// After is the cursor: only entries whose IDs sort after it ("" from
	// the first).
	After string
	// Limit bounds the items of the page (0: no limit).
	Limit int
	// Since, when positive, selects the entries whose revision is above
	// it (changed since): the others are left out, or with AllIDs listed
	// by ID alone.
	Since int64
	// AllIDs keeps the entries Since leaves out as items with an ID and no
	// Entry; they count towards Limit.
	AllIDs bool
}

// Item is one entry of a page: its ID, and the entry itself (the caller's)
// unless the query's AllIDs left it out as unchanged.
type Item struct {
	ID    string
	Entry *model.Entry
}

// NodePage returns, sorted by entry ID, the page of the node's unexpired
// entries that q selects, and whether more follow. Only the entries on the
// page are built, so paging through a node of any size costs each call its
// page, plus a step over the entries that Since leaves out.
func (c *Cache) NodePage(node spiffeid.ID, nodeSels []model.Selector, now time.Time, q Query) ([]Item, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []Item
	if q.Limit > 0 {
		out = make([]Item, 0, min(q.Limit, 1024))
	}
	more := false
	c.walkLocked(node, nodeSels, now, q.After, func(e *entry) bool {
		changed := q.Since <= 0 || e.revision > q.Since
		if !changed && !q.AllIDs {
			return true
		}
		if q.Limit > 0 && len(out) == q.Limit {
			more = true
			return false
		}
		it := Item{ID: e.id}
		if changed {
			it.Entry = e.model()
		}
		out = append(out, it)
		return true
	})
	return out, more
}

// NodeEntryIDs returns the IDs of the node's unexpired entries, sorted,
// without building the entries. The strings are shared with the cache and
// never change.
func (c *Cache) NodeEntryIDs(node spiffeid.ID, nodeSels []model.Selector, now time.Time) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []string
	c.walkLocked(node, nodeSels, now, "", func(e *entry) bool {
		out = append(out, e.id)
		return true
	})
	return out
}

// NodeFederatesWith returns the trust domains the node's unexpired entries
// name in federates_with, once each, sorted by name, without building the
// entries.
func (c *Cache) NodeFederatesWith(node spiffeid.ID, nodeSels []model.Selector, now time.Time) []spiffeid.TrustDomain {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []spiffeid.TrustDomain
	c.walkLocked(node, nodeSels, now, "", func(e *entry) bool {
		if e.extra != nil {
			for _, td := range e.extra.federatesWith {
				if !slices.Contains(out, td) {
					out = append(out, td)
				}
			}
		}
		return true
	})
	slices.SortFunc(out, func(a, b spiffeid.TrustDomain) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

// walkLocked calls fn, in entry ID order, for each unexpired entry of the
// node whose ID sorts after the cursor after, until fn returns false. It
// must be called with c.mu held.
func (c *Cache) walkLocked(node spiffeid.ID, nodeSels []model.Selector, now time.Time, after string, fn func(*entry) bool) {
	var lists [][]*entry
	for _, p := range c.parentsFor(node, nodeSels) {
		if ps := c.byParent[p]; ps != nil {
			i := 0
			if after != "" {
				i, _ = slices.BinarySearchFunc(ps.list, after, entryIDCmp)
				if i < len(ps.list) && ps.list[i].id == after {
					i++
				}
			}
			if i < len(ps.list) {
				lists = append(lists, ps.list[i:])
			}
		}
	}
	nowNano := now.UnixNano()
	last := ""
	// Merge the sorted lists; an entry is under one parent only, so IDs
	// never repeat across lists.
	for len(lists) > 0 {
		k := 0
		for j := 1; j < len(lists); j++ {
			if lists[j][0].id < lists[k][0].id {
				k = j
			}
		}
		e := lists[k][0]
		if lists[k] = lists[k][1:]; len(lists[k]) == 0 {
			lists = slices.Delete(lists, k, k+1)
		}
		if e.id == last || e.expired(nowNano) {
			continue
		}
		last = e.id
		if !fn(e) {
			return
		}
	}
}

// BelongsTo returns the entry with id when it is unexpired and belongs to
// the node, and nil otherwise.
func (c *Cache) BelongsTo(id string, node spiffeid.ID, nodeSels []model.Selector, now time.Time) *model.Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.byID[id]
	if e == nil || e.expired(now.UnixNano()) {
		return nil
	}
	if e.parentID == node {
		return e.model()
	}
	for _, p := range c.parentsFor(node, nodeSels)[1:] {
		if e.parentID == p {
			return e.model()
		}
	}
	return nil
}

// IsAdmin reports whether id is the SPIFFE ID of an unexpired admin entry.
func (c *Cache) IsAdmin(id spiffeid.ID, now time.Time) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, e := range c.admins[id] {
		if !e.expired(now.UnixNano()) {
			return true
		}
	}
	return false
}

func (e *entry) expired(now int64) bool { return e.expiresAt != 0 && now >= e.expiresAt }

// Loader builds the whole content of a cache off to the side, entry by
// entry as a full read of the store streams them, so a full reload holds
// the compact entries only, never every store entry at once, and agent
// calls keep reading the old content until Replace. The zero Loader is not
// usable; get one from NewLoader. It is not safe for concurrent use.
type Loader struct {
	next    *Cache
	pending []model.Entry
}

// loaderBatch is how many entries a Loader compacts at a time.
const loaderBatch = 1024

// NewLoader returns an empty Loader for a replacement of c's content.
func (c *Cache) NewLoader() *Loader {
	return &Loader{next: New(c.serverID)}
}

// Add takes one entry into the replacement.
func (l *Loader) Add(e model.Entry) {
	l.pending = append(l.pending, e)
	if len(l.pending) == loaderBatch {
		l.flush()
	}
}

func (l *Loader) flush() {
	l.next.addLocked(l.pending) // l.next is not shared yet: no lock needed
	clear(l.pending)
	l.pending = l.pending[:0]
}

// Replace makes what l loaded the cache's whole content, at revision rev,
// like Apply of a Full change set. A nil l replaces it with nothing.
func (c *Cache) Replace(l *Loader, rev int64) {
	next := New(c.serverID)
	if l != nil {
		l.flush()
		next = l.next
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byID, c.byParent, c.admins, c.types, c.tds = next.byID, next.byParent, next.admins, next.types, next.tds
	c.revision = rev
}
