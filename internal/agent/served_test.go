package agent

import (
	"fmt"
	"testing"
	"time"
)

func TestServedReportsAreBoundedAndSurviveFailedSyncs(t *testing.T) {
	var s served
	t0 := time.Unix(1_800_000_000, 0)
	for i := range maxServedReport + 5 {
		s.mark(t0, fmt.Sprintf("e%04d", i))
	}
	s.mark(t0.Add(time.Minute), "e0000")
	first := s.take()
	if len(first) != maxServedReport {
		t.Fatalf("take() = %d entries, want %d", len(first), maxServedReport)
	}
	if r := first[0]; r.GetEntryId() != "e0000" || r.GetFirstServedAt() != t0.Unix() || r.GetLastServedAt() != t0.Add(time.Minute).Unix() {
		t.Errorf("first report = %v, want e0000 from t0 to t0+1m", r)
	}
	// The sync fails; e0000 is served again meanwhile.
	s.mark(t0.Add(2*time.Minute), "e0000")
	s.restore(first)
	again := s.take()
	if len(again) != maxServedReport || again[0].GetLastServedAt() != t0.Add(2*time.Minute).Unix() || again[0].GetFirstServedAt() != t0.Unix() {
		t.Errorf("after a failed sync: %d entries, first %v", len(again), again[0])
	}
	if rest := s.take(); len(rest) != 5 {
		t.Errorf("take() of the rest = %d, want 5", len(rest))
	}
	if s.take() != nil {
		t.Errorf("take() of nothing = non-nil")
	}
}
