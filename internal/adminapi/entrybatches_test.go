package adminapi_test

import (
	"errors"
	"io"
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

// batchesOutcome is what one CreateEntryBatches stream answered.
type batchesOutcome struct {
	responses []*adminv1.CreateEntryBatchesResponse
	ids       []string                        // by stream index, "" for a failure
	failures  map[int64]*adminv1.EntryFailure // by stream index
	err       error                           // the stream's status
}

// sendBatches sends each message of entries on a new CreateEntryBatches
// stream, closes it and reads every response, checking that the responses
// answer consecutive entries from 0, each once, with one ID or one failure.
func sendBatches(t *testing.T, c adminv1.AdminClient, env *testenv.Env, messages ...[]*commonv1.Entry) batchesOutcome {
	t.Helper()
	stream, err := c.CreateEntryBatches(env.Ctx())
	if err != nil {
		t.Fatalf("CreateEntryBatches: %v", err)
	}
	for _, m := range messages {
		if err := stream.Send(&adminv1.CreateEntriesStreamRequest{Entries: m}); err != nil {
			break // the server ended the stream; Recv says why
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	out := batchesOutcome{failures: map[int64]*adminv1.EntryFailure{}}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				out.err = err
			}
			break
		}
		out.responses = append(out.responses, resp)
		if resp.GetFirst() != int64(len(out.ids)) || len(resp.GetIds()) == 0 {
			t.Fatalf("response %d answers %d entries from %d, want some from %d", len(out.responses), len(resp.GetIds()), resp.GetFirst(), len(out.ids))
		}
		last := resp.GetFirst() - 1
		for _, f := range resp.GetFailures() {
			i := f.GetIndex()
			if i <= last || i >= resp.GetFirst()+int64(len(resp.GetIds())) || resp.GetIds()[i-resp.GetFirst()] != "" {
				t.Fatalf("response %d: failure %d out of order, out of range or with an ID", len(out.responses), i)
			}
			out.failures[i], last = f, i
		}
		for j, id := range resp.GetIds() {
			if _, failed := out.failures[resp.GetFirst()+int64(j)]; (id == "") != failed {
				t.Fatalf("response %d: entry %d has ID %q and failed %v; want exactly one", len(out.responses), resp.GetFirst()+int64(j), id, failed)
			}
		}
		out.ids = append(out.ids, resp.GetIds()...)
	}
	return out
}

// TestCreateEntryBatches: each entry of the stream succeeds or fails on its
// own; every entry is answered once, in order; the created entries are in
// the store at the answered revision and in the server's entry cache; and
// no transaction writes more than the queue bound.
func TestCreateEntryBatches(t *testing.T) {
	env := testenv.New(t)
	agent := env.Attest(nodeA)
	adminapi.SetGroupBound(t, 10)
	m0, m1, m2 := streamEntries("b0", 4), streamEntries("b1", 4), streamEntries("b2", 4)
	m1[1].SpiffeId = "spiffe://other.org/x" // the server's own check
	m1[3] = m1[2]                           // the store's, within a message: named by stream index
	m2[2] = m0[3]                           // the store's: an entry of an earlier message
	m2[3].X509TtlSeconds = -1               // the server's again, after a store failure
	out := sendBatches(t, env.Admin, env, m0, m1, m2)
	if out.err != nil {
		t.Fatalf("CreateEntryBatches = %v, want the failures in the responses", out.err)
	}
	if len(out.ids) != 12 {
		t.Fatalf("answered %d entries, want 12", len(out.ids))
	}
	wantFailures := map[int64]struct {
		code codes.Code
		text string
	}{
		5:  {codes.InvalidArgument, "spiffe_id"},
		7:  {codes.AlreadyExists, "items 6 and 7"},
		10: {codes.AlreadyExists, ""},
		11: {codes.InvalidArgument, "x509_ttl"},
	}
	if len(out.failures) != len(wantFailures) {
		t.Errorf("failures = %v, want entries 5, 7, 10 and 11", out.failures)
	}
	for i, want := range wantFailures {
		f := out.failures[i]
		if codes.Code(f.GetStatus().GetCode()) != want.code || !strings.Contains(f.GetStatus().GetMessage(), want.text) {
			t.Errorf("failure of entry %d = %v, want %v naming %q", i, f.GetStatus(), want.code, want.text)
		}
	}
	for _, r := range out.responses {
		if len(r.GetIds()) > 10 {
			t.Errorf("one transaction answered %d entries, more than the bound of 10", len(r.GetIds()))
		}
	}
	all := append(append(append([]*commonv1.Entry{}, m0...), m1...), m2...)
	created := 0
	for i, id := range out.ids {
		if id == "" {
			continue
		}
		created++
		e, err := env.Admin.GetEntry(env.Ctx(), &adminv1.GetEntryRequest{Id: id})
		if err != nil {
			t.Fatalf("GetEntry(ids[%d]): %v", i, err)
		}
		if e.GetSpiffeId() != all[i].GetSpiffeId() {
			t.Errorf("ids[%d] is %s, want %s", i, e.GetSpiffeId(), all[i].GetSpiffeId())
		}
	}
	if n := entryCount(t, env); n != created || created != 8 {
		t.Errorf("store holds %d entries, %d answered created; want 8", n, created)
	}
	last := out.responses[len(out.responses)-1]
	sync, err := agent.Client.Sync(env.Ctx(), &agentv1.SyncRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if sync.GetRevision() < last.GetRevision() || len(sync.GetEntries()) != 8 {
		t.Errorf("Sync = revision %d with %d entries, want at least %d with 8", sync.GetRevision(), len(sync.GetEntries()), last.GetRevision())
	}
}

// TestCreateEntryBatchesEnds: a stream that breaks a bound ends with an
// error naming it; what was answered before stays created, nothing after
// it is, and the store is free for the next write.
func TestCreateEntryBatchesEnds(t *testing.T) {
	env := testenv.New(t)
	adminapi.SetStreamBounds(t, 10, adminapi.StreamIdle)
	tests := []struct {
		name     string
		messages [][]*commonv1.Entry
		answered int
		code     codes.Code
		want     string
	}{
		{"no entries", nil, 0, codes.InvalidArgument, "at least one entry"},
		{"empty message", [][]*commonv1.Entry{streamEntries("e", 2), {}}, 2, codes.InvalidArgument, "message 2 carries no entry"},
		{"message too large", [][]*commonv1.Entry{streamEntries("l", adminapi.MaxStreamMessageEntries+1)}, 0, codes.InvalidArgument, "at most 10000 per message"},
		{"stream too large", [][]*commonv1.Entry{streamEntries("s", 6), streamEntries("t", 6)}, 6, codes.InvalidArgument, "at most 10 per stream"},
	}
	total := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := sendBatches(t, env.Admin, env, tt.messages...)
			if status.Code(out.err) != tt.code || !strings.Contains(status.Convert(out.err).Message(), tt.want) {
				t.Errorf("CreateEntryBatches = %v, want %v saying %q", out.err, tt.code, tt.want)
			}
			if len(out.ids) != tt.answered || len(out.failures) != 0 {
				t.Errorf("answered %d entries (%d failed), want %d created", len(out.ids), len(out.failures), tt.answered)
			}
			total += tt.answered
			if n := entryCount(t, env); n != total {
				t.Errorf("store holds %d entries, want %d", n, total)
			}
		})
	}
	t.Run("idle", func(t *testing.T) {
		adminapi.SetStreamBounds(t, 10, 200*time.Millisecond)
		stream, err := env.Admin.CreateEntryBatches(env.Ctx())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&adminv1.CreateEntriesStreamRequest{Entries: streamEntries("idle", 2)}); err != nil {
			t.Fatal(err)
		}
		// Those two are answered; then nothing more is sent and the server
		// gives up on the stream.
		resp, err := stream.Recv()
		if err != nil || len(resp.GetIds()) != 2 || len(resp.GetFailures()) != 0 {
			t.Fatalf("first response = %v, %v; want both entries created", resp, err)
		}
		_, err = stream.Recv()
		if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(status.Convert(err).Message(), "not yet answered were not created") {
			t.Errorf("idle stream = %v, want DeadlineExceeded saying what was not created", err)
		}
		if n := entryCount(t, env); n != total+2 {
			t.Errorf("store holds %d entries, want %d", n, total+2)
		}
	})
	env.CreateEntry(validEntry())
}

// TestCreateEntryBatchesNeedsAdmin: an agent's SVID may not stream
// entries.
func TestCreateEntryBatchesNeedsAdmin(t *testing.T) {
	env := testenv.New(t)
	agent := env.Attest(nodeA)
	out := sendBatches(t, adminv1.NewAdminClient(agent.Conn()), env, streamEntries("a", 2))
	if status.Code(out.err) != codes.PermissionDenied || len(out.ids) != 0 {
		t.Errorf("CreateEntryBatches as an agent = %d answered, %v; want PermissionDenied", len(out.ids), out.err)
	}
	if n := entryCount(t, env); n != 0 {
		t.Errorf("store holds %d entries, want none", n)
	}
}
