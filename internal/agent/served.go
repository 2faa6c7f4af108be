package agent

import (
	"maps"
	"slices"
	"sync"
	"time"

	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
)

// maxServedReport is how many entries one Sync reports as served (the
// server's bound); more wait for the next sync.
const maxServedReport = 1000

// served remembers which entries' SVIDs the Workload API handed to
// workloads since the last successful sync, so the server can tell minted
// from used identities. Times have second resolution; serving the same
// entry again within a second costs one map lookup.
type served struct {
	mu      sync.Mutex
	pending map[string]servedSpan
}

type servedSpan struct{ first, last int64 } // unix seconds

// mark records that entryIDs were served at now.
func (s *served) mark(now time.Time, entryIDs ...string) {
	if len(entryIDs) == 0 {
		return
	}
	sec := now.Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		s.pending = map[string]servedSpan{}
	}
	for _, id := range entryIDs {
		sp, ok := s.pending[id]
		switch {
		case !ok:
			s.pending[id] = servedSpan{first: sec, last: sec}
		case sec > sp.last:
			sp.last = sec
			s.pending[id] = sp
		}
	}
}

// take removes up to maxServedReport pending entries for a Sync request.
// Hand them back with restore if the sync fails.
func (s *served) take() []*agentv1.ServedEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(s.pending))
	ids = ids[:min(len(ids), maxServedReport)]
	out := make([]*agentv1.ServedEntry, len(ids))
	for i, id := range ids {
		sp := s.pending[id]
		out[i] = &agentv1.ServedEntry{EntryId: id, FirstServedAt: sp.first, LastServedAt: sp.last}
		delete(s.pending, id)
	}
	return out
}

// restore puts back what a failed sync did not deliver, merging with what
// was served meanwhile.
func (s *served) restore(report []*agentv1.ServedEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		s.pending = map[string]servedSpan{}
	}
	for _, r := range report {
		sp, ok := s.pending[r.GetEntryId()]
		if !ok {
			s.pending[r.GetEntryId()] = servedSpan{first: r.GetFirstServedAt(), last: r.GetLastServedAt()}
			continue
		}
		sp.first = min(sp.first, r.GetFirstServedAt())
		sp.last = max(sp.last, r.GetLastServedAt())
		s.pending[r.GetEntryId()] = sp
	}
}
