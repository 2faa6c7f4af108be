package agentapi

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/entrycache"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// referenceSyncPage is how syncPage answered before it read pages from the
// entry cache: from every entry of the node, built on every page, with a
// heap selecting the page (lowestAfter). TestSyncPageMatchesReference holds
// syncPage to it.
func referenceSyncPage(req *agentv1.SyncRequest, resp *agentv1.SyncResponse, entries []*model.Entry, rev int64, now time.Time) error {
	known := req.GetKnownRevision()
	var tok pageToken
	if req.GetPageToken() == "" {
		tok = pageToken{known: known, first: rev, issued: now.Unix()}
		switch {
		case known <= 0 || known > rev:
			tok.mode = modeFull
		case known == rev:
			return nil
		default:
			ids := make([]string, len(entries))
			for i, e := range entries {
				ids[i] = e.ID
			}
			tok.mode = modeChanged
			if digest := apiconv.EntrySetDigest(ids); string(digest) != string(req.GetEntrySetDigest()) {
				tok.mode = modeIDs
			}
		}
	} else {
		var err error
		if tok, err = resumePageToken(req, rev, now); err != nil {
			return err
		}
	}
	resp.Revision = tok.first
	resp.Full = tok.mode == modeFull
	resp.EntryIdsSet = tok.mode == modeIDs
	size := min(int(req.GetPageSize()), maxSyncPageSize)
	page, more := lowestAfter(entries, tok, size)
	bytes := 0
	for i, e := range page {
		changed := tok.mode != modeIDs || e.Revision > tok.known
		var pe *commonv1.Entry
		n := 0
		if changed {
			pe = apiconv.EntryToProto(*e)
			n += proto.Size(pe) + 4
		}
		if tok.mode == modeIDs {
			n += len(e.ID) + 3
		}
		if i > 0 && bytes+n > maxSyncPageBytes {
			page, more = page[:i], true
			break
		}
		bytes += n
		if changed {
			resp.Entries = append(resp.Entries, pe)
		}
		if tok.mode == modeIDs {
			resp.EntryIds = append(resp.EntryIds, e.ID)
		}
	}
	if more {
		tok.after = page[len(page)-1].ID
		resp.PageLastId = tok.after
		resp.NextPageToken = tok.encode()
	}
	return nil
}

// lowestAfter returns, in id order, the size entries with the lowest ids
// after the token's cursor that the token's mode sends (modeChanged: only
// those changed since its known revision), and whether more follow.
func lowestAfter(entries []*model.Entry, tok pageToken, size int) ([]*model.Entry, bool) {
	h := make(entryHeap, 0, min(size, len(entries)))
	more := false
	for _, e := range entries {
		if (tok.after != "" && e.ID <= tok.after) || (tok.mode == modeChanged && e.Revision <= tok.known) {
			continue
		}
		switch {
		case len(h) < size:
			heap.Push(&h, e)
		case e.ID < h[0].ID:
			h[0] = e
			heap.Fix(&h, 0)
			more = true
		default:
			more = true
		}
	}
	slices.SortFunc(h, func(a, b *model.Entry) int { return strings.Compare(a.ID, b.ID) })
	return h, more
}

// entryHeap is a max-heap of entries by id.
type entryHeap []*model.Entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].ID > h[j].ID }
func (h entryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *entryHeap) Push(x any)        { *h = append(*h, x.(*model.Entry)) }
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// TestLowestAfter: the reference's page is the lowest ids after the
// cursor, in order, and more says whether any are left.
func TestLowestAfter(t *testing.T) {
	var entries []*model.Entry
	for _, i := range []int{5, 1, 9, 3, 7, 2, 8, 0, 6, 4} {
		entries = append(entries, &model.Entry{ID: fmt.Sprintf("e%d", i), Revision: int64(i)})
	}
	ids := func(es []*model.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		tok  pageToken
		size int
		want []string
		more bool
	}{
		{"first page", pageToken{mode: modeFull}, 3, []string{"e0", "e1", "e2"}, true},
		{"after cursor", pageToken{mode: modeFull, after: "e6"}, 3, []string{"e7", "e8", "e9"}, false},
		{"all fit", pageToken{mode: modeIDs}, 20, []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"}, false},
		{"changed only", pageToken{mode: modeChanged, known: 6}, 2, []string{"e7", "e8"}, true},
	} {
		got, more := lowestAfter(entries, tc.tok, tc.size)
		if !slices.Equal(ids(got), tc.want) || more != tc.more {
			t.Errorf("lowestAfter(%s) = %v, %v; want %v, %v", tc.name, ids(got), more, tc.want, tc.more)
		}
	}
}

// syncRefWorld is a node's entries in an entry cache: directly under the
// node, under two aliases the node qualifies for and one it does not, and
// under another node, some expired, some large enough that a page stops at
// maxSyncPageBytes.
type syncRefWorld struct {
	rng      *rand.Rand
	c        *entrycache.Cache
	node     model.Node
	parents  []spiffeid.ID
	now      time.Time
	rev      int64
	ids      []string
	large    bool
	nextID   int
	expiring map[string]bool
}

var refTD = spiffeid.RequireTrustDomainFromString("example.org")

func newSyncRefWorld(seed uint64, n int, large bool) *syncRefWorld {
	id := func(p string) spiffeid.ID { return spiffeid.RequireFromPath(refTD, p) }
	serverID := id("/signet/server")
	nodeSels := []model.Selector{{Type: "test", Value: "rack:1"}, {Type: "test", Value: "role:web"}}
	w := &syncRefWorld{
		rng: rand.New(rand.NewPCG(seed, 7)), c: entrycache.New(serverID),
		node: model.Node{SPIFFEID: id("/node/a"), Selectors: nodeSels},
		now:  time.Unix(1_800_000_000, 0), large: large, expiring: map[string]bool{},
	}
	aliases := []model.Entry{
		{ID: "alias-1", SPIFFEID: id("/alias/web"), ParentID: serverID, Selectors: nodeSels[1:], Revision: 1},
		{ID: "alias-2", SPIFFEID: id("/alias/rack"), ParentID: serverID, Selectors: nodeSels, Revision: 1},
		{ID: "alias-3", SPIFFEID: id("/alias/db"), ParentID: serverID, Selectors: []model.Selector{{Type: "test", Value: "role:db"}}, Revision: 1},
	}
	w.parents = []spiffeid.ID{w.node.SPIFFEID, w.node.SPIFFEID, aliases[0].SPIFFEID, aliases[1].SPIFFEID, aliases[2].SPIFFEID, id("/node/b")}
	w.rev = 1
	all := aliases
	for range n {
		w.rev += int64(w.rng.IntN(3))
		all = append(all, w.entry(w.rev))
	}
	w.c.Apply(store.EntryChangeSet{Revision: w.rev, Full: true, Changed: all})
	return w
}

// entry makes a new entry at revision rev with a random id.
func (w *syncRefWorld) entry(rev int64) model.Entry {
	w.nextID++
	e := model.Entry{
		ID:        fmt.Sprintf("%x-%d", w.rng.Uint32()>>w.rng.IntN(32), w.nextID),
		SPIFFEID:  spiffeid.RequireFromPath(refTD, fmt.Sprintf("/w/%d", w.nextID)),
		ParentID:  w.parents[w.rng.IntN(len(w.parents))],
		Selectors: []model.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", w.nextID)}},
		Revision:  rev,
	}
	if w.rng.IntN(10) == 0 {
		e.FederatesWith = []spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString(fmt.Sprintf("fed%d.org", w.rng.IntN(3)))}
	}
	if w.rng.IntN(15) == 0 {
		e.ExpiresAt = w.now.Add(time.Duration(w.rng.IntN(3)-1) * time.Hour)
	}
	if w.large && w.rng.IntN(2) == 0 {
		for i := range 80 {
			e.DNSNames = append(e.DNSNames, fmt.Sprintf("%s.%d.example.org", strings.Repeat("x", 200), i))
		}
	}
	w.ids = append(w.ids, e.ID)
	return e
}

// mutate adds, updates and deletes a few entries at a new revision, as
// the change feed does between two pages.
func (w *syncRefWorld) mutate() {
	w.rev++
	var cs store.EntryChangeSet
	for range 1 + w.rng.IntN(4) {
		cs.Changed = append(cs.Changed, w.entry(w.rev))
	}
	for range w.rng.IntN(3) {
		cs.Deleted = append(cs.Deleted, w.ids[w.rng.IntN(len(w.ids))])
	}
	if w.rng.IntN(2) == 0 {
		// An update of an existing entry: the same id, a new revision.
		e := w.entry(w.rev)
		e.ID = w.ids[w.rng.IntN(len(w.ids)-1)]
		if !slices.Contains(cs.Deleted, e.ID) {
			cs.Changed = append(cs.Changed, e)
		}
	}
	cs.Revision = w.rev
	w.c.Apply(cs)
}

// TestSyncPageMatchesReference: every page of paged syncs (full,
// changed-only and with entry ids; page sizes from 1 to the maximum; pages
// cut at maxSyncPageBytes; entries changing between pages) is identical to
// the reference's, which built every entry of the node on every page, and
// so are the federated bundles the Sync sends.
func TestSyncPageMatchesReference(t *testing.T) {
	for seed := range uint64(40) {
		large := seed%4 == 3
		w := newSyncRefWorld(seed, 150+int(seed)*7, large)
		s := &Service{cfg: Config{Entries: w.c}}
		sizes := []int32{1, 2, 7, 40, 333, maxSyncPageSize}
		size := sizes[w.rng.IntN(len(sizes))]
		rev := w.c.Revision()
		var known int64
		switch w.rng.IntN(5) {
		case 0:
			known = 0
		case 1:
			known = rev + 3 // a server that lost history: a full sync
		case 2:
			known = rev
		default:
			known = 1 + w.rng.Int64N(rev)
		}
		digest := []byte("stale")
		if w.rng.IntN(2) == 0 {
			digest = apiconv.EntrySetDigest(w.c.NodeEntryIDs(w.node.SPIFFEID, w.node.Selectors, w.now))
		}
		token := ""
		for page := 0; ; page++ {
			req := &agentv1.SyncRequest{KnownRevision: known, EntrySetDigest: digest, PageSize: size, PageToken: token}
			rev := w.c.Revision()
			got, want := &agentv1.SyncResponse{Revision: rev}, &agentv1.SyncResponse{Revision: rev}
			gotErr := s.syncPage(req, got, s.viewOf(w.node, w.now), rev)
			wantErr := referenceSyncPage(req, want, w.c.NodeEntries(w.node.SPIFFEID, w.node.Selectors, w.now), rev, w.now)
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Fatalf("seed %d page %d: syncPage() = %v, the reference %v", seed, page, gotErr, wantErr)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("seed %d page %d (size %d, known %d of %d): syncPage() differs from the reference:\n got %d entries, %d ids, last %q\nwant %d entries, %d ids, last %q",
					seed, page, size, known, rev, len(got.GetEntries()), len(got.GetEntryIds()), got.GetPageLastId(),
					len(want.GetEntries()), len(want.GetEntryIds()), want.GetPageLastId())
			}
			if large && page == 0 && size == maxSyncPageSize && known == 0 && got.GetNextPageToken() == "" {
				t.Errorf("seed %d: a full sync of large entries fit one page: the byte bound went untested", seed)
			}
			if token = got.GetNextPageToken(); token == "" {
				break
			}
			if page > 10000 {
				t.Fatalf("seed %d: no last page", seed)
			}
			if w.rng.IntN(4) == 0 {
				w.mutate()
			}
		}
		// The federated trust domains, from the cache, are those the
		// node's entries name.
		var wantTDs []spiffeid.TrustDomain
		for _, e := range w.c.NodeEntries(w.node.SPIFFEID, w.node.Selectors, w.now) {
			for _, td := range e.FederatesWith {
				if !slices.Contains(wantTDs, td) {
					wantTDs = append(wantTDs, td)
				}
			}
		}
		slices.SortFunc(wantTDs, func(a, b spiffeid.TrustDomain) int { return strings.Compare(a.Name(), b.Name()) })
		if got := s.viewOf(w.node, w.now).federatesWith(); !slices.Equal(got, wantTDs) {
			t.Errorf("seed %d: federatesWith() = %v, want %v", seed, got, wantTDs)
		}
	}
}
