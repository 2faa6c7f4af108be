package adminapi

import (
	"context"
	"errors"
	"io"
	"runtime"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/errkind"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// Bounds of CreateEntriesStream. The stream's store transaction holds up
// every other write until it ends, so its life is bounded twice over.
const (
	// MaxStreamMessageEntries bounds the entries of one message.
	MaxStreamMessageEntries = 10000
	// MaxStreamEntries bounds the entries of one stream.
	MaxStreamEntries = 1000000
	// StreamDeadline bounds a stream from its start to its end.
	StreamDeadline = 30 * time.Minute
	// StreamIdle bounds the wait for the next message: every other write
	// (SVID issuance records too, on SQLite) waits meanwhile, and a client
	// that has its entries at hand sends the next message at once.
	StreamIdle = 10 * time.Second
)

// The bounds in force; tests lower them.
var (
	maxStreamEntries = MaxStreamEntries
	streamIdle       = StreamIdle
)

// collectAfter is the batch size from which the service collects the
// garbage a create leaves behind (several KB per entry: requests, results,
// statement arguments) before the next one: the heap then stays near its
// live size (the entry cache, mostly) instead of growing to twice it,
// which is GOGC's headroom, as long as one batch allocates less than that
// headroom (the CLI sends 2,000 entries a call or message). For 100,000
// entries it cut the server's peak RSS by about 20 MB for about 0.3 s of
// CPU (BENCHMARKS.md, issue 16).
const collectAfter = 1000

// collect runs a garbage collection after a create of n entries, when n is
// at least collectAfter.
func collect(n int) {
	if n >= collectAfter {
		runtime.GC()
	}
}

// received is one Recv of a stream.
type received struct {
	msg *adminv1.CreateEntriesStreamRequest
	err error
}

// CreateEntriesStream creates every entry of the stream or none. Each
// message's entries are checked as CreateEntries checks them and written
// into one store transaction (store.EntryBatch) as the message arrives;
// the service keeps only the IDs written, or once an entry failed, the
// failures. When the client closes its side, the transaction commits when
// no entry failed, and otherwise rolls back and the response lists the
// failures as CreateEntries reports them: when any entry fails the
// server's own checks (trust domain, reserved IDs, lifetimes, limits),
// those alone, since the store is then not asked (the transaction is
// rolled back at once); otherwise every entry the store refused. Limits broken (message or stream size, deadline, idle time) end
// the stream with an error and write nothing.
func (a *Service) CreateEntriesStream(stream adminv1.Admin_CreateEntriesStreamServer) error {
	ctx, cancel := context.WithTimeout(stream.Context(), StreamDeadline)
	defer cancel()
	// Recv blocks without a context: it runs on its own goroutine so that
	// the deadline and the idle bound can end the call. Ending the handler
	// ends the stream, which ends a pending Recv.
	msgs := make(chan received)
	go func() {
		for {
			m, err := stream.Recv()
			select {
			case msgs <- received{m, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var batch *store.EntryBatch
	var sink CreatedSink
	if a.cfg.StreamCreated != nil {
		sink = a.cfg.StreamCreated()
	}
	defer func() {
		if batch != nil {
			batch.Rollback(context.WithoutCancel(ctx))
		}
	}()
	var (
		ids       []string // of the entries written, while none failed
		failures  []*adminv1.EntryFailure
		createdAt int64
		n         int // entries received
		messages  int
		rejected  bool // an entry failed the server's own checks
	)
	idle := time.NewTimer(streamIdle)
	defer idle.Stop()
	for {
		var r received
		select {
		case r = <-msgs:
		case <-idle.C:
			return status.Errorf(codes.DeadlineExceeded,
				"create entries stream: no message for %s (after %d entries): nothing was created; send messages without pauses", streamIdle, n)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && stream.Context().Err() == nil {
				return status.Errorf(codes.DeadlineExceeded,
					"create entries stream: not finished within %s (after %d entries): nothing was created; send smaller batches", StreamDeadline, n)
			}
			return ctx.Err()
		}
		if errors.Is(r.err, io.EOF) {
			break
		}
		if r.err != nil {
			return r.err
		}
		idle.Reset(streamIdle)
		messages++
		in := r.msg.GetEntries()
		switch {
		case len(in) == 0:
			return errkind.New(errkind.InvalidArgument, "entries: message %d carries no entry: send 1 to %d per message", messages, MaxStreamMessageEntries)
		case len(in) > MaxStreamMessageEntries:
			return errkind.New(errkind.InvalidArgument, "entries: message %d carries %d entries: at most %d per message",
				messages, len(in), MaxStreamMessageEntries)
		case n+len(in) > maxStreamEntries:
			return errkind.New(errkind.InvalidArgument, "entries: the stream carries more than %d entries: at most %d per stream; split the batch",
				maxStreamEntries, maxStreamEntries)
		}
		if rejected {
			// An entry failed the server's checks: as CreateEntries does,
			// the batch goes no further than those checks.
			for i, pe := range in {
				if _, err := a.checkProtoEntry(pe); err != nil {
					failures = append(failures, &adminv1.EntryFailure{Index: int64(n + i), Status: apiconv.StatusToProto(err)})
				}
			}
			n += len(in)
			continue
		}
		valid := make([]model.Entry, 0, len(in))
		var failed []*adminv1.EntryFailure
		for i, pe := range in {
			e, err := a.checkProtoEntry(pe)
			if err != nil {
				failed = append(failed, &adminv1.EntryFailure{Index: int64(n + i), Status: apiconv.StatusToProto(err)})
				continue
			}
			valid = append(valid, e)
		}
		if len(failed) > 0 {
			// Only these failures are reported, not the store's; nothing
			// more is written.
			rejected, failures, ids = true, failed, nil
			if batch != nil {
				batch.Rollback(ctx)
				batch = nil
			}
			n += len(in)
			continue
		}
		if batch == nil {
			var err error
			if batch, err = a.cfg.Store.BeginEntryBatch(ctx); err != nil {
				return err
			}
		}
		// Every entry so far is in the batch: the store's item numbers are
		// the stream's indexes.
		results, err := batch.Add(ctx, valid)
		if err != nil {
			batch = nil // Add rolled it back
			return err
		}
		for j, res := range results {
			if res.Err != nil {
				failures = append(failures, &adminv1.EntryFailure{Index: int64(n + j), Status: apiconv.StatusToProto(res.Err)})
			}
		}
		if len(failures) == 0 {
			written := make([]model.Entry, len(results))
			for j := range results {
				ids = append(ids, results[j].Entry.ID)
				written[j] = results[j].Entry
			}
			createdAt = apiconv.UnixOrZero(results[0].Entry.CreatedAt)
			if sink != nil {
				sink.Add(written)
			}
		} else {
			ids = nil // nothing will be created: the IDs are not needed
		}
		n += len(in)
		collect(len(in))
	}
	if n == 0 {
		return errkind.New(errkind.InvalidArgument, "entries: at least one entry is required")
	}
	if len(failures) > 0 {
		if batch != nil {
			batch.Rollback(ctx)
			batch = nil
		}
		return stream.SendAndClose(&adminv1.CreateEntriesStreamResponse{Failures: failures})
	}
	b := batch
	batch = nil
	commit := func(ctx context.Context) (int64, error) { return b.Commit(ctx) }
	var rev int64
	var err error
	if sink != nil {
		rev, err = sink.Commit(ctx, commit)
	} else if rev, err = commit(ctx); err == nil {
		a.cfg.Changed(ctx)
	}
	if err != nil {
		return err
	}
	return stream.SendAndClose(&adminv1.CreateEntriesStreamResponse{Ids: ids, Revision: rev, CreatedAt: createdAt})
}

// checkProtoEntry converts a wire entry of a create call and applies the
// server's rules to it.
func (a *Service) checkProtoEntry(pe *commonv1.Entry) (model.Entry, error) {
	if err := a.checkSupported(pe.GetFederatesWith(), pe.GetDownstream()); err != nil {
		return model.Entry{}, err
	}
	e, err := apiconv.EntryFromProto(pe)
	if err != nil {
		return model.Entry{}, err
	}
	if err := a.checkEntry(e); err != nil {
		return model.Entry{}, err
	}
	return e, nil
}
