package main

import (
	"os"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// entryProgress returns a progress callback for createEntries that shows,
// on stderr, how many of total entries were sent as each batch commits,
// and a func that clears the bar. It shows nothing unless want is set and
// both stdout and stderr are terminals: never with --json, never piped.
func entryProgress(cmd *cobra.Command, total int, want bool) (progress func(int), done func()) {
	nothing := func() {}
	if !want || total <= entryBatchSize || !isTerminal(cmd.OutOrStdout()) || !isTerminal(cmd.ErrOrStderr()) {
		return nil, nothing
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetDescription("creating entries"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("entries"),
		progressbar.OptionShowIts(),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true), // the clock starts now, not at the first batch
	)
	return func(n int) { _ = bar.Add(n) }, func() { _ = bar.Finish() }
}

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
