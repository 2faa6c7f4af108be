package server_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/signet-id/signet/internal/apiconv"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/testenv"
)

// pagedEntries registers n entries of nodeA with the ids e00, e01, ….
func pagedEntries(t *testing.T, env *testenv.Env, n int) {
	t.Helper()
	for i := range n {
		e := entry(fmt.Sprintf("spiffe://example.org/paged/%02d", i), nodeA, false)
		e.Id = fmt.Sprintf("e%02d", i)
		createEntry(t, env, e)
	}
}

// syncAll pages through one sync with page size size, calling between
// after each page but the last; it returns the pages.
func syncAll(t *testing.T, a *testenv.AgentConn, req *agentv1.SyncRequest, size int32, between func(page int)) []*agentv1.SyncResponse {
	t.Helper()
	var pages []*agentv1.SyncResponse
	token := ""
	for page := 0; ; page++ {
		r := &agentv1.SyncRequest{KnownRevision: req.GetKnownRevision(), EntrySetDigest: req.GetEntrySetDigest(),
			PageSize: size, PageToken: token}
		resp, err := a.Client.Sync(t.Context(), r)
		if err != nil {
			t.Fatalf("Sync(page %d) = %v", page, err)
		}
		pages = append(pages, resp)
		if token = resp.GetNextPageToken(); token == "" {
			return pages
		}
		if page > 100 {
			t.Fatal("Sync never reached a last page")
		}
		if between != nil {
			between(page)
		}
	}
}

// TestSyncPagesFullSet: a node with more entries than a page gets all of
// them, once each, in id order, in pages of at most page_size, each page
// naming the last id it covers, every page at the first page's revision.
func TestSyncPagesFullSet(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	pagedEntries(t, env, 25)
	pages := syncAll(t, a, &agentv1.SyncRequest{}, 4, nil)
	if len(pages) != 7 {
		t.Errorf("Sync(page_size 4) of 25 entries took %d pages, want 7", len(pages))
	}
	var ids []string
	for i, p := range pages {
		if !p.GetFull() || len(p.GetEntries()) > 4 || p.GetRevision() != pages[0].GetRevision() {
			t.Errorf("page %d: full %v, %d entries, revision %d; want full, at most 4, revision %d",
				i, p.GetFull(), len(p.GetEntries()), p.GetRevision(), pages[0].GetRevision())
		}
		for _, e := range p.GetEntries() {
			ids = append(ids, e.GetId())
		}
		last := p.GetNextPageToken() == ""
		if !last && p.GetPageLastId() != ids[len(ids)-1] || last && p.GetPageLastId() != "" {
			t.Errorf("page %d: page_last_id %q, want the page's last id (empty on the last page)", i, p.GetPageLastId())
		}
	}
	want := make([]string, 25)
	for i := range want {
		want[i] = fmt.Sprintf("e%02d", i)
	}
	if !slices.Equal(ids, want) {
		t.Errorf("paged entries = %v, want %v", ids, want)
	}
}

// TestSyncUnpagedRequest: a request without page_size (an agent that does
// not page) gets the old answer: one full response, no page fields.
func TestSyncUnpagedRequest(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	pagedEntries(t, env, 25)
	resp, err := a.Client.Sync(t.Context(), &agentv1.SyncRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetFull() || len(resp.GetEntries()) != 25 || resp.GetNextPageToken() != "" || resp.GetPageLastId() != "" {
		t.Errorf("Sync(no page_size) = full %v, %d entries, next %q, last %q; want one full response of 25",
			resp.GetFull(), len(resp.GetEntries()), resp.GetNextPageToken(), resp.GetPageLastId())
	}
}

// TestSyncPagesChangesBetweenPages: entries created and deleted while a
// node pages are not lost: the pages report the first page's revision, so
// the next (incremental, paged) sync brings the new entry and, the digest
// being stale, the ids that tell the deletions.
func TestSyncPagesChangesBetweenPages(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	pagedEntries(t, env, 12)
	held := map[string]bool{}
	pages := syncAll(t, a, &agentv1.SyncRequest{}, 4, func(page int) {
		if page != 0 {
			return
		}
		// Behind the cursor (e03) and ahead of it.
		e := entry("spiffe://example.org/paged/late", nodeA, false)
		e.Id = "e01a"
		createEntry(t, env, e)
		env.DeleteEntry("e02")
		env.DeleteEntry("e09")
	})
	for _, p := range pages {
		for _, e := range p.GetEntries() {
			held[e.GetId()] = true
		}
	}
	if held["e01a"] || !held["e02"] || held["e09"] {
		t.Fatalf("first sync held e01a %v, e02 %v, e09 %v; want false, true (sent before), false (deleted before its page)",
			held["e01a"], held["e02"], held["e09"])
	}
	ids := slices.Collect(func(yield func(string) bool) {
		for id := range held {
			if !yield(id) {
				return
			}
		}
	})
	next := syncAll(t, a, &agentv1.SyncRequest{KnownRevision: pages[0].GetRevision(), EntrySetDigest: apiconv.EntrySetDigest(ids)}, 3, nil)
	listed := map[string]bool{}
	for _, p := range next {
		if p.GetFull() || !p.GetEntryIdsSet() {
			t.Fatalf("catch-up page: full %v, entry_ids_set %v; want incremental with ids", p.GetFull(), p.GetEntryIdsSet())
		}
		for _, e := range p.GetEntries() {
			held[e.GetId()] = true
		}
		for _, id := range p.GetEntryIds() {
			listed[id] = true
		}
	}
	for id := range held {
		if !listed[id] {
			delete(held, id)
		}
	}
	want := []string{"e00", "e01", "e01a", "e03", "e04", "e05", "e06", "e07", "e08", "e10", "e11"}
	if got := slices.Sorted(func(yield func(string) bool) {
		for id := range held {
			if !yield(id) {
				return
			}
		}
	}); !slices.Equal(got, want) {
		t.Errorf("after the catch-up sync the node holds %v, want %v", got, want)
	}
	// And once converged, an incremental sync is one empty page.
	last := next[len(next)-1]
	again := syncAll(t, a, &agentv1.SyncRequest{KnownRevision: last.GetRevision(), EntrySetDigest: apiconv.EntrySetDigest(want)}, 3, nil)
	if len(again) != 1 || len(again[0].GetEntries()) != 0 || again[0].GetEntryIdsSet() {
		t.Errorf("converged sync = %d pages, %d entries, ids %v; want one empty page", len(again), len(again[0].GetEntries()), again[0].GetEntryIdsSet())
	}
}

// TestSyncPagesChangedOnly: an agent holding the right set of ids pages
// through only the entries changed since its revision.
func TestSyncPagesChangedOnly(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	pagedEntries(t, env, 6)
	first := syncAll(t, a, &agentv1.SyncRequest{}, 100, nil)
	var ids []string
	for _, e := range first[0].GetEntries() {
		ids = append(ids, e.GetId())
	}
	e := env.CreateEntry(&commonv1.Entry{Id: "e99", SpiffeId: "spiffe://example.org/paged/99", ParentId: nodeA,
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:1000"}}})
	pages := syncAll(t, a, &agentv1.SyncRequest{KnownRevision: first[0].GetRevision(), EntrySetDigest: apiconv.EntrySetDigest(ids)}, 100, nil)
	if len(pages) != 1 || pages[0].GetFull() || len(pages[0].GetEntries()) != 1 || pages[0].GetEntries()[0].GetId() != e.GetId() || !pages[0].GetEntryIdsSet() {
		t.Errorf("incremental sync after one creation = %v, want the one entry and the ids (the digest moved)", pages)
	}
	ids = append(ids, e.GetId())
	env.DeleteEntry("e00")
	env.DeleteEntry("e99")
	ids = slices.DeleteFunc(ids, func(id string) bool { return id == "e00" || id == "e99" })
	// The digest the agent sends matches the server's set: no ids needed.
	pages = syncAll(t, a, &agentv1.SyncRequest{KnownRevision: pages[0].GetRevision(), EntrySetDigest: apiconv.EntrySetDigest(ids)}, 100, nil)
	if len(pages) != 1 || pages[0].GetEntryIdsSet() || len(pages[0].GetEntries()) != 0 {
		t.Errorf("incremental sync with a current digest = %v, want one page without ids or entries", pages)
	}
}

// TestSyncPageTokenErrors: bad page tokens and page sizes are refused as
// invalid arguments that name the field.
func TestSyncPageTokenErrors(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	pagedEntries(t, env, 3)
	first, err := a.Client.Sync(t.Context(), &agentv1.SyncRequest{PageSize: 1})
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("Sync(page_size 1) = %v, %v; want a next page", first, err)
	}
	for _, tc := range []struct {
		name, field string
		req         *agentv1.SyncRequest
	}{
		{"garbage", "page_token", &agentv1.SyncRequest{PageSize: 1, PageToken: "not a token!"}},
		{"unknown version", "page_token", &agentv1.SyncRequest{PageSize: 1, PageToken: "CUYAAAA"}},
		{"oversized", "page_token", &agentv1.SyncRequest{PageSize: 1, PageToken: strings.Repeat("A", 600)}},
		{"other known_revision", "page_token", &agentv1.SyncRequest{PageSize: 1, KnownRevision: 1, PageToken: first.GetNextPageToken()}},
		{"token without page_size", "page_token", &agentv1.SyncRequest{PageToken: first.GetNextPageToken()}},
		{"negative page_size", "page_size", &agentv1.SyncRequest{PageSize: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Client.Sync(t.Context(), tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.field) {
				t.Errorf("Sync(%s) = %v, want InvalidArgument naming %s", tc.name, err, tc.field)
			}
		})
	}
}

// TestSyncPagesLargeEntries: a node whose entries outgrow one 4 MiB
// message is refused an unpaged sync (ResourceExhausted, naming page_size)
// and gets every entry in pages bounded by bytes, each far below the limit.
func TestSyncPagesLargeEntries(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	const n = 500 // about 9 KB each: 4.5 MB in all
	var entries []*commonv1.Entry
	for i := range n {
		e := &commonv1.Entry{Id: fmt.Sprintf("big%03d", i), SpiffeId: fmt.Sprintf("spiffe://example.org/big/%03d", i), ParentId: nodeA,
			Hint: strings.Repeat("h", 1000)}
		for j := range 8 {
			e.Selectors = append(e.Selectors, &commonv1.Selector{Type: "k8s", Value: fmt.Sprintf("pod-label:l%d:%s", j, strings.Repeat("v", 1000))})
		}
		entries = append(entries, e)
	}
	for half := range 2 { // one request would pass the test's admin connection's limit
		resp, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: entries[half*n/2 : (half+1)*n/2], Atomic: true})
		if err != nil {
			t.Fatal(err)
		}
		if st := resp.GetResults()[0].GetStatus(); codes.Code(st.GetCode()) != codes.OK {
			t.Fatalf("CreateEntries: %s", st.GetMessage())
		}
	}
	_, err := a.Client.Sync(t.Context(), &agentv1.SyncRequest{})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "page_size") {
		t.Errorf("Sync(no page_size) of 4.5 MB of entries = %v, want ResourceExhausted naming page_size", err)
	}
	pages := syncAll(t, a, &agentv1.SyncRequest{}, 5000, nil)
	got := 0
	for i, p := range pages {
		got += len(p.GetEntries())
		if size := proto.Size(p); size > 1<<20+16<<10 {
			t.Errorf("page %d is %d bytes, want about 1 MiB at most", i, size)
		}
	}
	if got != n || len(pages) < 5 {
		t.Errorf("paged sync = %d entries in %d pages, want %d in at least 5 byte-bounded pages", got, len(pages), n)
	}
}
