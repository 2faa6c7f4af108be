package adminapi

import (
	"runtime"
	"testing"
	"time"
)

// TestCollectCountsAcrossCreates: creates smaller than collectAfter add up
// to one collection; the count starts again from there.
func TestCollectCountsAcrossCreates(t *testing.T) {
	waitIdle := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for collecting.Load() {
			if time.Now().After(deadline) {
				t.Fatal("the collection did not end")
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitIdle()
	uncollected.Store(0)
	before := numGC()
	collect(collectAfter/2 - 1)
	collect(collectAfter / 2)
	if got := uncollected.Load(); got != collectAfter-1 || collecting.Load() {
		t.Fatalf("after %d entries: uncollected = %d, collecting = %v; want %d and no collection", collectAfter-1, got, collecting.Load(), collectAfter-1)
	}
	collect(1)
	if got := uncollected.Load(); got != 0 {
		t.Fatalf("after %d entries: uncollected = %d, want 0 (a collection started)", collectAfter, got)
	}
	waitIdle()
	if numGC() == before {
		t.Error("no collection ran")
	}
}

func numGC() uint32 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.NumGC
}
