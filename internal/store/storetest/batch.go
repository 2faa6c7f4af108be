package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

// entryBatchTests cover store.EntryBatch: a batch written chunk by chunk in
// one transaction, committed whole or not at all.
var entryBatchTests = map[string]func(t *testing.T, s *store.Store){
	"ChunksCommitTogether":            testBatchChunksCommit,
	"InvalidInLastChunkLeavesNothing": testBatchInvalidLastChunk,
	"DuplicateAcrossChunks":           testBatchDuplicateAcrossChunks,
	"RollbackLeavesNothing":           testBatchRollback,
	"EachCommitsTheValid":             testBatchEachCommitsValid,
	"EachAllFailedWritesNothing":      testBatchEachAllFailed,
}

// batchChunk returns n valid entries named <prefix>-<i>.
func batchChunk(prefix string, n int) []store.Entry {
	out := make([]store.Entry, n)
	for i := range out {
		out[i] = entry(fmt.Sprintf("%s-%d", prefix, i), "n1", "unix:uid:1000", fmt.Sprintf("unix:gid:%d", i))
	}
	return out
}

func addChunk(t *testing.T, b *store.EntryBatch, entries []store.Entry) []store.EntryResult {
	t.Helper()
	res, err := b.Add(ctxFor(t), entries)
	if err != nil {
		t.Fatalf("EntryBatch.Add() error = %v", err)
	}
	if len(res) != len(entries) {
		t.Fatalf("EntryBatch.Add() = %d results for %d entries", len(res), len(entries))
	}
	return res
}

// wantNothingWritten checks that the store is as before a rejected batch.
func wantNothingWritten(t *testing.T, s *store.Store, rev int64) {
	t.Helper()
	if got := revision(t, s); got != rev {
		t.Errorf("Revision() = %d after a rejected batch, want %d", got, rev)
	}
	list, err := s.ListEntries(ctxFor(t), store.EntryFilter{})
	must(t, "ListEntries", err)
	if len(list) != 0 {
		t.Errorf("ListEntries() = %d entries after a rejected batch, want none", len(list))
	}
	if recs := auditLog(t, s); len(recs) != 0 {
		t.Errorf("audit log = %v after a rejected batch, want nothing", actions(recs))
	}
}

func testBatchChunksCommit(t *testing.T, s *store.Store) {
	rev := revision(t, s)
	b, err := s.BeginEntryBatch(ctxFor(t))
	must(t, "BeginEntryBatch", err)
	for c := range 3 {
		for i, r := range addChunk(t, b, batchChunk(fmt.Sprintf("c%d", c), 4)) {
			if r.Err != nil {
				t.Fatalf("chunk %d item %d error = %v", c, i, r.Err)
			}
			if r.Entry.ID == "" || r.Entry.Revision != b.Revision() {
				t.Fatalf("chunk %d item %d = id %q revision %d, want an id and revision %d", c, i, r.Entry.ID, r.Entry.Revision, b.Revision())
			}
		}
	}
	if b.Len() != 12 || b.Failed() != 0 {
		t.Fatalf("Len, Failed = %d, %d, want 12, 0", b.Len(), b.Failed())
	}
	got, err := b.Commit(ctxFor(t))
	must(t, "Commit", err)
	if got != rev+1 || revision(t, s) != rev+1 {
		t.Errorf("Commit() = revision %d, store at %d, want both %d: one transaction", got, revision(t, s), rev+1)
	}
	list, err := s.ListEntries(ctxFor(t), store.EntryFilter{})
	must(t, "ListEntries", err)
	if len(list) != 12 {
		t.Fatalf("ListEntries() = %d entries, want 12", len(list))
	}
	for _, e := range list {
		if e.Revision != got {
			t.Errorf("entry %s revision = %d, want %d", e.ID, e.Revision, got)
		}
	}
	// The selector index has every chunk's rows.
	byGID, err := s.ListEntries(ctxFor(t), store.EntryFilter{Selectors: sels("unix:gid:2")})
	must(t, "ListEntries(unix:gid:2)", err)
	var names []string
	for _, e := range byGID {
		names = append(names, e.SPIFFEID.Path())
	}
	if slices.Sort(names); !slices.Equal(names, []string{"/c0-2", "/c1-2", "/c2-2"}) {
		t.Errorf("ListEntries(unix:gid:2) = %v, want the third entry of each chunk", names)
	}
	recs := auditLog(t, s)
	if len(recs) != 12 {
		t.Fatalf("audit log has %d records, want one entry.create per entry (12)", len(recs))
	}
	verifyOK(t, s)
	if _, err := b.Add(ctxFor(t), batchChunk("late", 1)); err == nil {
		t.Error("Add() after Commit = nil error, want one")
	}
	// The store takes other writes again.
	create(t, s, entry("after", "n1"))
}

func testBatchInvalidLastChunk(t *testing.T, s *store.Store) {
	rev := revision(t, s)
	b, err := s.BeginEntryBatch(ctxFor(t))
	must(t, "BeginEntryBatch", err)
	addChunk(t, b, batchChunk("a", 3))
	addChunk(t, b, batchChunk("b", 3))
	last := batchChunk("c", 3)
	last[2].SPIFFEID = id("spiffe://other.org/x") // parent in example.org: fine; the store checks IDs itself
	last[2].Selectors = nil                       // no selectors: invalid
	res := addChunk(t, b, last)
	if res[2].Err == nil || errkind.Of(res[2].Err) != errkind.InvalidArgument {
		t.Fatalf("last chunk item 2 error = %v, want InvalidArgument", res[2].Err)
	}
	if b.Failed() != 1 {
		t.Errorf("Failed() = %d, want 1", b.Failed())
	}
	_, err = b.Commit(ctxFor(t))
	wantKind(t, "Commit", err, errkind.FailedPrecondition)
	wantNothingWritten(t, s, rev)
}

func testBatchDuplicateAcrossChunks(t *testing.T, s *store.Store) {
	rev := revision(t, s)
	b, err := s.BeginEntryBatch(ctxFor(t))
	must(t, "BeginEntryBatch", err)
	first := batchChunk("a", 3)
	first[1].ID = "chosen-id"
	addChunk(t, b, first)
	second := batchChunk("b", 3)
	second[0] = first[2] // the same SPIFFE ID, parent and selectors as item 2
	second[1].ID = "chosen-id"
	res := addChunk(t, b, second)
	for i, want := range []string{"in the batch twice (items 2 and 3)", "used twice in the batch (items 1 and 4)"} {
		if err := res[i].Err; err == nil || errkind.Of(err) != errkind.AlreadyExists || !strings.Contains(err.Error(), want) {
			t.Errorf("second chunk item %d error = %v, want AlreadyExists saying %q", i, err, want)
		}
	}
	if res[2].Err != nil {
		t.Errorf("second chunk item 2 error = %v, want none", res[2].Err)
	}
	_, err = b.Commit(ctxFor(t))
	wantKind(t, "Commit", err, errkind.FailedPrecondition)
	wantNothingWritten(t, s, rev)
}

func testBatchRollback(t *testing.T, s *store.Store) {
	rev := revision(t, s)
	b, err := s.BeginEntryBatch(ctxFor(t))
	must(t, "BeginEntryBatch", err)
	addChunk(t, b, batchChunk("a", 5))
	b.Rollback(ctxFor(t))
	b.Rollback(ctxFor(t)) // a second call does nothing
	if _, err := b.Commit(ctxFor(t)); err == nil {
		t.Error("Commit() after Rollback = nil error, want one")
	}
	wantNothingWritten(t, s, rev)
	create(t, s, entry("after", "n1"))
}

// testBatchEachCommitsValid: a batch begun with BeginEntryBatchEach commits
// every valid entry of every chunk in one revision, with its audit
// records, whatever failed beside it (within a chunk or against an earlier
// chunk).
func testBatchEachCommitsValid(t *testing.T, s *store.Store) {
	rev := revision(t, s)
	b, err := s.BeginEntryBatchEach(ctxFor(t))
	must(t, "BeginEntryBatchEach", err)
	first := batchChunk("a", 3)
	first[1].Selectors = nil // invalid
	addChunk(t, b, first)
	second := batchChunk("b", 3)
	second[0] = first[2] // a duplicate of an entry of the first chunk
	res := addChunk(t, b, second)
	if err := res[0].Err; errkind.Of(err) != errkind.AlreadyExists || !strings.Contains(err.Error(), "items 2 and 3") {
		t.Errorf("second chunk item 0 error = %v, want AlreadyExists naming items 2 and 3", err)
	}
	if b.Len() != 6 || b.Failed() != 2 {
		t.Fatalf("Len, Failed = %d, %d, want 6, 2", b.Len(), b.Failed())
	}
	got, err := b.Commit(ctxFor(t))
	must(t, "Commit", err)
	if got != rev+1 || revision(t, s) != rev+1 {
		t.Errorf("Commit() = revision %d, store at %d, want both %d", got, revision(t, s), rev+1)
	}
	list, err := s.ListEntries(ctxFor(t), store.EntryFilter{})
	must(t, "ListEntries", err)
	names := map[string]bool{}
	for _, e := range list {
		names[e.SPIFFEID.Path()] = true
	}
	for _, want := range []string{"/a-0", "/a-2", "/b-1", "/b-2"} {
		if !names[want] {
			t.Errorf("entry %s missing after Commit; have %v", want, names)
		}
	}
	if len(list) != 4 {
		t.Errorf("ListEntries() = %d entries, want the 4 valid ones", len(list))
	}
	if recs := auditLog(t, s); len(recs) != 4 {
		t.Errorf("audit log has %d records, want one entry.create per created entry (4)", len(recs))
	}
	verifyOK(t, s)
	create(t, s, entry("after", "n1"))
}

// testBatchEachAllFailed: when no entry of the batch is valid, Commit
// writes nothing and reports revision 0 without an error.
func testBatchEachAllFailed(t *testing.T, s *store.Store) {
	rev := revision(t, s)
	b, err := s.BeginEntryBatchEach(ctxFor(t))
	must(t, "BeginEntryBatchEach", err)
	bad := batchChunk("a", 2)
	bad[0].Selectors, bad[1].Selectors = nil, nil
	addChunk(t, b, bad)
	got, err := b.Commit(ctxFor(t))
	if err != nil || got != 0 {
		t.Errorf("Commit() = %d, %v; want 0, nil", got, err)
	}
	wantNothingWritten(t, s, rev)
	create(t, s, entry("after", "n1"))
}
