package agent

// BulkGCWaves is how many bulk signing waves the process's GC pacer has
// started (gcpace.go), and whether the environment left the GC alone.
func BulkGCWaves() (waves int, skipped bool) {
	bulkGC.mu.Lock()
	defer bulkGC.mu.Unlock()
	return bulkGC.total, bulkGC.skip
}
