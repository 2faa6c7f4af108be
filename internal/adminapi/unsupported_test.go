package adminapi_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/testenv"
)

// TestUnsupportedFields: fields that are stored but do nothing yet are
// refused on create and update, naming the field, until the features land.
func TestUnsupportedFields(t *testing.T) {
	env := testenv.New(t)
	tests := []struct {
		name   string
		field  string // the update_mask field
		modify func(e *commonv1.Entry)
		want   string
	}{
		{"federates_with_own", "federates_with", func(e *commonv1.Entry) { e.FederatesWith = []string{"example.org"} },
			"federates_with example.org: is this server's own trust domain; name federated trust domains only"},
		{"downstream", "downstream", func(e *commonv1.Entry) { e.Downstream = true },
			"downstream: downstream entries (nested CAs) are not supported yet; remove the field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := entryOf("spiffe://example.org/"+tt.name, nodeA, "1")
			tt.modify(e)
			code, msg, _ := create(t, env, e)
			wantStatus(t, "CreateEntries", code, msg, codes.InvalidArgument, tt.want)

			_, _, base := create(t, env, entryOf("spiffe://example.org/"+tt.name, nodeA, "2"))
			upd := entryOf("", "", "1")
			upd.Id = base.GetId()
			tt.modify(upd)
			_, err := env.Admin.UpdateEntry(env.Ctx(), &adminv1.UpdateEntryRequest{Entry: upd, UpdateMask: []string{tt.field}})
			wantStatus(t, "UpdateEntry", status.Code(err), status.Convert(err).Message(), codes.InvalidArgument, tt.want)
			// Clearing the field, or leaving it out of the mask, works.
			upd.FederatesWith, upd.Downstream, upd.Hint = nil, false, "h"
			if _, err := env.Admin.UpdateEntry(env.Ctx(), &adminv1.UpdateEntryRequest{Entry: upd, UpdateMask: []string{tt.field, "hint"}}); err != nil {
				t.Errorf("UpdateEntry(clear %s) = %v", tt.field, err)
			}
		})
	}
	// A batch reports the item, not the whole call.
	resp, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: []*commonv1.Entry{
		entryOf("spiffe://example.org/fine", nodeA, "1"),
		{SpiffeId: "spiffe://example.org/fed", ParentId: nodeA, Downstream: true,
			Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:1"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if st := resp.GetResults()[1].GetStatus(); codes.Code(st.GetCode()) != codes.InvalidArgument || !strings.HasPrefix(st.GetMessage(), "downstream") {
		t.Errorf("batch item with downstream: %v, want InvalidArgument naming downstream", st)
	}
	if st := resp.GetResults()[0].GetStatus(); st.GetCode() != 0 {
		t.Errorf("valid batch item: %v, want OK", st)
	}
}
