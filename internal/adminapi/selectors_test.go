package adminapi_test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/testenv"
)

// TestBuiltinSelectorValues: the server refuses values of built-in selector
// types that their attestor can never produce, saying what it would
// accept, and keeps accepting unknown types (plugins may produce them).
func TestBuiltinSelectorValues(t *testing.T) {
	env := testenv.New(t)
	hex := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		name, typ, value string
		want             string // "" = accepted; otherwise a word of the message
	}{
		{"uid", "unix", "uid:1000", ""},
		{"uid zero", "unix", "uid:0", ""},
		{"uid max", "unix", "uid:4294967295", ""},
		{"uid not a number", "unix", "uid:abc", "decimal number"},
		{"uid negative", "unix", "uid:-1", "decimal number"},
		{"uid too large", "unix", "uid:4294967296", "decimal number"},
		{"uid leading zero", "unix", "uid:01000", "leading zeros"},
		{"uid plus sign", "unix", "uid:+1", "decimal number"},
		{"empty gid", "unix", "gid:", "gid must be"},
		{"supplementary gid", "unix", "supplementary_gid:27", ""},
		{"supplementary gid not a number", "unix", "supplementary_gid:wheel", "supplementary_gid must be"},
		{"user", "unix", "user:www-data", ""},
		{"empty user", "unix", "user:", "user must not be empty"},
		{"group", "unix", "group:staff", ""},
		{"empty supplementary group", "unix", "supplementary_group:", "must not be empty"},
		{"path", "unix", "path:/usr/bin/web", ""},
		{"relative path", "unix", "path:bin/web", "absolute path"},
		{"unclean path", "unix", "path:/usr/bin/../bin/web", "absolute path"},
		{"sha256", "unix", "sha256:" + hex, ""},
		{"sha256 upper case", "unix", "sha256:" + strings.ToUpper(hex), "lower-case hex"},
		{"sha256 short", "unix", "sha256:abc", "64 lower-case hex"},
		{"unknown unix name", "unix", "pid:42", "uid, gid"},
		{"no name", "unix", "1000", "unix:uid:1000"},
		{"unknown type stays allowed", "k8s", "ns:default", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validEntry()
			e.SpiffeId = fmt.Sprintf("spiffe://example.org/sel/%d", i)
			// The refused selector comes second: the message names it by index.
			e.Selectors = append(e.Selectors, &commonv1.Selector{Type: tt.typ, Value: tt.value})
			resp, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: []*commonv1.Entry{e}})
			if err != nil {
				t.Fatalf("CreateEntries: %v", err)
			}
			st := resp.GetResults()[0].GetStatus()
			checkStatus(t, fmt.Sprintf("CreateEntries(%s:%s)", tt.typ, tt.value), codes.Code(st.GetCode()), st.GetMessage(), tt.want)
			if tt.want != "" && !strings.HasPrefix(st.GetMessage(), "selectors[1]: ") {
				t.Errorf("CreateEntries(%s:%s) = %q, want it to name selectors[1]", tt.typ, tt.value, st.GetMessage())
			}
		})
	}
}
