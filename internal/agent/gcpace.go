package agent

import (
	"os"
	"runtime/debug"
	"sync"
)

// A bulk signing wave is a sync that hands bulkJobs or more X509-SVIDs to
// its signing pipeline: the initial sync of a large node, the renewal of
// all its SVIDs at half-life (they were signed together), a large batch
// of new entries. While one is in progress the agent runs the Go GC with
// bulkGCPercent instead of GOGC's default of 100.
//
// Why: a wave allocates about 17 kB of garbage per SVID (key generation
// and the CSR's signature, 8 kB; parsing and verifying the leaf; the
// messages), some 170 MB for 10,000 SVIDs, against a live heap that ends
// at about 15 MB (the cache). With GOGC=100 the heap grows to twice the
// live heap before each collection, so a 10,000-entry agent peaked at
// 52-54 MB RSS (with clientCodec) of which ~19 MB are the binary's pages;
// at 50 the heap may exceed the live heap by half of it, and the peak was
// 46.5-48 MB (BENCHMARKS.md, "A fresh 10,000-entry slim agent under 50 MB
// peak RSS"). The cost is about twice as many collections while the wave
// lasts, each a few ms of CPU (marking is proportional to the live heap):
// +0.1-0.15 CPU-s, 7-11 %, of a 10,000-entry initial sync. Steady state (syncs with
// few changes, a renewal now and then) is never affected, and the
// setting is restored as soon as the wave's SVIDs are stored.
//
// An operator who set GOGC or GOMEMLIMIT has chosen the trade-off
// between memory and CPU: the agent then leaves the GC alone. A lower
// percentage set by the program (debug.SetGCPercent) is kept.
const (
	bulkJobs      = 1000
	bulkGCPercent = 50
)

// gcPacer lowers the process's GC percentage while at least one bulk wave
// is in progress: several agents may share a process (tests, signet dev),
// so the first wave to start saves the setting and the last to end
// restores it.
type gcPacer struct {
	// setPercent is debug.SetGCPercent; skip is set when the environment
	// configures the GC.
	setPercent func(int) int
	skip       bool

	mu    sync.Mutex
	waves int // in progress
	prev  int // the percentage the first wave found
	total int // waves started, for tests
}

// bulkGC is the process's pacer.
var bulkGC = &gcPacer{
	setPercent: debug.SetGCPercent,
	skip:       os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "",
}

// enter starts a wave and returns the function that ends it (idempotent).
func (g *gcPacer) enter() (leave func()) {
	if g.skip {
		return func() {}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total++
	if g.waves == 0 {
		g.prev = g.setPercent(bulkGCPercent)
		if g.prev < bulkGCPercent {
			g.setPercent(g.prev) // lower already, or off (negative): keep it
		}
	}
	g.waves++
	var once sync.Once
	return func() { once.Do(g.leave) }
}

func (g *gcPacer) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.waves--; g.waves == 0 {
		g.setPercent(g.prev)
	}
}

// bulkWave counts the jobs one sync hands to its pipeline and enters
// pacer once they reach bulkJobs. The zero value (with pacer set) is
// ready; end must be called when the pipeline is done.
type bulkWave struct {
	pacer *gcPacer
	jobs  int
	leave func()
}

// add hands jobs to p, first entering the wave when they make it one.
func (w *bulkWave) add(p *signPipeline, jobs []signJob) {
	w.jobs += len(jobs)
	if w.leave == nil && w.jobs >= bulkJobs {
		w.leave = w.pacer.enter()
	}
	p.add(jobs)
}

// end ends the wave, if it was one.
func (w *bulkWave) end() {
	if w.leave != nil {
		w.leave()
	}
}
