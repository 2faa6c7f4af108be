package agentapi

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/model"
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

// TestLowestAfter: the page is the lowest ids after the cursor, in order,
// and more says whether any are left.
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

// TestSyncPageRestarts: a page token of a sync that started too long ago,
// or sent to a server whose entries are older than the first page's, is
// refused FailedPrecondition (the agent starts its pages again), naming
// page_token.
func TestSyncPageRestarts(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	entries := []*model.Entry{{ID: "a", Revision: 1}, {ID: "b", Revision: 2}}
	s := &Service{}
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
		err := s.syncPage(req, &agentv1.SyncResponse{}, entries, tc.rev, now)
		if !errkind.Is(err, errkind.FailedPrecondition) || !strings.Contains(err.Error(), "page_token") {
			t.Errorf("syncPage(%s) = %v, want FailedPrecondition naming page_token", tc.name, err)
		}
	}
	// A current token continues where it left off, at the first page's revision.
	resp := &agentv1.SyncResponse{}
	tok := pageToken{mode: modeFull, first: 4, issued: now.Unix(), after: "a"}
	if err := s.syncPage(&agentv1.SyncRequest{PageSize: 1, PageToken: tok.encode()}, resp, entries, 5, now); err != nil {
		t.Fatal(err)
	}
	if len(resp.GetEntries()) != 1 || resp.GetEntries()[0].GetId() != "b" || resp.GetRevision() != 4 || resp.GetNextPageToken() != "" {
		t.Errorf("syncPage(after a) = %v, want entry b alone, revision 4, the last page", resp)
	}
}
