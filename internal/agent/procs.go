package agent

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// DefaultIdleProcsGrace is how long the agent waits after the last SVID
// it signed before it drops to Config.IdleProcs: long enough that the
// renewals and pushes of a busy spell do not change GOMAXPROCS each time.
const DefaultIdleProcsGrace = 5 * time.Second

// procs runs the agent with Config.IdleProcs Ps (GOMAXPROCS) while it has
// no SVID to sign and with the Go runtime's default while it has. Key
// and CSR generation is the agent's only work that uses every CPU (one
// generator per P, see signPipeline); serving the Workload API is not:
// on one P, the gRPC transport's reader, the handler and the writer of a
// call run one after another on one thread, and a call wakes about four
// threads instead of six to seven (BENCHMARKS.md, "Workload API on one
// P"). A signing pipeline acquires before it starts its generators and
// releases when it is done; run lowers GOMAXPROCS once nothing has been
// signing for the grace. With idle 0 it changes nothing.
type procs struct {
	idle  int
	grace time.Duration
	clk   Clock
	// set and restore change GOMAXPROCS: runtime.GOMAXPROCS and
	// runtime.SetDefaultGOMAXPROCS (which also turns the runtime's
	// following of the CPU limit back on); tests replace them.
	set     func(int)
	restore func()
	report  func(int) // the gauge: the GOMAXPROCS now in force

	mu      sync.Mutex
	busy    int       // pipelines signing now
	since   time.Time // when busy last went to 0
	lowered bool
	wake    chan struct{} // 1-buffered: busy or lowered changed
}

func newProcs(idle int, grace time.Duration, clk Clock, report func(int)) *procs {
	return &procs{
		idle: idle, grace: grace, clk: clk,
		set:     func(n int) { runtime.GOMAXPROCS(n) },
		restore: runtime.SetDefaultGOMAXPROCS,
		report:  report,
		since:   clk.Now(),
		wake:    make(chan struct{}, 1),
	}
}

// acquire is called before a pipeline starts generating keys: it brings
// back the runtime's default GOMAXPROCS if run had lowered it, so the
// generators the caller then starts (one per P) use every CPU.
func (p *procs) acquire() {
	if p.idle == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.busy++
	if p.lowered {
		p.restore()
		p.lowered = false
		p.report(runtime.GOMAXPROCS(0))
	}
	p.signal()
}

// release is called once a pipeline that acquired is done.
func (p *procs) release() {
	if p.idle == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.busy--
	if p.busy == 0 {
		p.since = p.clk.Now()
	}
	p.signal()
}

func (p *procs) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run lowers GOMAXPROCS to idle each time nothing has been signing for the
// grace, until ctx is done or done is closed. It leaves GOMAXPROCS as it
// is when it returns: the agent is stopping.
func (p *procs) run(ctx context.Context, done <-chan struct{}) {
	if p.idle == 0 {
		return
	}
	p.report(runtime.GOMAXPROCS(0))
	for {
		var due <-chan time.Time
		p.mu.Lock()
		if p.busy == 0 && !p.lowered {
			if left := p.grace - p.clk.Now().Sub(p.since); left > 0 {
				due = p.clk.After(left)
			} else {
				p.set(p.idle)
				p.lowered = true
				p.report(p.idle)
			}
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-p.wake:
		case <-due:
		}
	}
}
