package agent

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testenv/testclock"
)

func TestWhenQuiet(t *testing.T) {
	const quiet = 40 * time.Second // looks every 10 s
	clk := testclock.New(time.Now())
	var activity, calls atomic.Uint64
	ctx, cancel := context.WithCancel(t.Context())
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		whenQuiet(ctx, clk, quiet, activity.Load, func() { calls.Add(1) }, nil)
	}()
	// step moves the clock by one look once the loop waits, and waits
	// until it has looked and waits again.
	step := func() {
		t.Helper()
		if !clk.WaitForWaiters(1, 10*time.Second) {
			t.Fatal("whenQuiet is not waiting")
		}
		clk.Add(10 * time.Second)
		if !clk.WaitForWaiters(1, 10*time.Second) {
			t.Fatal("whenQuiet did not wait again")
		}
	}
	want := func(what string, n uint64) {
		t.Helper()
		if got := calls.Load(); got != n {
			t.Fatalf("%s: f ran %d times, want %d", what, got, n)
		}
	}

	for range 3 {
		step()
	}
	want("30 s after the start", 0)
	step()
	want("40 s after the start", 1)
	for range 10 {
		step()
	}
	want("nothing served since", 1)

	activity.Add(1)
	for range 4 { // seen at the first look, quiet for 30 s by the fourth
		step()
	}
	want("30 s after a call", 1)
	step()
	want("40 s after a call", 2)
	for range 10 {
		step()
	}
	want("quiet since f ran", 2)

	for range 12 { // a call every look: never quiet for 40 s
		activity.Add(1)
		step()
	}
	want("busy", 2)
	for range 5 {
		step()
	}
	want("40 s after the busy spell", 3)

	cancel()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("whenQuiet did not return when its context ended")
	}
}

func TestWhenQuietReturnsWithTheAgent(t *testing.T) {
	done := make(chan struct{})
	close(done)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		whenQuiet(t.Context(), testclock.New(time.Now()), time.Minute, func() uint64 { return 0 }, func() {}, done)
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("whenQuiet did not return once the agent's Run had")
	}
}
