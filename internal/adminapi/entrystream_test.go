package adminapi_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/adminapi"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/testenv"
)

// streamEntries returns n valid entries under nodeA named <prefix>-<i>.
func streamEntries(prefix string, n int) []*commonv1.Entry {
	out := make([]*commonv1.Entry, n)
	for i := range out {
		e := validEntry()
		e.SpiffeId = fmt.Sprintf("spiffe://example.org/%s-%d", prefix, i)
		e.Selectors = []*commonv1.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", i)}}
		out[i] = e
	}
	return out
}

// sendStream sends each message of entries on a new stream and returns the
// response.
func sendStream(t *testing.T, c adminv1.AdminClient, env *testenv.Env, messages ...[]*commonv1.Entry) (*adminv1.CreateEntriesStreamResponse, error) {
	t.Helper()
	stream, err := c.CreateEntriesStream(env.Ctx())
	if err != nil {
		t.Fatalf("CreateEntriesStream: %v", err)
	}
	for _, m := range messages {
		if err := stream.Send(&adminv1.CreateEntriesStreamRequest{Entries: m}); err != nil {
			break // the server ended the stream; CloseAndRecv says why
		}
	}
	return stream.CloseAndRecv()
}

func entryCount(t *testing.T, env *testenv.Env) int {
	t.Helper()
	resp, err := env.Admin.ListEntries(env.Ctx(), &adminv1.ListEntriesRequest{PageSize: 10000})
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	return len(resp.GetEntries())
}

// TestCreateEntriesStream: every entry of the stream is created, in one
// revision, into the store and the server's entry cache (agents see them);
// or, when one entry of the last message is
// invalid, none is.
func TestCreateEntriesStream(t *testing.T) {
	env := testenv.New(t)
	agent := env.Attest(nodeA)
	msgs := [][]*commonv1.Entry{streamEntries("m0", 4), streamEntries("m1", 4), streamEntries("m2", 4)}

	t.Run("invalid entry in the last message", func(t *testing.T) {
		last := streamEntries("m2", 4)
		last[3].SpiffeId = "spiffe://other.org/x"
		resp, err := sendStream(t, env.Admin, env, msgs[0], msgs[1], last)
		if err != nil {
			t.Fatalf("CreateEntriesStream = %v, want the failures in the response", err)
		}
		f := resp.GetFailures()
		if len(f) != 1 || f[0].GetIndex() != 11 || codes.Code(f[0].GetStatus().GetCode()) != codes.InvalidArgument ||
			!strings.Contains(f[0].GetStatus().GetMessage(), "spiffe_id") || len(resp.GetIds()) != 0 {
			t.Fatalf("failures = %v, ids = %d, want entry 11's spiffe_id alone and no ids", f, len(resp.GetIds()))
		}
		if n := entryCount(t, env); n != 0 {
			t.Errorf("store holds %d entries after a failed stream, want none", n)
		}
	})
	t.Run("duplicate of an earlier message", func(t *testing.T) {
		last := streamEntries("m2", 4)
		last[2] = msgs[0][1]
		resp, err := sendStream(t, env.Admin, env, msgs[0], msgs[1], last)
		if err != nil {
			t.Fatal(err)
		}
		f := resp.GetFailures()
		if len(f) != 1 || f[0].GetIndex() != 10 || codes.Code(f[0].GetStatus().GetCode()) != codes.AlreadyExists ||
			!strings.Contains(f[0].GetStatus().GetMessage(), "items 1 and 10") {
			t.Fatalf("failures = %v, want entry 10 a duplicate of item 1", f)
		}
		if n := entryCount(t, env); n != 0 {
			t.Errorf("store holds %d entries after a failed stream, want none", n)
		}
	})
	t.Run("all valid", func(t *testing.T) {
		resp, err := sendStream(t, env.Admin, env, msgs...)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetFailures()) != 0 || len(resp.GetIds()) != 12 || resp.GetRevision() == 0 || resp.GetCreatedAt() == 0 {
			t.Fatalf("response = %d failures, %d ids, revision %d, created_at %d; want 12 ids", len(resp.GetFailures()),
				len(resp.GetIds()), resp.GetRevision(), resp.GetCreatedAt())
		}
		for i, id := range resp.GetIds() {
			e, err := env.Admin.GetEntry(env.Ctx(), &adminv1.GetEntryRequest{Id: id})
			if err != nil {
				t.Fatalf("GetEntry(ids[%d]): %v", i, err)
			}
			if want := msgs[i/4][i%4].GetSpiffeId(); e.GetSpiffeId() != want || e.GetRevision() != resp.GetRevision() {
				t.Errorf("ids[%d] = %s at revision %d, want %s at %d", i, e.GetSpiffeId(), e.GetRevision(), want, resp.GetRevision())
			}
		}
		// The entry cache took them: the node's agent gets all twelve.
		sync, err := agent.Client.Sync(env.Ctx(), &agentv1.SyncRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if sync.GetRevision() != resp.GetRevision() || len(sync.GetEntries()) != 12 {
			t.Errorf("Sync = revision %d with %d entries, want %d with 12", sync.GetRevision(), len(sync.GetEntries()), resp.GetRevision())
		}
	})
}

// TestCreateEntriesStreamBounds: a stream past a bound ends with an error
// naming the field and the bound, writes nothing, and leaves the store
// free for the next write.
func TestCreateEntriesStreamBounds(t *testing.T) {
	env := testenv.New(t)
	adminapi.SetStreamBounds(t, 10, adminapi.StreamIdle)
	tests := []struct {
		name     string
		messages [][]*commonv1.Entry
		want     string
	}{
		{"no entries", nil, "at least one entry"},
		{"empty message", [][]*commonv1.Entry{streamEntries("a", 2), {}}, "message 2 carries no entry"},
		{"message too large", [][]*commonv1.Entry{streamEntries("a", adminapi.MaxStreamMessageEntries+1)}, "at most 10000 per message"},
		{"stream too large", [][]*commonv1.Entry{streamEntries("a", 6), streamEntries("b", 6)}, "at most 10 per stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sendStream(t, env.Admin, env, tt.messages...)
			msg := status.Convert(err).Message()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(msg, "entries") || !strings.Contains(msg, tt.want) {
				t.Errorf("CreateEntriesStream = %v, want InvalidArgument naming entries and %q", err, tt.want)
			}
			if n := entryCount(t, env); n != 0 {
				t.Errorf("store holds %d entries, want none", n)
			}
		})
	}
	t.Run("idle", func(t *testing.T) {
		adminapi.SetStreamBounds(t, 10, 100*time.Millisecond)
		stream, err := env.Admin.CreateEntriesStream(env.Ctx())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&adminv1.CreateEntriesStreamRequest{Entries: streamEntries("idle", 2)}); err != nil {
			t.Fatal(err)
		}
		// Send nothing more: the server gives up on the stream.
		var resp adminv1.CreateEntriesStreamResponse
		err = stream.RecvMsg(&resp)
		if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(status.Convert(err).Message(), "nothing was created") {
			t.Errorf("idle stream = %v, want DeadlineExceeded saying nothing was created", err)
		}
		if n := entryCount(t, env); n != 0 {
			t.Errorf("store holds %d entries, want none", n)
		}
	})
	// The write turn was given back.
	env.CreateEntry(validEntry())
}

// TestCreateEntriesStreamNeedsAdmin: an agent's SVID may not stream
// entries, as it may not call CreateEntries.
func TestCreateEntriesStreamNeedsAdmin(t *testing.T) {
	env := testenv.New(t)
	agent := env.Attest(nodeA)
	_, err := sendStream(t, adminv1.NewAdminClient(agent.Conn()), env, streamEntries("a", 2))
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("CreateEntriesStream as an agent = %v, want PermissionDenied", err)
	}
	if n := entryCount(t, env); n != 0 {
		t.Errorf("store holds %d entries, want none", n)
	}
}
