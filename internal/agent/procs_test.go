package agent

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testenv/testclock"
)

// fakeProcs is a procs whose GOMAXPROCS changes are recorded, not made.
type fakeProcs struct {
	*procs
	mu      sync.Mutex
	changes []string
}

func newFakeProcs(idle int, clk *testclock.Clock) *fakeProcs {
	f := &fakeProcs{procs: newProcs(idle, 5*time.Second, clk, func(int) {})}
	f.set = func(n int) { f.record("set", n) }
	f.restore = func() { f.record("restore", 0) }
	return f
}

func (f *fakeProcs) record(what string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if what == "set" {
		what = fmt.Sprintf("set %d", n)
	}
	f.changes = append(f.changes, what)
}

func (f *fakeProcs) want(t *testing.T, when string, changes ...string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Equal(f.changes, changes) {
		t.Fatalf("%s: GOMAXPROCS changes %q, want %q", when, f.changes, changes)
	}
}

func TestProcsLowersOnceIdleAndRaisesToSign(t *testing.T) {
	clk := testclock.New(time.Now())
	f := newFakeProcs(1, clk)
	ctx, cancel := context.WithCancel(t.Context())
	returned := make(chan struct{})
	go func() { defer close(returned); f.run(ctx, nil) }()
	// waiting blocks until run waits on the clock again after a change.
	waiting := func() {
		t.Helper()
		if !clk.WaitForWaiters(1, 10*time.Second) {
			t.Fatal("run is not waiting for the grace")
		}
	}

	waiting()
	clk.Add(4 * time.Second)
	waiting()
	f.want(t, "4 s after the start", nil...)
	clk.Add(time.Second)
	waitUntil(t, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return len(f.changes) == 1 })
	f.want(t, "5 s after the start", "set 1")

	// A pipeline signs: the default comes back at once, and stays while
	// it signs, however long.
	f.acquire()
	f.want(t, "a pipeline started", "set 1", "restore")
	f.acquire() // a second one overlaps
	f.release()
	clk.Add(time.Minute)
	f.want(t, "one pipeline still signing", "set 1", "restore")
	f.release()
	waiting()
	clk.Add(4 * time.Second)
	waiting()
	f.want(t, "4 s after the last pipeline", "set 1", "restore")
	// Another spell of signing inside the grace starts it again.
	f.acquire()
	f.release()
	waiting()
	clk.Add(4 * time.Second)
	waiting()
	f.want(t, "4 s after the later pipeline", "set 1", "restore")
	clk.Add(time.Second)
	waitUntil(t, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return len(f.changes) == 3 })
	f.want(t, "5 s after the later pipeline", "set 1", "restore", "set 1")

	cancel()
	<-returned
}

func TestProcsZeroChangesNothing(t *testing.T) {
	clk := testclock.New(time.Now())
	f := newFakeProcs(0, clk)
	done := make(chan struct{})
	go func() { defer close(done); f.run(t.Context(), nil) }()
	<-done // returns at once: nothing to do
	f.acquire()
	clk.Add(time.Hour)
	f.release()
	clk.Add(time.Hour)
	f.want(t, "idle 0", nil...)
}

// waitUntil polls cond for up to ten seconds.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 10 s")
}
