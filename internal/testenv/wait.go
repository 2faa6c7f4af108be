package testenv

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testenv/testclock"
)

// WaitFor polls cond every 10ms until it returns nil, and fails the test
// with cond's last error once timeout has passed. Timeouts are generous
// deadlines, never what a test measures.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
	}
}

// Poll calls cond every 10ms until it returns nil or timeout passes, and
// returns its last error.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// LogBuffer collects the output of loggers (or processes) writing from
// several goroutines. The zero value is ready to use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Advance drives components waiting on a fake clock: until cond returns
// nil it moves clock forward by step, then yields a few milliseconds of
// real time for them to run. It fails the test with cond's last error
// once timeout (real time) has passed.
func Advance(t testing.TB, clock *testclock.Clock, step, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s (fake clock at %s) waiting for %s: %v", timeout, clock.Now().UTC().Format(time.RFC3339), what, err)
		}
		clock.Add(step)
		time.Sleep(5 * time.Millisecond)
	}
}
