package agent

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
)

// watchLoop holds the agent's push stream (the agent API's Watch): the
// server says on it, as they commit, that the node's entries or the trust
// bundle changed (the agent syncs at once), which SVIDs were revoked (the
// agent drops them at once and gets fresh ones) and that the node was
// evicted or banned (the agent stops serving at once). The stream is
// opened again with backoff whenever it ends; the Sync poll goes on
// meanwhile, so a server without Watch, or a lost stream, only slows
// changes down to the sync interval. It returns when ctx is done.
func (a *Agent) watchLoop(ctx context.Context) error {
	bo := retryBackoff{base: 250 * time.Millisecond, max: max(a.cfg.MaxBackoff, time.Second)}
	for {
		if expired, _ := a.svidExpired(); expired {
			if !a.waitSVID(ctx) {
				return nil
			}
		}
		got, err := a.watchOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if got {
			bo.reset()
		}
		delay := bo.next()
		switch {
		case errors.Is(err, errNodeEnded):
			delay = max(delay, a.cfg.SyncInterval)
		case unimplemented(err):
			delay = bo.max // a server without push: poll only
		case err != nil:
			a.log.Debug("watch stream ended: opening it again", logKeyError, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.cfg.Clock.After(delay):
		}
	}
}

// errNodeEnded is the end of a stream whose node was evicted, banned or
// whose agent SVID was revoked.
var errNodeEnded = errors.New("the server ended the node")

// watchOnce holds one stream until it fails. It reports whether any event
// arrived.
func (a *Agent) watchOnce(ctx context.Context) (bool, error) {
	api, _, err := a.client.api()
	if err != nil {
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := api.Watch(sctx, &agentv1.WatchRequest{})
	if err != nil {
		return false, watchErr(err)
	}
	got := false
	for {
		ev, err := stream.Recv()
		if err != nil {
			return got, watchErr(err)
		}
		got = true
		if a.handleEvent(ev) {
			return got, errNodeEnded
		}
	}
}

// handleEvent acts on one pushed event; it reports whether the server
// ended the node.
func (a *Agent) handleEvent(ev *agentv1.WatchEvent) bool {
	a.met.watchEvents.Inc()
	changed := false
	var remintAfter time.Time
	if len(ev.GetRevocations()) > 0 || ev.GetRevocationsReset() {
		changed, remintAfter = a.cache.applyRevocations(ev.GetRevocations(), ev.GetRevocationsReset())
	}
	if end := ev.GetNodeEnded(); end != "" {
		a.log.Warn("the server ended this node: no longer serving any SVID", "reason", end)
		a.cache.dropAll()
		a.cache.broadcast()
		a.forceRenewal()
		return true
	}
	if changed {
		a.cache.broadcast()
	}
	switch {
	case ev.GetSync():
		a.syncSoon()
	case changed:
		// Fresh SVIDs for the dropped ones, after a random delay: a
		// revocation reaches every agent of the ID at once, and the whole
		// fleet signing at that instant would slow the push to the agents
		// still waiting for it.
		// After a revocation by SPIFFE ID, SVIDs signed before remintAfter
		// would fall under it too.
		wait := max(remintAfter.Sub(a.cfg.Clock.Now()), 0)
		time.AfterFunc(wait+time.Duration(mrand.Int64N(int64(remintSpread))), a.syncSoon)
	}
	return false
}

// remintSpread bounds the random delay before an agent replaces SVIDs a
// revocation dropped.
const remintSpread = 500 * time.Millisecond

// syncSoon makes the sync loop run its next sync now.
func (a *Agent) syncSoon() {
	select {
	case a.syncNow <- struct{}{}:
	default:
	}
}

// forceRenewal asks renewLoop to renew now, whatever the last attempt: the
// server said the node is gone, and a refused renewal confirms it.
func (a *Agent) forceRenewal() {
	select {
	case a.renewNow <- struct{}{}:
	default:
	}
}

// errUnimplemented marks a server that has no Watch.
var errUnimplemented = errors.New("the server does not push changes (no Watch): polling only")

func watchErr(err error) error {
	if status.Code(err) == codes.Unimplemented {
		return errUnimplemented
	}
	return rpcErr("watch", err)
}

func unimplemented(err error) bool { return errors.Is(err, errUnimplemented) }
