package server

import (
	"context"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/agentapi"
	"github.com/signet-id/signet/internal/entrycache"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// The change feed and the agents' push streams.
//
// follow reads the store's changes every CacheRefresh (default 250ms), and
// at once after every admin write on this replica (afterWrite): the
// entries changed since the entry cache's revision (EntryChanges), and, when
// the revision moved, the evictions, bans and revocations appended to the
// audit log since the last read (FeedEvents). Each reaches the Watch
// streams it concerns: entry changes the nodes whose entries they are (all
// nodes when a node alias changed), bans and evictions their node's
// stream, revocations every stream. Writes made through another replica
// therefore reach this replica's agents within one poll interval.

// DefaultCacheRefresh is how often the store is polled for changes when
// cache_refresh is not set: an idle poll is one read of the revision row.
const DefaultCacheRefresh = 250 * time.Millisecond

// follow runs the change-feed follower until ctx is done.
func (s *Server) follow(ctx context.Context) {
	tick := time.NewTicker(s.cfg.CacheRefresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := s.refreshFeed(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("follow the store's change feed", "error", err)
		}
	}
}

// refreshFeed folds the store's changes in: the entry cache, then
// evictions, bans and revocations. Calls are serialized.
func (s *Server) refreshFeed(ctx context.Context) error {
	s.feedMu.Lock()
	defer s.feedMu.Unlock()
	before := s.cache.Revision()
	if err := s.refreshCacheLocked(ctx); err != nil {
		return err
	}
	if s.cache.Revision() == before && s.feedLoaded {
		return nil
	}
	return s.readFeedEvents(ctx)
}

// readFeedEvents acts on the audit log's evictions, bans and revocations
// since the last read; the first call only loads the revocations in force.
func (s *Server) readFeedEvents(ctx context.Context) error {
	reload := !s.feedLoaded
	if !s.feedLoaded {
		head, err := s.store.AuditHead(ctx)
		if err != nil {
			return err
		}
		s.feedSeq = head
	}
	for {
		evs, next, err := s.store.FeedEvents(ctx, s.feedSeq)
		if err != nil {
			return err
		}
		for _, e := range evs {
			switch e.Action {
			case "node.evict", "node.ban":
				id, err := spiffeid.FromString(e.Object)
				if err != nil {
					continue
				}
				reason := agentapi.EndEvicted
				if e.Action == "node.ban" {
					reason = agentapi.EndBanned
				}
				if s.agents != nil {
					s.agents.Hub().End(id, reason)
				}
			case store.ActionSVIDRevoke:
				reload = true
			}
		}
		done := next == s.feedSeq || len(evs) == 0
		s.feedSeq = next
		if done {
			break
		}
	}
	if reload {
		if err := s.loadRevocations(ctx); err != nil {
			return err
		}
	}
	s.feedLoaded = true
	return nil
}

// loadRevocations reads the revocations in force and hands them to the
// agent API (which refuses revoked agent SVIDs and pushes new revocations
// to every agent).
func (s *Server) loadRevocations(ctx context.Context) error {
	revs, err := s.store.ListRevocations(ctx, s.cfg.Now())
	if err != nil {
		return err
	}
	if s.agents != nil {
		s.agents.Hub().SetRevocations(revs)
	}
	return nil
}

// refreshCacheLocked folds the store's entry changes since the cache's
// revision in and tells the Watch streams of the nodes they concern. A
// full read (the first, or after the tombstones the cache needed were
// pruned) streams into a replacement built off to the side, so it never
// holds every entry in the store's form. The caller holds feedMu.
func (s *Server) refreshCacheLocked(ctx context.Context) error {
	start := time.Now()
	since := s.cache.Revision()
	var loader *entrycache.Loader
	var changed []store.Entry
	cs, err := s.store.EntryChangesFunc(ctx, since, func(full bool, e store.Entry) error {
		if !full {
			changed = append(changed, e)
			return nil
		}
		if loader == nil {
			loader = s.cache.NewLoader()
		}
		loader.Add(e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read entry changes: %w", err)
	}
	var affects func(spiffeid.ID, []model.Selector) bool
	switch {
	case cs.Full:
		s.cache.Replace(loader, cs.Revision)
	case len(changed) > 0 || len(cs.Deleted) > 0 || cs.Revision != since:
		cs.Changed = changed
		affects = s.affected(cs) // judged against the cache before the change
		s.cache.Apply(cs)
	default:
		return nil
	}
	s.metrics.cacheEntries.Set(float64(s.cache.Len()))
	s.metrics.cacheRefresh.Observe(time.Since(start).Seconds())
	if s.agents != nil && (cs.Full || len(changed) > 0 || len(cs.Deleted) > 0) {
		s.agents.Hub().NotifySync("entries", cs.Revision, affects)
	}
	return nil
}

// affected returns which nodes a change set concerns, judged against the
// cache before it is applied (a deleted entry's parent is only known
// there): nil, meaning every node, for a full set or when a node alias
// changed.
func (s *Server) affected(cs store.EntryChangeSet) func(spiffeid.ID, []model.Selector) bool {
	if cs.Full {
		return nil
	}
	parents := map[spiffeid.ID]bool{}
	note := func(e *model.Entry) bool {
		if e.ParentID == s.serverID {
			return false // an alias: membership may change anywhere
		}
		parents[e.ParentID] = true
		return true
	}
	for _, id := range cs.Deleted {
		if old := s.cache.Get(id); old != nil && !note(old) {
			return nil
		}
	}
	for i := range cs.Changed {
		if old := s.cache.Get(cs.Changed[i].ID); old != nil && !note(old) {
			return nil
		}
		if !note(&cs.Changed[i]) {
			return nil
		}
	}
	return s.nodeIn(parents)
}

// nodeIn reports whether a node's entries may hang under one of parents:
// its own ID or an alias it qualifies for.
func (s *Server) nodeIn(parents map[spiffeid.ID]bool) func(spiffeid.ID, []model.Selector) bool {
	return func(node spiffeid.ID, sels []model.Selector) bool {
		if parents[node] {
			return true
		}
		for _, p := range s.cache.NodeParents(node, sels) {
			if parents[p] {
				return true
			}
		}
		return false
	}
}

// WatchStreams is the number of agents' Watch streams open on this server.
func (s *Server) WatchStreams() int { return s.agents.Hub().Streams() }
