package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-id/signet/internal/store"
)

var changeTests = map[string]func(t *testing.T, s *store.Store){
	"FullFromZero":              testChangesFullFromZero,
	"Incremental":               testChangesIncremental,
	"UpToDate":                  testChangesUpToDate,
	"FromTheFuture":             testChangesFromTheFuture,
	"DeletedThenRecreated":      testChangesRecreated,
	"PrunedTombstones":          testChangesPruned,
	"NotAffectedByTouch":        testChangesNotAffectedByTouch,
	"ConcurrentReaderConverges": testChangesConcurrentReader,
}

func changes(t *testing.T, s *store.Store, since int64) store.EntryChangeSet {
	t.Helper()
	cs, err := s.EntryChanges(t.Context(), since)
	if err != nil {
		t.Fatalf("EntryChanges(%d) error = %v", since, err)
	}
	return cs
}

func changedIDs(cs store.EntryChangeSet) []string {
	var out []string
	for _, e := range cs.Changed {
		out = append(out, e.ID)
	}
	return out
}

func sorted(ids ...string) []string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return ids
}

func testChangesFullFromZero(t *testing.T, s *store.Store) {
	cs := changes(t, s, 0)
	if !cs.Full || cs.Revision != 0 || len(cs.Changed) != 0 || len(cs.Deleted) != 0 {
		t.Errorf("EntryChanges(0) on an empty store = %+v, want Full, revision 0, nothing", cs)
	}
	es := create(t, s, entry("a", "n1"), entry("b", "n1"))
	cs = changes(t, s, 0)
	if !cs.Full || cs.Revision != revision(t, s) || !slices.Equal(changedIDs(cs), sorted(es[0].ID, es[1].ID)) {
		t.Errorf("EntryChanges(0) = %+v, want Full with both entries", cs)
	}
}

func testChangesIncremental(t *testing.T, s *store.Store) {
	es := create(t, s, entry("a", "n1"), entry("b", "n1"), entry("c", "n1"))
	since := revision(t, s)
	upd := es[0]
	upd.Hint = "changed"
	_, err := s.UpdateEntry(ctxFor(t), upd)
	must(t, "UpdateEntry", err)
	_, err = s.DeleteEntries(ctxFor(t), []string{es[1].ID})
	must(t, "DeleteEntries", err)
	added := create(t, s, entry("d", "n1"))[0]

	cs := changes(t, s, since)
	if cs.Full {
		t.Fatalf("EntryChanges(%d) is Full, want incremental", since)
	}
	if cs.Revision != revision(t, s) || cs.Revision != since+3 {
		t.Errorf("Revision = %d, want %d", cs.Revision, since+3)
	}
	if got, want := changedIDs(cs), sorted(es[0].ID, added.ID); !slices.Equal(got, want) {
		t.Errorf("Changed = %v, want %v", got, want)
	}
	if !slices.Equal(cs.Deleted, []string{es[1].ID}) {
		t.Errorf("Deleted = %v, want [%s]", cs.Deleted, es[1].ID)
	}
	for _, e := range cs.Changed {
		if e.ID == es[0].ID && e.Hint != "changed" {
			t.Errorf("Changed carries a stale entry: %+v", e)
		}
	}
	// A reader one step further sees only what came after.
	cs = changes(t, s, since+2)
	if got := changedIDs(cs); cs.Full || !slices.Equal(got, []string{added.ID}) || len(cs.Deleted) != 0 {
		t.Errorf("EntryChanges(%d) = %+v, want only %s", since+2, cs, added.ID)
	}
}

func testChangesUpToDate(t *testing.T, s *store.Store) {
	create(t, s, entry("a", "n1"))
	cs := changes(t, s, revision(t, s))
	if cs.Full || len(cs.Changed) != 0 || len(cs.Deleted) != 0 || cs.Revision != revision(t, s) {
		t.Errorf("EntryChanges(current) = %+v, want nothing", cs)
	}
}

func testChangesFromTheFuture(t *testing.T, s *store.Store) {
	create(t, s, entry("a", "n1"))
	cs := changes(t, s, revision(t, s)+10)
	if !cs.Full || len(cs.Changed) != 1 {
		t.Errorf("EntryChanges(future) = %+v, want Full with 1 entry", cs)
	}
}

func testChangesRecreated(t *testing.T, s *store.Store) {
	e := entry("a", "n1")
	e.ID = "fixed"
	create(t, s, e)
	since := revision(t, s)
	_, err := s.DeleteEntries(ctxFor(t), []string{"fixed"})
	must(t, "DeleteEntries", err)
	create(t, s, e)
	cs := changes(t, s, since)
	if !slices.Equal(changedIDs(cs), []string{"fixed"}) || len(cs.Deleted) != 0 {
		t.Errorf("EntryChanges() = %+v, want fixed changed and not deleted", cs)
	}
}

func testChangesPruned(t *testing.T, s *store.Store) {
	es := create(t, s, entry("a", "n1"), entry("b", "n1"), entry("c", "n1"))
	early := revision(t, s)
	_, err := s.DeleteEntries(ctxFor(t), []string{es[0].ID})
	must(t, "DeleteEntries", err)
	afterFirst := revision(t, s)
	_, err = s.DeleteEntries(ctxFor(t), []string{es[1].ID})
	must(t, "DeleteEntries", err)

	// Nothing is older than a time before the deletions.
	n, err := s.PruneTombstones(t.Context(), time.Unix(0, 1))
	must(t, "PruneTombstones", err)
	if n != 0 || changes(t, s, early).Full {
		t.Fatalf("PruneTombstones(long ago) = %d, want 0 and incremental changes", n)
	}
	n, err = s.PruneTombstones(t.Context(), time.Now().Add(time.Hour))
	must(t, "PruneTombstones", err)
	if n != 2 {
		t.Errorf("PruneTombstones(future) = %d, want 2", n)
	}
	// Readers from before the pruned deletions must resync in full.
	for _, since := range []int64{early, afterFirst} {
		cs := changes(t, s, since)
		if !cs.Full || !slices.Equal(changedIDs(cs), []string{es[2].ID}) {
			t.Errorf("EntryChanges(%d) after pruning = %+v, want Full with only %s", since, cs, es[2].ID)
		}
	}
	// A reader that had seen every pruned deletion continues incrementally.
	cur := revision(t, s)
	if cs := changes(t, s, cur); cs.Full {
		t.Errorf("EntryChanges(current) after pruning is Full, want incremental")
	}
	if revision(t, s) != cur {
		t.Errorf("PruneTombstones changed the revision")
	}
}

func testChangesNotAffectedByTouch(t *testing.T, s *store.Store) {
	e := create(t, s, entry("a", "n1"))[0]
	since := revision(t, s)
	must(t, "TouchEntries", s.TouchEntries(t.Context(), []string{e.ID}, epoch))
	if cs := changes(t, s, since); len(cs.Changed) != 0 {
		t.Errorf("EntryChanges() after a touch = %+v, want nothing", cs)
	}
}

// testChangesConcurrentReader syncs a copy of the entries through
// EntryChanges while writers create, update and delete concurrently: the
// copy must end up equal to the store. This fails if revisions could
// become visible out of order.
func testChangesConcurrentReader(t *testing.T, s *store.Store) {
	const writers, each = 3, 8
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			ctx := ctxFor(t)
			for i := range each {
				res, err := s.CreateEntries(ctx, []store.Entry{entry(fmt.Sprintf("w%d-%d", w, i), "n1")}, true)
				if err != nil {
					t.Errorf("CreateEntries() error = %v", err)
					return
				}
				e := res[0].Entry
				switch i % 3 {
				case 1:
					e.Hint = "updated"
					if _, err := s.UpdateEntry(ctx, e); err != nil {
						t.Errorf("UpdateEntry() error = %v", err)
					}
				case 2:
					if _, err := s.DeleteEntries(ctx, []string{e.ID}); err != nil {
						t.Errorf("DeleteEntries() error = %v", err)
					}
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	copyOf := map[string]store.Entry{}
	var since int64
	pull := func() {
		cs := changes(t, s, since)
		if cs.Full {
			clear(copyOf)
		}
		for _, id := range cs.Deleted {
			delete(copyOf, id)
		}
		for _, e := range cs.Changed {
			copyOf[e.ID] = e
		}
		since = cs.Revision
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			pull()
		}
	}
	pull()
	all, err := s.ListEntries(t.Context(), store.EntryFilter{})
	must(t, "ListEntries", err)
	want := map[string]store.Entry{}
	for _, e := range all {
		want[e.ID] = e
	}
	if diff := cmp.Diff(want, copyOf, cmpOpts); diff != "" {
		t.Errorf("synced copy differs from the store (-store +copy):\n%s", diff)
	}
}
