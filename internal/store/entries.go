package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/logsafe"
)

// entryCols are the columns written for an entry, in insert order.
var entryCols = []string{
	"id", "spiffe_id", "parent_id", "selectors", "selectors_hash", "x509_ttl", "jwt_ttl", "dns_names",
	"admin", "downstream", "federates_with", "expires_at", "hint", "labels", "revision",
	"created_at", "updated_at", "first_issued_at", "last_issued_at",
}

// entrySelect reads the columns scanEntry expects.
const entrySelect = "SELECT id, spiffe_id, parent_id, selectors, x509_ttl, jwt_ttl, dns_names, admin, downstream, " +
	"federates_with, expires_at, hint, labels, revision, created_at, updated_at, first_issued_at, last_issued_at, " +
	"first_served_at, last_served_at FROM entries"

var entrySelectorCols = []string{"type", "value", "entry_id"}

// EntryResult is the outcome of creating one entry of a batch. Err, when set,
// is kinded InvalidArgument (the entry is malformed) or AlreadyExists (its ID,
// or its SPIFFE ID, parent ID and selector set, are taken). Entry is the
// entry as stored when it was written, otherwise the entry as given with its
// selectors in canonical form.
type EntryResult struct {
	Entry Entry
	Err   error
}

// prepareEntry returns a copy of e sharing no memory with it, with selectors
// in canonical form, empty collections nil, times normalized and the
// read-only fields cleared.
func prepareEntry(e Entry) Entry {
	e.Selectors = SortSelectors(slices.Clone(e.Selectors))
	e.DNSNames = slices.Clone(e.DNSNames)
	e.FederatesWith = slices.Clone(e.FederatesWith)
	e.Labels = maps.Clone(e.Labels)
	if len(e.Selectors) == 0 {
		e.Selectors = nil
	}
	if len(e.DNSNames) == 0 {
		e.DNSNames = nil
	}
	if len(e.FederatesWith) == 0 {
		e.FederatesWith = nil
	}
	if len(e.Labels) == 0 {
		e.Labels = nil
	}
	e.ExpiresAt = normTime(e.ExpiresAt)
	e.Revision = 0
	e.CreatedAt, e.UpdatedAt, e.FirstIssuedAt, e.LastIssuedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	e.FirstServedAt, e.LastServedAt = time.Time{}, time.Time{}
	return e
}

// validateEntry checks e, including a caller-chosen ID and every limit
// (model.Entry.Validate): the store refuses what the server would.
func validateEntry(e *Entry) error { return e.Validate() }

// selectorsHash is SHA-256 over a canonical selector set. Entries must
// differ in SPIFFE ID, parent ID or selectors hash.
func selectorsHash(sels []Selector) []byte {
	w := newFieldWriter()
	w.string("signet.selectors.v1")
	w.uint(uint64(len(sels)))
	for _, s := range sels {
		w.string(s.Type)
		w.string(s.Value)
	}
	return w.sum()
}

// entryKey identifies an entry's (SPIFFE ID, parent ID, selector set) in
// memory. SPIFFE IDs contain no NUL bytes.
func entryKey(spiffeID, parentID string, selsHash []byte) string {
	return spiffeID + "\x00" + parentID + "\x00" + string(selsHash)
}

func appendEntryArgs(args []any, e *Entry, selsHash []byte) []any {
	return append(args, e.ID, idToDB(e.SPIFFEID), idToDB(e.ParentID), selectorsToDB(e.Selectors), selsHash,
		int64(e.X509TTL), int64(e.JWTTTL), stringsToDB(e.DNSNames), e.Admin, e.Downstream,
		trustDomainsToDB(e.FederatesWith), timeToDB(e.ExpiresAt), e.Hint, labelsToDB(e.Labels), e.Revision,
		timeToDB(e.CreatedAt), timeToDB(e.UpdatedAt), timeToDB(e.FirstIssuedAt), timeToDB(e.LastIssuedAt))
}

type scanner interface{ Scan(dest ...any) error }

func scanEntry(sc scanner) (Entry, error) {
	var e Entry
	var spiffeID, parentID, sels, dns, feds, labels string
	var x509TTL, jwtTTL, expires, created, updated, first, last, firstServed, lastServed int64
	err := sc.Scan(&e.ID, &spiffeID, &parentID, &sels, &x509TTL, &jwtTTL, &dns, &e.Admin, &e.Downstream,
		&feds, &expires, &e.Hint, &labels, &e.Revision, &created, &updated, &first, &last, &firstServed, &lastServed)
	if err != nil {
		return Entry{}, err
	}
	e.X509TTL, e.JWTTTL = durationFromDB(x509TTL), durationFromDB(jwtTTL)
	e.ExpiresAt, e.CreatedAt, e.UpdatedAt = timeFromDB(expires), timeFromDB(created), timeFromDB(updated)
	e.FirstIssuedAt, e.LastIssuedAt = timeFromDB(first), timeFromDB(last)
	e.FirstServedAt, e.LastServedAt = timeFromDB(firstServed), timeFromDB(lastServed)
	var errs [6]error
	e.SPIFFEID, errs[0] = idFromDB(spiffeID)
	e.ParentID, errs[1] = idFromDB(parentID)
	e.Selectors, errs[2] = selectorsFromDB(sels)
	e.DNSNames, errs[3] = stringsFromDB(dns)
	e.FederatesWith, errs[4] = trustDomainsFromDB(feds)
	e.Labels, errs[5] = labelsFromDB(labels)
	if err := errors.Join(errs[:]...); err != nil {
		return Entry{}, fmt.Errorf("entry %s: %w", e.ID, err)
	}
	return e, nil
}

// querier is what *sql.DB and *sql.Tx have in common for reading.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Store) queryEntries(ctx context.Context, q querier, query string, args ...any) ([]Entry, error) {
	var out []Entry
	err := s.eachEntry(ctx, q, func(e Entry) error { out = append(out, e); return nil }, query, args...)
	return out, err
}

// eachEntry hands the entries query returns to fn as they are read,
// without holding them all.
func (s *Store) eachEntry(ctx context.Context, q querier, fn func(Entry) error, query string, args ...any) error {
	rows, err := q.QueryContext(ctx, s.d.rebind(query), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

func batchRejected(failed, total int) error {
	return errkind.New(errkind.FailedPrecondition, "batch rejected: %d of %d entries invalid", failed, total)
}

// CreateEntries creates entries in one transaction and reports the outcome
// of each in the matching EntryResult. The store assigns IDs where empty
// (UUIDv7s, increasing in creation order: newEntryID), the creation times and the new revision, and puts selectors
// in canonical form.
//
// With atomic set, one bad entry rejects the batch: nothing is written, the
// results tell which entries were at fault and the error is kinded
// FailedPrecondition. Otherwise the valid entries are written, the others
// carry their own errors and the returned error is nil. Any other error
// (the database failing) means nothing was written.
//
// A batch too large to hold whole is written with BeginEntryBatch instead.
func (s *Store) CreateEntries(ctx context.Context, entries []Entry, atomic bool) ([]EntryResult, error) {
	return s.CreateEntriesAt(ctx, entries, nil, atomic)
}

// CreateEntriesAt is CreateEntries for entries taken from a larger request:
// pos is the index of each entry in it, which messages name (nil numbers
// them from 0).
func (s *Store) CreateEntriesAt(ctx context.Context, entries []Entry, pos []int, atomic bool) ([]EntryResult, error) {
	b := s.checkEntries(entries, 0, pos)
	if atomic && b.failed > 0 {
		return b.results, batchRejected(b.failed, len(entries))
	}
	if b.failed == len(entries) {
		return b.results, nil
	}
	err := s.update(ctx, "create entries", true, func(t *wtx) error {
		n, err := b.write(ctx, t, atomic, nil)
		if err != nil {
			return err
		}
		if atomic && b.failed > 0 {
			return batchRejected(b.failed, len(entries))
		}
		if n == 0 {
			return errRollback
		}
		return nil
	})
	if err != nil && errkind.Of(err) != errkind.FailedPrecondition {
		return nil, err
	}
	if err != nil {
		b.unwritten()
		return b.results, err
	}
	return b.results, nil
}

// entryChunk is one batch of entries being created, or one chunk of an
// EntryBatch: the outcome of each, and in it the entry to write, prepared
// and checked, while ok (one copy of each entry, not one for the outcome
// and one for the write).
type entryChunk struct {
	s       *Store
	base    int   // index of the chunk's first entry in its whole batch
	pos     []int // when set, the index of each entry in its whole batch
	results []EntryResult
	hashes  [][]byte
	ok      []bool
	// generated marks the entries whose ID the chunk assigned: a failed
	// one is reported with the ID it came with (none).
	generated []bool
	failed    int
	byID      map[string]int // chunk indexes
	byKey     map[string]int
}

// entry is the chunk's entry i as it will be written.
func (c *entryChunk) entry(i int) *Entry { return &c.results[i].Entry }

// unwritten reports the chunk's valid entries as prepared, not as written,
// when its transaction did not commit: without the ID the chunk assigned
// or the revision and times of the write.
func (c *entryChunk) unwritten() {
	for i := range c.results {
		if !c.ok[i] {
			continue
		}
		e := c.entry(i)
		if c.generated[i] {
			e.ID = ""
		}
		e.Revision, e.CreatedAt, e.UpdatedAt = 0, time.Time{}, time.Time{}
	}
}

// index is the index of the chunk's entry i in its whole batch.
func (c *entryChunk) index(i int) int {
	if c.pos != nil {
		return c.pos[i]
	}
	return c.base + i
}

func (c *entryChunk) fail(i int, err error) {
	if c.ok[i] {
		c.ok[i], c.results[i].Err = false, err
		if c.generated[i] {
			c.results[i].Entry.ID = ""
		}
		c.failed++
	}
}

// checkEntries prepares and checks entries without the database: each
// entry on its own, then against the others of the chunk. The messages
// name entry i by its index in the whole batch: pos[i] when pos is set,
// otherwise base+i.
func (s *Store) checkEntries(entries []Entry, base int, pos []int) *entryChunk {
	c := &entryChunk{
		s: s, base: base, pos: pos,
		results:   make([]EntryResult, len(entries)),
		hashes:    make([][]byte, len(entries)),
		ok:        make([]bool, len(entries)),
		generated: make([]bool, len(entries)),
		byID:      make(map[string]int, len(entries)),
		byKey:     make(map[string]int, len(entries)),
	}
	bySPIFFE := make(map[string]int, len(entries)) // first item with each SPIFFE ID
	for i := range entries {
		c.results[i].Entry, c.ok[i] = prepareEntry(entries[i]), true
		e := c.entry(i)
		if err := validateEntry(e); err != nil {
			c.fail(i, err)
			continue
		}
		if e.ID == "" {
			e.ID, c.generated[i] = newEntryID(), true
		}
		c.hashes[i] = selectorsHash(e.Selectors)
		key := entryKey(e.SPIFFEID.String(), e.ParentID.String(), c.hashes[i])
		if j, dup := c.byID[e.ID]; dup {
			c.fail(i, errkind.New(errkind.AlreadyExists, "entry id %q is used twice in the batch (items %d and %d)", e.ID, c.index(j), c.index(i)))
			continue
		}
		if j, dup := c.byKey[key]; dup {
			c.fail(i, errkind.New(errkind.AlreadyExists,
				"entry for %s under %s with these selectors is in the batch twice (items %d and %d)", e.SPIFFEID, e.ParentID, c.index(j), c.index(i)))
			continue
		}
		sid := e.SPIFFEID.String()
		if j, seen := bySPIFFE[sid]; seen && s.isAlias(c.entry(j).ParentID.String()) != s.isAlias(e.ParentID.String()) {
			c.fail(i, errkind.New(errkind.AlreadyExists,
				"spiffe_id %s is used by a node alias and by another entry in the batch (items %d and %d): an entry may not carry a node's identity", sid, c.index(j), c.index(i)))
			continue
		} else if !seen {
			bySPIFFE[sid] = i
		}
		c.byID[e.ID], c.byKey[key] = i, i
	}
	return c
}

// write checks the chunk's valid entries against the database in t and
// inserts those that pass, with their selectors and audit records, and
// reports how many it inserted. With stop set it inserts nothing once any
// entry of the chunk failed. earlier, when set, maps the IDs the batch's
// earlier chunks wrote in t to their indexes: a clash with one of them is
// reported as a duplicate within the batch, as within one chunk.
func (c *entryChunk) write(ctx context.Context, t *wtx, stop bool, earlier map[string]int) (int, error) {
	s, ok, res := c.s, c.ok, c.results
	var ids, spiffeIDs []string
	seenSPIFFE := make(map[string]bool)
	for i := range res {
		if !ok[i] {
			continue
		}
		ids = append(ids, res[i].Entry.ID)
		if sid := res[i].Entry.SPIFFEID.String(); !seenSPIFFE[sid] {
			seenSPIFFE[sid] = true
			spiffeIDs = append(spiffeIDs, sid)
		}
	}
	err := t.queryIn(ctx, "SELECT id FROM entries WHERE id", nil, ids, func(rows *sql.Rows) error {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		i := c.byID[id]
		if j, dup := earlier[id]; dup {
			c.fail(i, errkind.New(errkind.AlreadyExists, "entry id %q is used twice in the batch (items %d and %d)", id, j, c.index(i)))
			return nil
		}
		c.fail(i, errkind.New(errkind.AlreadyExists, "entry %q already exists", id))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("check entry ids: %w", err)
	}
	alias := make(map[string]bool, len(spiffeIDs)) // per SPIFFE ID: written as node aliases?
	for i := range res {
		if ok[i] {
			alias[res[i].Entry.SPIFFEID.String()] = s.isAlias(res[i].Entry.ParentID.String())
		}
	}
	clashes, err := t.entryIdentityClashes(ctx, s, alias, "", false)
	if err != nil {
		return 0, err
	}
	err = t.queryIn(ctx, "SELECT id, spiffe_id, parent_id, selectors_hash FROM entries WHERE spiffe_id", nil, spiffeIDs, func(rows *sql.Rows) error {
		var id, spiffeID, parentID string
		var hash []byte
		if err := rows.Scan(&id, &spiffeID, &parentID, &hash); err != nil {
			return err
		}
		if i, clash := c.byKey[entryKey(spiffeID, parentID, hash)]; clash {
			if j, dup := earlier[id]; dup {
				c.fail(i, errkind.New(errkind.AlreadyExists,
					"entry for %s under %s with these selectors is in the batch twice (items %d and %d)", spiffeID, parentID, j, c.index(i)))
			} else {
				c.fail(i, errkind.New(errkind.AlreadyExists,
					"an entry for %s under %s with these selectors already exists (id %s)", spiffeID, parentID, id))
			}
		}
		if clashes[spiffeID] == nil {
			clashes[spiffeID] = s.aliasClash(alias[spiffeID], id, spiffeID, parentID)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("check entry uniqueness: %w", err)
	}
	for i := range res {
		if ok[i] {
			if err := clashes[res[i].Entry.SPIFFEID.String()]; err != nil {
				c.fail(i, err)
			}
		}
	}
	if stop && c.failed > 0 {
		return 0, nil
	}
	// Sized up front: a chunk can be a whole 100,000-entry batch, whose
	// slices would otherwise be copied at every doubling.
	nOK, nSels := 0, 0
	for i := range res {
		if ok[i] {
			nOK, nSels = nOK+1, nSels+len(res[i].Entry.Selectors)
		}
	}
	idx := make([]int, 0, nOK)
	sels := make([][2]int, 0, nSels) // (entry index, selector index)
	t.audit = slices.Grow(t.audit, nOK)
	for i := range res {
		if !ok[i] {
			continue
		}
		e := &res[i].Entry
		e.Revision, e.CreatedAt, e.UpdatedAt = t.rev, t.now, t.now
		idx = append(idx, i)
		for j := range e.Selectors {
			sels = append(sels, [2]int{i, j})
		}
		t.record("entry.create", e.ID, map[string]string{"spiffe_id": e.SPIFFEID.String(), "parent_id": e.ParentID.String()})
	}
	if len(idx) == 0 {
		return 0, nil
	}
	// Rows inserted in index order fill B-tree pages one after another
	// instead of splitting pages all over: bulk creates run much faster.
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(res[a].Entry.ID, res[b].Entry.ID) })
	slices.SortFunc(sels, func(a, b [2]int) int {
		sa, sb := res[a[0]].Entry.Selectors[a[1]], res[b[0]].Entry.Selectors[b[1]]
		if c := strings.Compare(sa.Type, sb.Type); c != 0 {
			return c
		}
		if c := strings.Compare(sa.Value, sb.Value); c != 0 {
			return c
		}
		return strings.Compare(res[a[0]].Entry.ID, res[b[0]].Entry.ID)
	})
	err = t.insertRows(ctx, "entries", entryCols, len(idx), func(n int, args []any) []any {
		i := idx[n]
		return appendEntryArgs(args, &res[i].Entry, c.hashes[i])
	})
	if err != nil {
		return 0, fmt.Errorf("insert entries: %w", err)
	}
	err = t.insertRows(ctx, "entry_selectors", entrySelectorCols, len(sels), func(n int, args []any) []any {
		e := &res[sels[n][0]].Entry
		sel := e.Selectors[sels[n][1]]
		return append(args, sel.Type, sel.Value, e.ID)
	})
	if err != nil {
		return 0, fmt.Errorf("insert entry selectors: %w", err)
	}
	return len(idx), nil
}

// EntryBatch creates a batch of entries too large to hold whole, chunk by
// chunk inside one write transaction: all of them or none. Start one with
// BeginEntryBatch, call Add for each chunk, then Commit (or Rollback). The
// batch holds the store's write turn and its revision row from
// BeginEntryBatch until Commit or Rollback: every other write waits, so
// callers bound its life. An EntryBatch is not safe for concurrent use.
type EntryBatch struct {
	s      *Store
	t      *wtx
	end    func(ctx context.Context, commit bool) error // nil once finished
	each   bool                                         // entries succeed or fail each on its own
	n      int                                          // entries added
	failed int
	ids    map[string]int // ID of every entry written → its index
}

// BeginEntryBatch opens the transaction of an EntryBatch; the caller must
// Commit or Rollback it.
func (s *Store) BeginEntryBatch(ctx context.Context) (*EntryBatch, error) {
	return s.beginEntryBatch(ctx, false)
}

// BeginEntryBatchEach opens the transaction of an EntryBatch whose entries
// succeed or fail each on its own, as CreateEntries(…, false) creates
// them: Commit commits every valid entry added, whatever failed beside it.
// It lets a caller write several chunks in one transaction, dropping each
// chunk once added, instead of holding them all for one CreateEntries
// call.
func (s *Store) BeginEntryBatchEach(ctx context.Context) (*EntryBatch, error) {
	return s.beginEntryBatch(ctx, true)
}

func (s *Store) beginEntryBatch(ctx context.Context, each bool) (*EntryBatch, error) {
	t, end, err := s.beginWrite(ctx, "create entries", true)
	if err != nil {
		return nil, err
	}
	return &EntryBatch{s: s, t: t, end: end, each: each, ids: make(map[string]int)}, nil
}

// Revision is the revision the batch's entries get when it commits.
func (b *EntryBatch) Revision() int64 { return b.t.rev }

// Len is the number of entries added so far.
func (b *EntryBatch) Len() int { return b.n }

// Failed is the number of entries added so far that cannot be created.
func (b *EntryBatch) Failed() int { return b.failed }

// Add checks a chunk of entries, as CreateEntries does, against the
// database and against every entry added before it, writes the valid
// ones, and reports the outcome of each in the matching EntryResult (item
// numbers in messages count from the start of the batch). Valid entries
// are written even after another one failed, so that every failure of the
// batch is found; Commit then writes nothing. An error (the database
// failing, ctx ending) rolls the batch back: it is finished.
func (b *EntryBatch) Add(ctx context.Context, entries []Entry) ([]EntryResult, error) {
	return b.AddPrepared(ctx, &PreparedEntries{c: b.s.checkEntries(entries, b.n, nil)})
}

// PreparedEntries is a chunk of entries checked on their own and against
// each other, without the database, by PrepareEntries, for one
// EntryBatch.AddPrepared. Preparing a chunk on another goroutine keeps
// that work (about a tenth of a bulk create) out of the batch's
// transaction, which holds up every other write.
type PreparedEntries struct{ c *entryChunk }

// PrepareEntries prepares entries for AddPrepared. pos is the index of
// each entry in its whole batch, which messages name (nil numbers them from
// 0).
func (s *Store) PrepareEntries(entries []Entry, pos []int) *PreparedEntries {
	return &PreparedEntries{c: s.checkEntries(entries, 0, pos)}
}

// AddPrepared is Add for a chunk prepared by PrepareEntries; a chunk is
// added once.
func (b *EntryBatch) AddPrepared(ctx context.Context, p *PreparedEntries) ([]EntryResult, error) {
	if b.end == nil {
		return nil, errkind.New(errkind.FailedPrecondition, "entry batch is already finished")
	}
	c := p.c
	if c == nil {
		return nil, errkind.New(errkind.FailedPrecondition, "prepared entries were already added")
	}
	p.c = nil
	if _, err := c.write(ctx, b.t, false, b.ids); err != nil {
		b.Rollback(ctx)
		return nil, err
	}
	// The audit records go with each chunk, not held to the end; an atomic
	// batch with a failure will not commit, so it needs none.
	if b.each || b.failed+c.failed == 0 {
		if err := b.s.appendAuditTx(ctx, b.t); err != nil {
			b.Rollback(ctx)
			return nil, err
		}
	}
	b.t.audit = b.t.audit[:0]
	for i := range c.results {
		if c.ok[i] {
			b.ids[c.results[i].Entry.ID] = c.index(i)
		}
	}
	b.n += len(c.results)
	b.failed += c.failed
	return c.results, nil
}

// Commit ends the batch. When every entry added was valid it commits them
// all and returns their revision. Otherwise it rolls back, nothing is
// written, and the error is kinded FailedPrecondition; any other error
// also means nothing was written. A batch begun with BeginEntryBatchEach
// commits the valid entries added and returns their revision, or when
// none was valid writes nothing and returns 0.
func (b *EntryBatch) Commit(ctx context.Context) (int64, error) {
	if b.end == nil {
		return 0, errkind.New(errkind.FailedPrecondition, "entry batch is already finished")
	}
	if b.each && b.n > 0 && b.failed == b.n {
		b.Rollback(ctx)
		return 0, nil
	}
	if (!b.each && b.failed > 0) || b.n == 0 {
		b.Rollback(ctx)
		if b.n == 0 {
			return 0, errkind.New(errkind.InvalidArgument, "entries: at least one entry is required")
		}
		return 0, batchRejected(b.failed, b.n)
	}
	end := b.end
	b.end = nil
	if err := end(ctx, true); err != nil {
		return 0, fmt.Errorf("create entries: %w", err)
	}
	return b.t.rev, nil
}

// Rollback ends the batch without writing anything. It does nothing when
// the batch is already finished.
func (b *EntryBatch) Rollback(ctx context.Context) {
	if b.end != nil {
		end := b.end
		b.end = nil
		_ = end(ctx, false)
	}
}

// GetEntry returns the entry with the given ID, or an error kinded NotFound.
func (s *Store) GetEntry(ctx context.Context, id string) (Entry, error) {
	es, err := s.queryEntries(ctx, s.db, entrySelect+" WHERE id = ?", id)
	if err != nil {
		return Entry{}, fmt.Errorf("get entry %q: %w", logsafe.Truncate(id), err)
	}
	if len(es) == 0 {
		return Entry{}, errkind.New(errkind.NotFound, "entry %q not found", logsafe.Truncate(id))
	}
	return es[0], nil
}

// EntryFilter selects entries. Zero fields do not filter.
type EntryFilter struct {
	ParentID spiffeid.ID
	SPIFFEID spiffeid.ID
	// Selectors selects the entries that have all of these selectors (and
	// possibly more).
	Selectors []Selector
	// FederatesWith selects the entries that federate with this trust
	// domain (and possibly others).
	FederatesWith spiffeid.TrustDomain
	// After is a cursor: only entries whose ID sorts after it.
	After string
	// Limit caps the number of entries returned; 0 means all.
	Limit int
}

// ListEntries returns the entries f selects, ordered by ID (byte order).
func (s *Store) ListEntries(ctx context.Context, f EntryFilter) ([]Entry, error) {
	var where []string
	var args []any
	if !f.ParentID.IsZero() {
		where, args = append(where, "parent_id = ?"), append(args, f.ParentID.String())
	}
	if !f.SPIFFEID.IsZero() {
		where, args = append(where, "spiffe_id = ?"), append(args, f.SPIFFEID.String())
	}
	for _, sel := range SortSelectors(slices.Clone(f.Selectors)) {
		where = append(where, "id IN (SELECT entry_id FROM entry_selectors WHERE type = ? AND value = ?)")
		args = append(args, sel.Type, sel.Value)
	}
	if !f.FederatesWith.IsZero() {
		where, args = append(where, fmt.Sprintf(s.d.jsonListHas, "federates_with")), append(args, f.FederatesWith.Name())
	}
	if f.After != "" {
		where, args = append(where, "id > ?"), append(args, f.After)
	}
	q := entrySelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	es, err := s.queryEntries(ctx, s.db, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list entries: %w", err)
	}
	return es, nil
}

// UpdateEntry replaces every mutable field of the stored entry with ID e.ID
// by those of e: SPIFFE ID, parent ID, selectors, TTLs, DNS names, admin and
// downstream flags, federates-with, expiry, hint and labels. It returns the
// entry as stored. Errors are kinded NotFound, InvalidArgument or
// AlreadyExists (another entry has the same SPIFFE ID, parent and selectors).
func (s *Store) UpdateEntry(ctx context.Context, e Entry) (Entry, error) {
	e = prepareEntry(e)
	if e.ID == "" {
		return Entry{}, errkind.New(errkind.InvalidArgument, "update entry: the entry id is required")
	}
	if err := validateEntry(&e); err != nil {
		return Entry{}, err
	}
	selsHash := selectorsHash(e.Selectors)
	err := s.update(ctx, "update entry "+e.ID, true, func(t *wtx) error {
		var created, first, last, firstServed, lastServed int64
		var oldSels string
		err := t.queryRow(ctx, "SELECT created_at, first_issued_at, last_issued_at, first_served_at, last_served_at, selectors FROM entries WHERE id = ?", e.ID).
			Scan(&created, &first, &last, &firstServed, &lastServed, &oldSels)
		if errors.Is(err, sql.ErrNoRows) {
			return errkind.New(errkind.NotFound, "entry %q not found", e.ID)
		}
		if err != nil {
			return err
		}
		var other string
		err = t.queryRow(ctx, "SELECT id FROM entries WHERE spiffe_id = ? AND parent_id = ? AND selectors_hash = ? AND id <> ?",
			idToDB(e.SPIFFEID), idToDB(e.ParentID), selsHash, e.ID).Scan(&other)
		if err == nil {
			return errkind.New(errkind.AlreadyExists,
				"an entry for %s under %s with these selectors already exists (id %s)", e.SPIFFEID, e.ParentID, other)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		sid := e.SPIFFEID.String()
		clashes, err := t.entryIdentityClashes(ctx, s, map[string]bool{sid: s.isAlias(e.ParentID.String())}, e.ID, true)
		if err != nil {
			return err
		}
		if err := clashes[sid]; err != nil {
			return err
		}
		e.Revision, e.UpdatedAt = t.rev, t.now
		e.CreatedAt, e.FirstIssuedAt, e.LastIssuedAt = timeFromDB(created), timeFromDB(first), timeFromDB(last)
		e.FirstServedAt, e.LastServedAt = timeFromDB(firstServed), timeFromDB(lastServed)
		_, err = t.exec(ctx, `UPDATE entries SET spiffe_id = ?, parent_id = ?, selectors = ?, selectors_hash = ?,
			x509_ttl = ?, jwt_ttl = ?, dns_names = ?, admin = ?, downstream = ?, federates_with = ?, expires_at = ?,
			hint = ?, labels = ?, revision = ?, updated_at = ? WHERE id = ?`,
			idToDB(e.SPIFFEID), idToDB(e.ParentID), selectorsToDB(e.Selectors), selsHash, int64(e.X509TTL), int64(e.JWTTTL),
			stringsToDB(e.DNSNames), e.Admin, e.Downstream, trustDomainsToDB(e.FederatesWith), timeToDB(e.ExpiresAt),
			e.Hint, labelsToDB(e.Labels), e.Revision, timeToDB(e.UpdatedAt), e.ID)
		if err != nil {
			if s.d.isUniqueViolation(err) {
				return errkind.Wrap(errkind.AlreadyExists, err, "an entry with the same spiffe_id, parent_id and selectors exists")
			}
			return err
		}
		old, err := selectorsFromDB(oldSels)
		if err != nil {
			return err
		}
		if err := t.deleteSelectorRows(ctx, e.ID, old); err != nil {
			return err
		}
		err = t.insertRows(ctx, "entry_selectors", entrySelectorCols, len(e.Selectors), func(n int, args []any) []any {
			return append(args, e.Selectors[n].Type, e.Selectors[n].Value, e.ID)
		})
		if err != nil {
			return err
		}
		t.record("entry.update", e.ID, map[string]string{"spiffe_id": e.SPIFFEID.String(), "parent_id": e.ParentID.String()})
		return nil
	})
	if err != nil {
		return Entry{}, err
	}
	return e, nil
}

// DeleteEntries deletes the entries with the given IDs in one transaction and
// records a tombstone for each, so that EntryChanges reports the deletion.
// The returned slice has one element per ID: nil when deleted, an error
// kinded NotFound when there was no such entry (or the ID came up earlier
// in ids). The error is for failures of the whole call; nothing is deleted
// then.
func (s *Store) DeleteEntries(ctx context.Context, ids []string) ([]error, error) {
	errs := make([]error, len(ids))
	if len(ids) == 0 {
		return errs, nil
	}
	first := make(map[string]int, len(ids)) // position of each ID's first occurrence
	var uniq []string
	for i, id := range ids {
		if _, dup := first[id]; dup {
			errs[i] = errkind.New(errkind.NotFound, "entry %q not found (listed twice)", logsafe.Truncate(id))
			continue
		}
		first[id] = i
		uniq = append(uniq, id)
	}
	err := s.update(ctx, "delete entries", true, func(t *wtx) error {
		var deleted []string
		err := chunks(uniq, inListSize, func(part []string) error {
			found, err := t.entrySelectors(ctx, part)
			if err != nil {
				return err
			}
			for id, sels := range found {
				deleted = append(deleted, id)
				if err := t.deleteSelectorRows(ctx, id, sels); err != nil {
					return err
				}
			}
			_, err = t.exec(ctx, "DELETE FROM entries WHERE id IN ("+placeholders(len(part))+")", anys(part)...)
			return err
		})
		if err != nil {
			return err
		}
		found := make(map[string]bool, len(deleted))
		for _, id := range deleted {
			found[id] = true
		}
		for _, id := range uniq {
			if !found[id] {
				errs[first[id]] = errkind.New(errkind.NotFound, "entry %q not found", logsafe.Truncate(id))
			}
		}
		if len(deleted) == 0 {
			return errRollback
		}
		slices.Sort(deleted)
		err = t.insertRows(ctx, "entry_tombstones", []string{"revision", "entry_id", "deleted_at"}, len(deleted),
			func(n int, args []any) []any { return append(args, t.rev, deleted[n], timeToDB(t.now)) })
		if err != nil {
			return fmt.Errorf("record tombstones: %w", err)
		}
		for _, id := range deleted {
			t.record("entry.delete", id, nil)
		}
		if _, err := t.pruneTombstones(ctx, t.now.Add(-TombstoneRetention)); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// entrySelectors returns the selectors of those of the given entries that
// exist, by entry ID.
func (t *wtx) entrySelectors(ctx context.Context, ids []string) (map[string][]Selector, error) {
	rows, err := t.query(ctx, "SELECT id, selectors FROM entries WHERE id IN ("+placeholders(len(ids))+")", anys(ids)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string][]Selector, len(ids))
	for rows.Next() {
		var id, sels string
		if err := rows.Scan(&id, &sels); err != nil {
			return nil, err
		}
		if out[id], err = selectorsFromDB(sels); err != nil {
			return nil, fmt.Errorf("entry %s: %w", id, err)
		}
	}
	return out, rows.Err()
}

// deleteSelectorRows removes an entry's rows from the selector index. They
// are found by primary key: the index has no entry_id index of its own,
// which keeps bulk inserts fast.
func (t *wtx) deleteSelectorRows(ctx context.Context, id string, sels []Selector) error {
	if len(sels) == 0 {
		return nil
	}
	if t.delSel == nil {
		var err error
		t.delSel, err = t.tx.PrepareContext(ctx, t.d.rebind("DELETE FROM entry_selectors WHERE type = ? AND value = ? AND entry_id = ?"))
		if err != nil {
			return err
		}
	}
	for _, s := range sels {
		if _, err := t.delSel.ExecContext(ctx, s.Type, s.Value, id); err != nil {
			return err
		}
	}
	return nil
}
