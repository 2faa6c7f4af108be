package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/signet-id/signet/internal/scan"
)

// scanProgressInterval is how often the progress line is redrawn.
const scanProgressInterval = 200 * time.Millisecond

// scanProgress draws a running scan's progress on one terminal line: files
// done (of the total once known), bytes, rate, findings so far, elapsed
// time and, once the total is known, the time left. The total comes from
// scan.Measure, run beside the scan: until it is done (and for the whole
// of a --git scan, whose history has no size in advance) the line shows
// the rate without a time left. Lines printed with println go above it.
type scanProgress struct {
	w        io.Writer
	progress *scan.Progress
	cancel   context.CancelFunc
	stop     chan struct{}
	done     chan struct{} // closed when the drawing goroutine ends
	measured chan struct{} // closed when Measure returns

	mu    sync.Mutex // guards everything below and every write to w
	bar   *progressbar.ProgressBar
	total *scan.Counts // nil until known
	known bool         // bar has the total's size
	desc  string       // bar's description
	final bool         // the scan has ended: the bar may fill
}

// progressTerminal returns w as a terminal to draw progress on, or nil when
// w is not a terminal (a pipe, a file) or the output is not a table: JSON
// and SARIF are for programs, which get no progress.
func progressTerminal(w io.Writer, f scan.Format) *os.File {
	file, ok := w.(*os.File)
	if !ok || f != scan.FormatTable || !term.IsTerminal(int(file.Fd())) {
		return nil
	}
	return file
}

// startScanProgress starts measuring t with s and drawing p on w until
// finish is called.
func startScanProgress(ctx context.Context, w io.Writer, s *scan.Scanner, t scan.Targets, p *scan.Progress) *scanProgress {
	ctx, cancel := context.WithCancel(ctx)
	sp := &scanProgress{w: w, progress: p, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{}), measured: make(chan struct{})}
	sp.bar = sp.newBar(-1)
	sp.mu.Lock()
	sp.draw()
	sp.mu.Unlock()
	go func() {
		defer close(sp.measured)
		if total, ok := s.Measure(ctx, t); ok {
			sp.mu.Lock()
			sp.total = &total
			sp.mu.Unlock()
		}
	}()
	go func() {
		defer close(sp.done)
		tick := time.NewTicker(scanProgressInterval)
		defer tick.Stop()
		for {
			select {
			case <-sp.stop:
				return
			case <-tick.C:
				sp.mu.Lock()
				sp.draw()
				sp.mu.Unlock()
			}
		}
	}()
	return sp
}

// newBar returns a bar of max bytes, or a spinner for -1 (size unknown).
// The bar draws only when draw tells it to: no goroutine of its own.
func (sp *scanProgress) newBar(max int64) *progressbar.ProgressBar {
	return progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(sp.w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(max > 0),
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionFullWidth(),
	)
}

// draw redraws the line with the current counts; sp.mu is held.
func (sp *scanProgress) draw() {
	c := sp.progress.Load()
	if sp.total != nil && sp.total.Bytes > 0 && !sp.known {
		// The total is known now: a bar of that size, which times the rest.
		_ = sp.bar.Clear()
		sp.bar = sp.newBar(sp.total.Bytes)
		sp.known, sp.desc = true, ""
	}
	findings := fmt.Sprintf("%d findings", c.Findings)
	if c.Findings == 1 {
		findings = "1 finding"
	}
	desc := fmt.Sprintf("%d files, %s", c.Files, findings)
	done := c.Bytes
	if sp.known {
		desc = fmt.Sprintf("%d/%d files, %s", c.Files, sp.total.Files, findings)
		// The bar filling ends its drawing, so it fills only at the end;
		// and the scan may read a little more than measured (files that
		// grew).
		if sp.final {
			done = min(done, sp.total.Bytes)
		} else {
			done = min(done, sp.total.Bytes-1)
		}
	}
	if desc != sp.desc {
		sp.desc = desc
		sp.bar.Describe(desc) // draws
		if done == int64(sp.bar.State().CurrentBytes) {
			return
		}
	}
	_ = sp.bar.Set64(done) // draws
}

// println prints line above the progress line.
func (sp *scanProgress) println(line string) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	_ = sp.bar.Clear()
	fmt.Fprintln(sp.w, line)
	sp.draw()
}

// finish draws the final counts, erases the line and stops. A scan that
// ran to its end has walked what Measure walks, so finish waits for
// Measure's totals (ctx ending stops it); it must be called once, before
// anything else is written to the terminal.
func (sp *scanProgress) finish() {
	close(sp.stop)
	<-sp.done
	<-sp.measured
	sp.cancel()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.final = true
	sp.draw()
	_ = sp.bar.Clear()
}
