package adminapi

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/errkind"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// MaxGroupEntries bounds the entries one transaction of CreateEntryBatches
// writes: enough that a commit's cost (on SQLite, every B-tree page the
// group touched written to the WAL) is shared by thousands of entries, few
// enough that other writes wait at most about a second.
const MaxGroupEntries = 2 * MaxStreamMessageEntries

// CreateEntryBatches creates the entries of the stream each on its own,
// with group commit: the writer opens a store transaction for the next
// message and, while further messages are already waiting (received and
// checked by the receiving goroutine meanwhile), adds them to it, up to
// maxGroupEntries; then it commits, folds the entries created into the
// caches and answers for the group with one response. A transaction never
// waits for the client. An error ends the stream: the entries already
// answered stay as answered, the others are not created.
func (a *Service) CreateEntryBatches(stream adminv1.Admin_CreateEntryBatchesServer) error {
	ctx, cancel := context.WithTimeout(stream.Context(), StreamDeadline)
	defer cancel()
	paced := bulkGC.call()
	defer paced.end()
	q := a.startReceiving(ctx, stream)
	idle := time.NewTimer(streamIdle)
	defer idle.Stop()
	n := 0               // entries received and answered
	var pending *checked // taken while gathering a group, not part of it
	for {
		var c checked
		if pending != nil {
			c, pending = *pending, nil
		} else {
			var err error
			if c, err = q.wait(ctx, stream.Context(), idle, n, "the entries not yet answered were not created"); err != nil {
				return err
			}
		}
		if errors.Is(c.err, io.EOF) {
			if n == 0 {
				return errkind.New(errkind.InvalidArgument, "entries: at least one entry is required")
			}
			return nil
		}
		if c.err != nil {
			return c.err
		}
		idle.Reset(streamIdle)
		resp, err := a.writeGroup(ctx, c, q, &pending, paced)
		if err != nil {
			return err
		}
		n += len(resp.GetIds())
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// writeGroup writes c and the messages waiting behind it in q, up to
// maxGroupEntries, in one transaction, each entry on its own, folds the
// entries created into the caches as CreateEntriesStream does (staged
// message by message, applied at the commit) and returns the answer for
// the group. A message taken that does not belong to the group (an error,
// or too many entries) is left in pending. paced counts what it wrote.
func (a *Service) writeGroup(ctx context.Context, c checked, q *entryQueue, pending **checked, paced *createCall) (*adminv1.CreateEntryBatchesResponse, error) {
	batch, err := a.cfg.Store.BeginEntryBatchEach(ctx)
	if err != nil {
		return nil, err
	}
	defer batch.Rollback(context.WithoutCancel(ctx)) // nothing created, or an error; once committed, does nothing
	var sink CreatedSink
	if a.cfg.StreamCreated != nil {
		sink = a.cfg.StreamCreated()
	}
	resp := &adminv1.CreateEntryBatchesResponse{First: int64(c.first)}
	created := 0
	for {
		var results []store.EntryResult
		if c.valid != nil {
			if results, err = batch.AddPrepared(ctx, c.valid); err != nil {
				return nil, err
			}
		}
		ids := make([]string, c.n)
		written := make([]*model.Entry, 0, len(results))
		// Merge the server's failures and the store's, each in order, into
		// index order.
		checks := c.failures
		for j := range results {
			r, i := &results[j], c.pos[j]
			for len(checks) > 0 && checks[0].GetIndex() < int64(i) {
				resp.Failures, checks = append(resp.Failures, checks[0]), checks[1:]
			}
			if r.Err != nil {
				resp.Failures = append(resp.Failures, &adminv1.EntryFailure{Index: int64(i), Status: apiconv.StatusToProto(r.Err)})
				continue
			}
			ids[i-c.first] = r.Entry.ID
			written = append(written, &r.Entry)
		}
		resp.Failures = append(resp.Failures, checks...)
		resp.Ids = append(resp.Ids, ids...)
		if len(written) > 0 {
			if created == 0 {
				resp.CreatedAt = apiconv.UnixOrZero(written[0].CreatedAt)
			}
			created += len(written)
			if sink != nil {
				sink.Add(written)
			}
		}
		q.done(c)
		paced.wrote(c.n)
		if len(resp.Ids) >= maxGroupEntries {
			break
		}
		var more bool
		select {
		case m := <-q.msgs:
			if m.err == nil && len(resp.Ids)+m.n <= maxGroupEntries {
				c, more = m, true
			} else {
				*pending = &m
			}
		default:
		}
		if !more {
			break
		}
	}
	if created == 0 {
		return resp, nil
	}
	commit := func(ctx context.Context) (int64, error) { return batch.Commit(ctx) }
	var rev int64
	if sink != nil {
		rev, err = sink.Commit(ctx, commit)
	} else if rev, err = commit(ctx); err == nil {
		a.cfg.Changed(ctx)
	}
	if err != nil {
		return nil, err
	}
	resp.Revision = rev
	return resp, nil
}
