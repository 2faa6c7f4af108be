package store

import (
	"context"
	"fmt"
	"sync"
)

// groupCommit group-commits concurrent writes of one kind (issuance
// records, leases): callers queue their request, the first caller to find
// no flush in progress becomes the flusher and writes batches until the
// queue is empty, and every caller returns only once the batch holding its
// request has been written (or failed). So N concurrent writers take the
// revision lock and extend the audit chain once per batch, not N times.
type groupCommit[Q, T any] struct {
	// weight is what one request adds to a batch, max what a batch may
	// hold (a batch always takes at least one request).
	weight func(Q) int
	max    int
	// write writes one batch in queue order and returns each request's
	// result, one per request.
	write func([]Q) []groupResult[T]

	mu       sync.Mutex
	queue    []*groupReq[Q, T]
	flushing bool
}

type groupResult[T any] struct {
	v   T
	err error
}

type groupReq[Q, T any] struct {
	q    Q
	done chan groupResult[T]
}

// do queues q and returns its result. A caller whose ctx ends while another
// caller flushes gets ctx's error, prefixed with op; its request may still
// be written, and the caller treats it as a failure (nothing is handed out
// whose record is not known to be durable).
func (g *groupCommit[Q, T]) do(ctx context.Context, op string, q Q) (T, error) {
	req := &groupReq[Q, T]{q: q, done: make(chan groupResult[T], 1)}
	g.mu.Lock()
	g.queue = append(g.queue, req)
	if g.flushing {
		g.mu.Unlock()
		select {
		case res := <-req.done:
			return res.v, res.err
		case <-ctx.Done():
			var zero T
			return zero, fmt.Errorf("%s: %w", op, ctx.Err())
		}
	}
	g.flushing = true
	for {
		var batch []*groupReq[Q, T]
		for n := 0; len(g.queue) > 0 && (n == 0 || n+g.weight(g.queue[0].q) <= g.max); g.queue = g.queue[1:] {
			n += g.weight(g.queue[0].q)
			batch = append(batch, g.queue[0])
		}
		g.mu.Unlock()
		qs := make([]Q, len(batch))
		for i, r := range batch {
			qs[i] = r.q
		}
		for i, res := range g.write(qs) {
			batch[i].done <- res
		}
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.flushing = false
			g.mu.Unlock()
			break
		}
	}
	res := <-req.done
	return res.v, res.err
}
