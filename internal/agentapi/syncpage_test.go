package agentapi

import (
	"fmt"
	"slices"
	"testing"

	"github.com/signet-id/signet/internal/errkind"
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
