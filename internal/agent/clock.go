package agent

import "time"

// Clock is the agent's source of time: what "now" is and when a wait ends.
// Certificate lifetimes, renewal, sync and retry schedules all go through
// it, so tests drive them with a fake clock (internal/testenv/testclock)
// instead of sleeping. Calls to the server are bounded by real-time
// contexts regardless.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives the time once d has passed.
	// The channel is never closed; an abandoned wait costs nothing once
	// the channel is unreferenced.
	After(d time.Duration) <-chan time.Time
}

// systemClock is the real clock, the default.
type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
