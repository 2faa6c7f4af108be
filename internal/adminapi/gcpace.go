package adminapi

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// bulkHeadroom is how far the Go heap may grow past its live size while
// entries are created in bulk. Creating an entry leaves several KB of
// garbage (the request, results, statement arguments; about 7 KB in the
// CLI's batches), 700 MB for 100,000, against a live heap that grows to
// some tens of MB (the entry cache, mostly). Left to GOGC's default the
// heap grows to twice the live heap between collections, and the server's
// peak RSS went past 150 MB for a 100,000-entry batch; collecting after
// every 2,000 entries held it near 120 MB but marked the whole live heap
// 50 times, the largest part of the server's CPU besides the store's
// inserts. A soft memory limit of the live heap plus this headroom lets the
// runtime collect once per bulkHeadroom of garbage, concurrently, when it
// is needed: 24 MiB cost 11-18 MB of peak RSS against collecting every
// 2,000 entries and saved 6-9 % of the server's CPU (BENCHMARKS.md,
// "`entry create --file` under a soft memory limit"); 40 MiB put an
// --atomic batch's peak at 158-160 MB, past the 150 MB the server is held
// to, and 16 MiB saved little.
const bulkHeadroom = 24 << 20

// bulkEntries is the size from which a create call is paced: a call of a
// few entries leaves its garbage to GOGC, as any other call does.
const bulkEntries = 1000

// heapPacer holds the process's soft memory limit (debug.SetMemoryLimit)
// at the live heap plus bulkHeadroom while at least one bulk create call is
// in progress, updating it as the calls write (the live heap grows with
// the entry cache), and restores the limit found when the last one ends.
// An operator who set GOGC or GOMEMLIMIT has chosen the trade-off between
// memory and CPU: the pacer then does nothing. A lower limit set by the
// program is kept.
type heapPacer struct {
	// setLimit is debug.SetMemoryLimit, heap reads the runtime's memory
	// figures, collect starts a collection (runtime.GC on a goroutine of its
	// own); tests replace them.
	setLimit func(int64) int64
	heap     func() heapFigures
	collect  func()
	skip     bool

	mu     sync.Mutex
	active int   // bulk calls in progress
	prev   int64 // the limit the first one found
}

// heapFigures are the runtime's figures the pacer works from, in bytes.
type heapFigures struct {
	live    uint64 // the heap's live objects, as of the last collection's mark
	objects uint64 // the heap's objects now, live or not yet collected
	inUse   uint64 // what the memory limit counts: all the runtime holds but has released
}

// target is the memory limit that lets the heap's objects grow to the live
// heap plus bulkHeadroom, the rest of what the runtime holds (stacks,
// metadata, free spans) as it is now.
func (f heapFigures) target() int64 {
	other := f.inUse - min(f.objects, f.inUse)
	t := other + f.live + bulkHeadroom
	if t > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(t)
}

// bulkGC is the process's pacer.
var bulkGC = &heapPacer{
	setLimit: debug.SetMemoryLimit,
	heap:     readHeapFigures,
	collect:  startCollection,
	skip:     os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "",
}

// createCall follows one create call for the pacer. The zero value with
// p set is ready; end must be called when the call ends.
type createCall struct {
	p       *heapPacer
	n       int  // entries counted so far (wrote)
	entered bool // the call is bulk: it counts in p.active
}

// call starts following a create call.
func (p *heapPacer) call() *createCall { return &createCall{p: p} }

// wrote counts n more entries of the call, received or written: from
// bulkEntries on, the call is paced, and each later count moves the limit
// with the live heap, which grows with what the call wrote.
func (c *createCall) wrote(n int) {
	if c.p.skip {
		return
	}
	c.n += n
	switch {
	case c.entered:
		c.p.update()
	case c.n >= bulkEntries:
		c.entered = true
		c.p.enter()
	}
}

// end ends the call (once).
func (c *createCall) end() {
	if c.entered {
		c.entered = false
		c.p.leave()
	}
}

func (p *heapPacer) enter() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active == 0 {
		p.prev = p.setLimit(-1)
	}
	p.active++
	p.updateLocked()
}

func (p *heapPacer) update() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active > 0 {
		p.updateLocked()
	}
}

func (p *heapPacer) updateLocked() {
	p.setLimit(min(p.prev, p.heap().target()))
}

// leave ends a bulk call. When it was the last, the limit found is
// restored; the garbage the calls left, when more than bulkHeadroom, is
// collected at once rather than left for GOGC's pacing, which would let
// the heap grow to twice the live heap first.
func (p *heapPacer) leave() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active--; p.active > 0 {
		return
	}
	p.setLimit(p.prev)
	if f := p.heap(); f.objects > f.live+bulkHeadroom {
		p.collect()
	}
}

var heapSamples = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
}

func readHeapFigures() heapFigures {
	s := make([]metrics.Sample, len(heapSamples))
	for i, name := range heapSamples {
		s[i].Name = name
	}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	total, released := v(2), v(3)
	return heapFigures{live: v(0), objects: v(1), inUse: total - min(released, total)}
}

var collecting sync.Mutex

// startCollection runs a collection on a goroutine of its own, unless one
// started so is still running: runtime.GC returns only once the collection
// is done, and the caller has its answer to send.
func startCollection() {
	if !collecting.TryLock() {
		return
	}
	go func() {
		defer collecting.Unlock()
		runtime.GC()
	}()
}
