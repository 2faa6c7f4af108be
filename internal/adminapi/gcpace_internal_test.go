package adminapi

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
)

// fakeRuntime records what a heapPacer does to the memory limit and
// answers its reads with figures the test sets.
type fakeRuntime struct {
	limit       int64
	sets        []int64
	figures     heapFigures
	collections int
}

func (f *fakeRuntime) pacer() *heapPacer {
	return &heapPacer{
		setLimit: func(v int64) int64 {
			prev := f.limit
			if v >= 0 {
				f.limit = v
				f.sets = append(f.sets, v)
			}
			return prev
		},
		heap:    func() heapFigures { return f.figures },
		collect: func() { f.collections++ },
	}
}

const mib = 1 << 20

// TestHeapPacerBulkCall: a call is paced from bulkEntries on, with a limit
// of the live heap plus bulkHeadroom plus what the runtime holds besides
// the heap's objects, moved as the live heap grows; at its end the limit
// found is restored and garbage past the headroom collected.
func TestHeapPacerBulkCall(t *testing.T) {
	f := &fakeRuntime{limit: math.MaxInt64, figures: heapFigures{live: 10 * mib, objects: 30 * mib, inUse: 50 * mib}}
	p := f.pacer()
	c := p.call()
	c.wrote(bulkEntries - 1)
	if len(f.sets) != 0 {
		t.Fatalf("a call of %d entries set the limit: %v", bulkEntries-1, f.sets)
	}
	c.wrote(1)
	// 20 MiB besides the objects + 10 MiB live + the headroom.
	if want := int64(30*mib + bulkHeadroom); f.limit != want {
		t.Fatalf("limit after %d entries = %d MiB, want %d MiB", bulkEntries, f.limit/mib, want/mib)
	}
	f.figures = heapFigures{live: 40 * mib, objects: 60 * mib, inUse: 80 * mib}
	c.wrote(2000)
	if want := int64(60*mib + bulkHeadroom); f.limit != want {
		t.Fatalf("limit once the live heap grew = %d MiB, want %d MiB", f.limit/mib, want/mib)
	}
	f.figures.objects = 40*mib + bulkHeadroom + 1
	c.end()
	c.end()
	if f.limit != math.MaxInt64 {
		t.Fatalf("limit after the call = %d, want the one found (%d)", f.limit, int64(math.MaxInt64))
	}
	if f.collections != 1 {
		t.Fatalf("collections after a call that left more garbage than the headroom = %d, want 1", f.collections)
	}
}

// TestHeapPacerSmallCall: a call of fewer than bulkEntries entries leaves
// the limit and the collector alone, whatever garbage there is.
func TestHeapPacerSmallCall(t *testing.T) {
	f := &fakeRuntime{limit: math.MaxInt64, figures: heapFigures{live: 10 * mib, objects: 500 * mib, inUse: 600 * mib}}
	c := f.pacer().call()
	c.wrote(bulkEntries - 1)
	c.end()
	if len(f.sets) != 0 || f.collections != 0 {
		t.Fatalf("small call: limits set %v, collections %d; want none", f.sets, f.collections)
	}
}

// TestHeapPacerOverlappingCalls: the first bulk call saves the limit, the
// last restores it; a call ending while another is paced changes nothing.
func TestHeapPacerOverlappingCalls(t *testing.T) {
	f := &fakeRuntime{limit: 1 << 40, figures: heapFigures{live: 10 * mib, objects: 20 * mib, inUse: 30 * mib}}
	p := f.pacer()
	a, b := p.call(), p.call()
	a.wrote(bulkEntries)
	b.wrote(bulkEntries)
	paced := f.limit
	a.end()
	if f.limit != paced {
		t.Fatalf("limit after one of two calls ended = %d, want %d (still paced)", f.limit, paced)
	}
	b.end()
	if f.limit != 1<<40 {
		t.Fatalf("limit after both ended = %d, want %d", f.limit, int64(1<<40))
	}
	if f.collections != 0 {
		t.Fatalf("collections = %d with garbage under the headroom, want 0", f.collections)
	}
}

// TestHeapPacerKeepsLowerLimit: a limit the program set lower than the
// pacer's is kept while paced.
func TestHeapPacerKeepsLowerLimit(t *testing.T) {
	f := &fakeRuntime{limit: 32 * mib, figures: heapFigures{live: 100 * mib, objects: 120 * mib, inUse: 150 * mib}}
	c := f.pacer().call()
	c.wrote(bulkEntries)
	if f.limit != 32*mib {
		t.Fatalf("limit = %d MiB, want the lower one set before (32 MiB)", f.limit/mib)
	}
	c.end()
	if f.limit != 32*mib {
		t.Fatalf("limit after = %d MiB, want 32 MiB", f.limit/mib)
	}
}

// TestHeapPacerSkip: with GOGC or GOMEMLIMIT set the pacer does nothing.
func TestHeapPacerSkip(t *testing.T) {
	f := &fakeRuntime{limit: math.MaxInt64, figures: heapFigures{live: 10 * mib, objects: 500 * mib, inUse: 600 * mib}}
	p := f.pacer()
	p.skip = true
	c := p.call()
	c.wrote(10 * bulkEntries)
	c.end()
	if len(f.sets) != 0 || f.collections != 0 {
		t.Fatalf("skipped pacer: limits set %v, collections %d; want none", f.sets, f.collections)
	}
}

// TestReadHeapFigures: the runtime's figures are read and consistent, and
// the real pacer restores the process's limit.
func TestReadHeapFigures(t *testing.T) {
	runtime.GC() // the live heap is known from the first collection on
	f := readHeapFigures()
	if f.live == 0 || f.objects == 0 || f.inUse < f.objects {
		t.Fatalf("heap figures = %+v: want a live heap, objects, and at least the objects in use", f)
	}
	if bulkGC.skip {
		t.Skip("GOGC or GOMEMLIMIT is set")
	}
	before := debug.SetMemoryLimit(-1)
	c := bulkGC.call()
	c.wrote(bulkEntries)
	if got := debug.SetMemoryLimit(-1); got >= before || got < int64(f.live) {
		t.Errorf("limit while paced = %d, want below %d and above the live heap %d", got, before, f.live)
	}
	c.end()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("limit after = %d, want %d", got, before)
	}
}
