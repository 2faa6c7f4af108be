package adminapi

import (
	"context"
	"errors"
	"io"
	"time"

	"golang.org/x/sync/semaphore"
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
	maxGroupEntries  = MaxGroupEntries
)

// checked is one message of an entry stream as the receiving goroutine
// hands it over: converted and checked by the server's own rules
// (checkProtoEntry), so that the next message is decoded and checked while
// the store writes this one. err is io.EOF when the client closed its
// side, or why the stream must end.
type checked struct {
	first    int                    // stream index of the message's first entry
	n        int                    // entries in the message
	valid    *store.PreparedEntries // the entries that passed, prepared for the store; nil for none
	pos      []int                  // stream index of each valid entry, in order
	failures []*adminv1.EntryFailure
	err      error
}

// entryStream is what both entry streams receive.
type entryStream interface {
	Context() context.Context
	Recv() (*adminv1.CreateEntriesStreamRequest, error)
}

// MaxQueuedEntries bounds the entries of one stream received and checked
// but not yet written: while the store writes one message, the next ones
// are decoded and checked, up to this many entries (or one message, when a
// message is larger). Each queued entry costs about 1.5 KB; 10,000 put the
// server's peak past 150 MB for a 100,000-entry batch.
const MaxQueuedEntries = 4000

// entryQueue hands the messages of one stream, received and checked by
// its receiving goroutine (receive), to the stream's writer, holding at
// most MaxQueuedEntries entries (or one larger message): the writer calls
// done for each message once written.
type entryQueue struct {
	msgs   chan checked
	budget *semaphore.Weighted
}

// cost is what a message of n entries takes of the queue's budget.
func cost(n int) int64 { return int64(min(n, MaxQueuedEntries)) }

// done gives c's place in the queue back.
func (q *entryQueue) done(c checked) { q.budget.Release(cost(c.n)) }

// maxQueuedMessages bounds the messages queued, whatever their size: the
// CLI's messages of 2,000 entries fill the entry budget first.
const maxQueuedMessages = 16

// receive runs until the stream or ctx ends, or a limit is broken: it
// receives each message, checks its size and entries, waits until it fits
// in q, and queues it. The last value queued has err set, unless ctx ended
// first. Recv blocks without a context, so it runs here rather than in the
// handler: ending the handler ends the stream, which ends a pending Recv.
func (a *Service) receive(ctx context.Context, stream entryStream, q *entryQueue) {
	send := func(c checked) bool {
		select {
		case q.msgs <- c:
			return c.err == nil
		case <-ctx.Done():
			return false
		}
	}
	n, messages := 0, 0
	for {
		m, err := stream.Recv()
		if err != nil {
			send(checked{err: err})
			return
		}
		messages++
		in := m.GetEntries()
		switch {
		case len(in) == 0:
			err = errkind.New(errkind.InvalidArgument, "entries: message %d carries no entry: send 1 to %d per message", messages, MaxStreamMessageEntries)
		case len(in) > MaxStreamMessageEntries:
			err = errkind.New(errkind.InvalidArgument, "entries: message %d carries %d entries: at most %d per message",
				messages, len(in), MaxStreamMessageEntries)
		case n+len(in) > maxStreamEntries:
			err = errkind.New(errkind.InvalidArgument, "entries: the stream carries more than %d entries: at most %d per stream; split the batch",
				maxStreamEntries, maxStreamEntries)
		}
		if err != nil {
			send(checked{err: err})
			return
		}
		c := checked{first: n, n: len(in), pos: make([]int, 0, len(in))}
		valid := make([]model.Entry, 0, len(in))
		for i, pe := range in {
			e, err := a.checkProtoEntry(pe)
			if err != nil {
				c.failures = append(c.failures, &adminv1.EntryFailure{Index: int64(n + i), Status: apiconv.StatusToProto(err)})
				continue
			}
			valid, c.pos = append(valid, e), append(c.pos, n+i)
		}
		if len(valid) > 0 {
			// The store's own checks that need no database, done here too.
			c.valid = a.cfg.Store.PrepareEntries(valid, c.pos)
		}
		n += len(in)
		if q.budget.Acquire(ctx, cost(c.n)) != nil || !send(c) {
			return
		}
	}
}

// wait waits for the next checked message of a stream, within the
// idle bound and ctx (the stream's deadline). after is the number of
// entries received so far and outcome what becomes of them when the
// stream ends here, for the messages.
func (q *entryQueue) wait(ctx, streamCtx context.Context, idle *time.Timer, after int, outcome string) (checked, error) {
	select {
	case c := <-q.msgs:
		return c, nil
	case <-idle.C:
		return checked{}, status.Errorf(codes.DeadlineExceeded,
			"create entries stream: no message for %s (after %d entries): %s; send messages without pauses", streamIdle, after, outcome)
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && streamCtx.Err() == nil {
			return checked{}, status.Errorf(codes.DeadlineExceeded,
				"create entries stream: not finished within %s (after %d entries): %s; send smaller batches", StreamDeadline, after, outcome)
		}
		return checked{}, ctx.Err()
	}
}

// startReceiving starts the receiving goroutine of a stream and returns
// its queue.
func (a *Service) startReceiving(ctx context.Context, stream entryStream) *entryQueue {
	q := &entryQueue{msgs: make(chan checked, maxQueuedMessages), budget: semaphore.NewWeighted(MaxQueuedEntries)}
	go a.receive(ctx, stream, q)
	return q
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
// rolled back at once); otherwise every entry the store refused. Limits
// broken (message or stream size, deadline, idle time) end the stream with
// an error and write nothing.
func (a *Service) CreateEntriesStream(stream adminv1.Admin_CreateEntriesStreamServer) error {
	ctx, cancel := context.WithTimeout(stream.Context(), StreamDeadline)
	defer cancel()
	paced := bulkGC.call()
	defer paced.end()
	q := a.startReceiving(ctx, stream)

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
		n         int  // entries received
		rejected  bool // an entry failed the server's own checks
	)
	idle := time.NewTimer(streamIdle)
	defer idle.Stop()
	for {
		c, err := q.wait(ctx, stream.Context(), idle, n, "nothing was created")
		if err != nil {
			return err
		}
		if errors.Is(c.err, io.EOF) {
			break
		}
		if c.err != nil {
			return c.err
		}
		idle.Reset(streamIdle)
		n += c.n
		switch {
		case rejected:
			// An entry failed the server's checks: as CreateEntries does,
			// the batch goes no further than those checks.
			failures = append(failures, c.failures...)
		case len(c.failures) > 0:
			// Only these failures are reported, not the store's; nothing
			// more is written.
			rejected, failures, ids = true, c.failures, nil
			if batch != nil {
				batch.Rollback(ctx)
				batch = nil
			}
		default:
			if err := a.addToBatch(ctx, &batch, c, sink, &ids, &failures, &createdAt); err != nil {
				return err
			}
		}
		q.done(c)
		paced.wrote(c.n)
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

// addToBatch writes the valid entries of c (a message without failures)
// into the stream's store transaction, opened on the first message, and
// records their IDs, or once any failed in the store, the failures.
func (a *Service) addToBatch(ctx context.Context, batch **store.EntryBatch, c checked, sink CreatedSink, ids *[]string, failures *[]*adminv1.EntryFailure, createdAt *int64) error {
	if *batch == nil {
		b, err := a.cfg.Store.BeginEntryBatch(ctx)
		if err != nil {
			return err
		}
		*batch = b
	}
	// Every entry so far is in the batch: the store's item numbers are the
	// stream's indexes.
	results, err := (*batch).AddPrepared(ctx, c.valid)
	if err != nil {
		*batch = nil // Add rolled it back
		return err
	}
	for j, res := range results {
		if res.Err != nil {
			*failures = append(*failures, &adminv1.EntryFailure{Index: int64(c.first + j), Status: apiconv.StatusToProto(res.Err)})
		}
	}
	if len(*failures) > 0 {
		*ids = nil // nothing will be created: the IDs are not needed
		return nil
	}
	written := make([]*model.Entry, len(results))
	for j := range results {
		*ids = append(*ids, results[j].Entry.ID)
		written[j] = &results[j].Entry
	}
	*createdAt = apiconv.UnixOrZero(results[0].Entry.CreatedAt)
	if sink != nil {
		sink.Add(written)
	}
	return nil
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
