package adminapi

import (
	"testing"
	"time"
)

// SetStreamBounds lowers CreateEntriesStream's bounds for the test.
func SetStreamBounds(t testing.TB, maxEntries int, idle time.Duration) {
	oldMax, oldIdle := maxStreamEntries, streamIdle
	maxStreamEntries, streamIdle = maxEntries, idle
	t.Cleanup(func() { maxStreamEntries, streamIdle = oldMax, oldIdle })
}

// SetGroupBound lowers the entries one CreateEntryBatches transaction
// writes for the test.
func SetGroupBound(t testing.TB, n int) {
	old := maxGroupEntries
	maxGroupEntries = n
	t.Cleanup(func() { maxGroupEntries = old })
}
