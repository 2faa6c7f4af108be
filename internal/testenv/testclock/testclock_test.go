package testclock_test

import (
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testenv/testclock"
)

func TestClock(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := testclock.New(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now() = %s, want %s", got, start)
	}
	select {
	case <-c.After(0):
	default:
		t.Fatal("After(0) did not fire at once")
	}
	short, long := c.After(time.Second), c.After(time.Minute)
	if !c.WaitForWaiters(2, time.Second) || c.Waiters() != 2 {
		t.Fatalf("Waiters() = %d, want 2", c.Waiters())
	}
	c.Add(time.Second)
	select {
	case got := <-short:
		if !got.Equal(start.Add(time.Second)) {
			t.Errorf("After(1s) fired with %s, want %s", got, start.Add(time.Second))
		}
	default:
		t.Fatal("After(1s) did not fire after Add(1s)")
	}
	select {
	case <-long:
		t.Fatal("After(1m) fired after 1s")
	default:
	}
	c.Set(start.Add(time.Hour))
	select {
	case <-long:
	default:
		t.Fatal("After(1m) did not fire after Set(+1h)")
	}
	if c.Waiters() != 0 {
		t.Errorf("Waiters() = %d after every wait ended, want 0", c.Waiters())
	}
	if c.WaitForWaiters(1, 10*time.Millisecond) {
		t.Errorf("WaitForWaiters(1) = true with none pending")
	}
}
