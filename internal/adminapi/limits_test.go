package adminapi_test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/testenv"
)

const (
	nodeA = "spiffe://example.org/node/a"
	// maxMessage bounds every error message: they quote caller-supplied
	// values, which must be truncated.
	maxMessage = 1024
)

// validEntry is an entry the server accepts; cases change one field.
func validEntry() *commonv1.Entry {
	return &commonv1.Entry{SpiffeId: "spiffe://example.org/web", ParentId: nodeA,
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:1000"}}}
}

// longID is a SPIFFE ID of exactly n bytes.
func longID(n int) string {
	prefix := "spiffe://example.org/"
	return prefix + strings.Repeat("a", n-len(prefix))
}

func selectors(n int) []*commonv1.Selector {
	out := make([]*commonv1.Selector, n)
	for i := range out {
		out[i] = &commonv1.Selector{Type: "unix", Value: fmt.Sprintf("supplementary_gid:%d", i)}
	}
	return out
}

func dnsNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("host-%d.example.org", i)
	}
	return out
}

func labels(n int) map[string]string {
	out := make(map[string]string, n)
	for i := range n {
		out[fmt.Sprintf("k%d", i)] = "v"
	}
	return out
}

// limitCases are entries at and past each bound. want is "" for an entry
// the server accepts, otherwise a word the InvalidArgument message must
// contain: the field as the user writes it.
var limitCases = []struct {
	name   string
	modify func(e *commonv1.Entry)
	want   string
}{
	{"hint at limit", func(e *commonv1.Entry) { e.Hint = strings.Repeat("h", 1024) }, ""},
	{"hint over limit", func(e *commonv1.Entry) { e.Hint = strings.Repeat("h", 1025) }, "hint"},
	{"hint of 3 MB", func(e *commonv1.Entry) { e.Hint = strings.Repeat("h", 3<<20) }, "hint"},
	{"hint with a newline", func(e *commonv1.Entry) { e.Hint = "a\nb" }, "hint"},
	{"spiffe_id at limit", func(e *commonv1.Entry) { e.SpiffeId = longID(2048) }, ""},
	{"spiffe_id over limit", func(e *commonv1.Entry) { e.SpiffeId = longID(2049) }, "spiffe_id"},
	{"parent_id over limit", func(e *commonv1.Entry) { e.ParentId = longID(2049) }, "parent_id"},
	{"selector value over limit", func(e *commonv1.Entry) {
		e.Selectors = []*commonv1.Selector{{Type: "unix", Value: "path:/" + strings.Repeat("p", 1<<20)}}
	}, "selectors[0]"},
	{"selector type over limit", func(e *commonv1.Entry) {
		e.Selectors = append(e.Selectors, &commonv1.Selector{Type: strings.Repeat("t", 65), Value: "x"})
	}, "selectors[1]"},
	{"selector type at limit", func(e *commonv1.Entry) {
		e.Selectors = append(e.Selectors, &commonv1.Selector{Type: strings.Repeat("t", 64), Value: "x"})
	}, ""},
	{"64 selectors", func(e *commonv1.Entry) { e.Selectors = selectors(64) }, ""},
	{"65 selectors", func(e *commonv1.Entry) { e.Selectors = selectors(65) }, "selectors"},
	{"128 dns names", func(e *commonv1.Entry) { e.DnsNames = dnsNames(128) }, ""},
	{"129 dns names", func(e *commonv1.Entry) { e.DnsNames = dnsNames(129) }, "dns_names"},
	{"dns name over 253 bytes", func(e *commonv1.Entry) {
		e.DnsNames = []string{"ok.example.org", strings.Repeat(strings.Repeat("d", 60)+".", 5)[:254]}
	}, "dns_names[1]"},
	{"64 labels", func(e *commonv1.Entry) { e.Labels = labels(64) }, ""},
	{"65 labels", func(e *commonv1.Entry) { e.Labels = labels(65) }, "labels"},
	{"label key not a key", func(e *commonv1.Entry) { e.Labels = map[string]string{"Owner Name": "x"} }, "labels"},
	{"label value over limit", func(e *commonv1.Entry) { e.Labels = map[string]string{"owner": strings.Repeat("v", 257)} }, "labels"},
	{"id at limit", func(e *commonv1.Entry) { e.Id = strings.Repeat("i", 255) }, ""},
	{"id over limit", func(e *commonv1.Entry) { e.Id = strings.Repeat("i", 1<<20) }, "id"},
}

// TestEntryLimits runs every limit through the real server's admin API,
// on create and on update.
func TestEntryLimits(t *testing.T) {
	env := testenv.New(t)
	for i, tc := range limitCases {
		t.Run(tc.name, func(t *testing.T) {
			e := validEntry()
			e.SpiffeId = fmt.Sprintf("spiffe://example.org/limit/%d", i)
			tc.modify(e)
			resp, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: []*commonv1.Entry{e}})
			if err != nil {
				t.Fatalf("CreateEntries: %v", err)
			}
			st := resp.GetResults()[0].GetStatus()
			checkStatus(t, "CreateEntries", codes.Code(st.GetCode()), st.GetMessage(), tc.want)
			if codes.Code(st.GetCode()) == codes.OK { // make room for the update below
				id := resp.GetResults()[0].GetEntry().GetId()
				if _, err := env.Admin.DeleteEntries(env.Ctx(), &adminv1.DeleteEntriesRequest{Ids: []string{id}}); err != nil {
					t.Fatalf("DeleteEntries: %v", err)
				}
			}

			// The same change made by UpdateEntry to an accepted entry.
			base := validEntry()
			base.SpiffeId = fmt.Sprintf("spiffe://example.org/update/%d", i)
			created, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: []*commonv1.Entry{base}})
			if err != nil || created.GetResults()[0].GetStatus().GetCode() != 0 {
				t.Fatalf("CreateEntries(base) = %v, %v", created, err)
			}
			upd := validEntry()
			upd.SpiffeId = base.SpiffeId
			tc.modify(upd)
			if upd.Id != "" {
				return // the id names the entry to update; covered by TestCallerEntryIDs
			}
			upd.Id = created.GetResults()[0].GetEntry().GetId()
			_, err = env.Admin.UpdateEntry(env.Ctx(), &adminv1.UpdateEntryRequest{Entry: upd})
			checkStatus(t, "UpdateEntry", status.Code(err), status.Convert(err).Message(), tc.want)
		})
	}
}

// TestCallerEntryIDs: entry ids given by callers are bounded before they
// reach the store, a log line or an error message.
func TestCallerEntryIDs(t *testing.T) {
	env := testenv.New(t)
	huge := strings.Repeat("x", 1<<20)
	tests := []struct {
		name string
		call func() error
	}{
		{"GetEntry", func() error {
			_, err := env.Admin.GetEntry(env.Ctx(), &adminv1.GetEntryRequest{Id: huge})
			return err
		}},
		{"DeleteEntries", func() error {
			_, err := env.Admin.DeleteEntries(env.Ctx(), &adminv1.DeleteEntriesRequest{Ids: []string{"fine", huge}})
			return err
		}},
		{"DeleteEntries with a space", func() error {
			_, err := env.Admin.DeleteEntries(env.Ctx(), &adminv1.DeleteEntriesRequest{Ids: []string{"a b"}})
			return err
		}},
		{"ListEntries page token", func() error {
			_, err := env.Admin.ListEntries(env.Ctx(), &adminv1.ListEntriesRequest{PageToken: huge})
			return err
		}},
		{"UpdateEntry", func() error {
			e := validEntry()
			e.Id = huge
			_, err := env.Admin.UpdateEntry(env.Ctx(), &adminv1.UpdateEntryRequest{Entry: e})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			checkStatus(t, tt.name, status.Code(err), status.Convert(err).Message(), "id")
		})
	}
}

// TestJoinTokenIDLimit: a join token's SPIFFE ID is bounded like an entry's.
func TestJoinTokenIDLimit(t *testing.T) {
	env := testenv.New(t)
	tests := []struct {
		name, id, want string
	}{
		{"at limit", longID(2048), ""},
		{"over limit", longID(2049), "spiffe_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.Admin.CreateJoinToken(env.Ctx(), &adminv1.CreateJoinTokenRequest{SpiffeId: tt.id})
			checkStatus(t, "CreateJoinToken", status.Code(err), status.Convert(err).Message(), tt.want)
		})
	}
}

// checkStatus wants OK when want is empty, otherwise InvalidArgument with a
// bounded message that mentions want.
func checkStatus(t *testing.T, call string, code codes.Code, msg, want string) {
	t.Helper()
	switch {
	case want == "" && code != codes.OK:
		t.Errorf("%s = %s %q, want OK", call, code, trim(msg))
	case want != "" && code != codes.InvalidArgument:
		t.Errorf("%s = %s %q, want InvalidArgument mentioning %q", call, code, trim(msg), want)
	case want != "" && !strings.Contains(msg, want):
		t.Errorf("%s = %q, want a message naming %q", call, trim(msg), want)
	case len(msg) > maxMessage:
		t.Errorf("%s: message of %d bytes, want at most %d (caller values must be truncated)", call, len(msg), maxMessage)
	}
}

func trim(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
