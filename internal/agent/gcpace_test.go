package agent

import (
	"slices"
	"testing"
)

// fakePercent records the GC percentages a gcPacer sets, starting at
// start.
type fakePercent struct {
	cur int
	set []int
}

func (f *fakePercent) setPercent(p int) int {
	prev := f.cur
	f.cur = p
	f.set = append(f.set, p)
	return prev
}

// TestGCPacer: the first wave lowers the percentage, the last restores
// it, a lower (or disabled) setting is kept, and the environment's GOGC
// or GOMEMLIMIT leaves the GC alone.
func TestGCPacer(t *testing.T) {
	for _, tc := range []struct {
		name       string
		start      int
		skip       bool
		wantDuring int
	}{
		{"default", 100, false, bulkGCPercent},
		{"higher", 400, false, bulkGCPercent},
		{"lower kept", 20, false, 20},
		{"off kept", -1, false, -1},
		{"environment", 100, true, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakePercent{cur: tc.start}
			g := &gcPacer{setPercent: f.setPercent, skip: tc.skip}
			leave1 := g.enter()
			leave2 := g.enter()
			if f.cur != tc.wantDuring {
				t.Errorf("during two waves the GC percentage is %d, want %d", f.cur, tc.wantDuring)
			}
			leave1()
			leave1() // idempotent
			if f.cur != tc.wantDuring {
				t.Errorf("with one wave left the GC percentage is %d, want %d", f.cur, tc.wantDuring)
			}
			leave2()
			if f.cur != tc.start {
				t.Errorf("after the waves the GC percentage is %d, want %d (set: %v)", f.cur, tc.start, f.set)
			}
			if tc.skip && len(f.set) != 0 {
				t.Errorf("with GOGC or GOMEMLIMIT set the pacer set %v, want nothing", f.set)
			}
			// A later wave saves the setting again.
			f.cur = 300
			g.enter()()
			if f.cur != 300 {
				t.Errorf("after a later wave the GC percentage is %d, want 300", f.cur)
			}
		})
	}
}

// TestBulkWave: a sync enters the pacer once its jobs reach bulkJobs,
// not before, and only once.
func TestBulkWave(t *testing.T) {
	f := &fakePercent{cur: 100}
	w := &bulkWave{pacer: &gcPacer{setPercent: f.setPercent}}
	a := &Agent{cache: &cache{}}
	p := &signPipeline{a: a, keygen: make(chan []signJob, 1), failed: make(chan struct{})}
	// Another pipeline holds every job's rec: claim drops them, so this
	// pipeline gets none.
	jobs := make([]signJob, bulkJobs/2)
	for i := range jobs {
		jobs[i].rec = &entryRec{signing: true}
	}
	w.add(p, jobs)
	if w.pacer.total != 0 || f.cur != 100 {
		t.Fatalf("after %d jobs: %d waves, GC percentage %d; want none and 100", len(jobs), w.pacer.total, f.cur)
	}
	w.add(p, jobs)
	w.add(p, jobs)
	if w.pacer.total != 1 || f.cur != bulkGCPercent {
		t.Fatalf("after %d jobs: %d waves, GC percentage %d; want 1 and %d", 3*len(jobs), w.pacer.total, f.cur, bulkGCPercent)
	}
	w.end()
	w.end()
	if f.cur != 100 || !slices.Equal(f.set, []int{bulkGCPercent, 100}) {
		t.Fatalf("after end: GC percentage %d (set %v), want 100 (set [%d 100])", f.cur, f.set, bulkGCPercent)
	}
}
