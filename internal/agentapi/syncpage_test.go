package agentapi

import (
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/entrycache"
	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// FuzzParsePageToken: any page_token is either refused as an invalid
// page_token or decodes to a token that encodes back to itself.
func FuzzParsePageToken(f *testing.F) {
	for _, t := range []pageToken{
		{mode: modeFull, first: 7, issued: 1_700_000_000, after: "e01"},
		{mode: modeIDs, known: 3, first: 9, issued: 1, after: "0198c1e2-aaaa-7bbb-8ccc-0123456789ab"},
		{mode: modeChanged, known: 1 << 40, first: 1 << 41, after: "x"},
	} {
		f.Add(t.encode())
	}
	f.Add("")
	f.Add("AQ")
	f.Add("not base64!")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := parsePageToken(s)
		if err != nil {
			if !errkind.Is(err, errkind.InvalidArgument) {
				t.Fatalf("parsePageToken(%q) = %v, want an InvalidArgument", s, err)
			}
			return
		}
		again, err := parsePageToken(tok.encode())
		if err != nil || again != tok {
			t.Fatalf("parsePageToken(encode(%+v)) = %+v, %v; want the same token", tok, again, err)
		}
	})
}

// TestSyncPageRestarts: a page token of a sync that started too long ago,
// or sent to a server whose entries are older than the first page's, is
// refused FailedPrecondition (the agent starts its pages again), naming
// page_token.
func TestSyncPageRestarts(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	node := model.Node{SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/node/a")}
	c := entrycache.New(spiffeid.RequireFromString("spiffe://example.org/signet/server"))
	entry := func(id string, rev int64) model.Entry {
		return model.Entry{ID: id, SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/w/" + id), ParentID: node.SPIFFEID,
			Selectors: []model.Selector{{Type: "unix", Value: "uid:1"}}, Revision: rev}
	}
	c.Apply(store.EntryChangeSet{Revision: 2, Full: true, Changed: []model.Entry{entry("a", 1), entry("b", 2)}})
	s := &Service{cfg: Config{Entries: c}}
	for _, tc := range []struct {
		name string
		tok  pageToken
		rev  int64
	}{
		{"too old", pageToken{mode: modeFull, first: 5, issued: now.Add(-maxPageAge - time.Second).Unix(), after: "a"}, 5},
		{"from the future", pageToken{mode: modeFull, first: 5, issued: now.Add(maxPageAge + time.Minute).Unix(), after: "a"}, 5},
		{"replica behind", pageToken{mode: modeFull, first: 9, issued: now.Unix(), after: "a"}, 5},
	} {
		req := &agentv1.SyncRequest{PageSize: 1, PageToken: tc.tok.encode()}
		err := s.syncPage(req, &agentv1.SyncResponse{}, s.viewOf(node, now), tc.rev)
		if !errkind.Is(err, errkind.FailedPrecondition) || !strings.Contains(err.Error(), "page_token") {
			t.Errorf("syncPage(%s) = %v, want FailedPrecondition naming page_token", tc.name, err)
		}
	}
	// A current token continues where it left off, at the first page's revision.
	resp := &agentv1.SyncResponse{}
	tok := pageToken{mode: modeFull, first: 4, issued: now.Unix(), after: "a"}
	if err := s.syncPage(&agentv1.SyncRequest{PageSize: 1, PageToken: tok.encode()}, resp, s.viewOf(node, now), 5); err != nil {
		t.Fatal(err)
	}
	if len(resp.GetEntries()) != 1 || resp.GetEntries()[0].GetId() != "b" || resp.GetRevision() != 4 || resp.GetNextPageToken() != "" {
		t.Errorf("syncPage(after a) = %v, want entry b alone, revision 4, the last page", resp)
	}
}
