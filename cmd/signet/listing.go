package main

import (
	"fmt"
	"io"

	prettytable "github.com/jedib0t/go-pretty/v6/table"
	"github.com/jedib0t/go-pretty/v6/text"
	"github.com/spf13/cobra"
)

// tableStyle is every list command's table: a header row, columns two
// spaces apart, no borders, no trailing blanks, cells as given.
var tableStyle = func() prettytable.Style {
	s := prettytable.StyleDefault
	s.Name = "signet"
	s.Box.PaddingLeft, s.Box.PaddingRight = "", "  "
	s.Options = prettytable.Options{}
	s.Format.Header, s.Format.Row, s.Format.Footer = text.FormatDefault, text.FormatDefault, text.FormatDefault
	return s
}()

// table writes rows as aligned columns; the first row is the header.
func table(w io.Writer, rows [][]string) error {
	if len(rows) == 0 {
		return nil
	}
	t := prettytable.NewWriter()
	t.SetStyle(tableStyle)
	t.SuppressTrailingSpaces()
	t.AppendHeader(cells(rows[0]))
	for _, r := range rows[1:] {
		t.AppendRow(cells(r))
	}
	_, err := io.WriteString(w, t.Render()+"\n")
	return err
}

func cells(r []string) prettytable.Row {
	out := make(prettytable.Row, len(r))
	for i, c := range r {
		out[i] = c
	}
	return out
}

// Page sizes of list commands: --limit's default and bound (the servers'
// bound too).
const (
	defaultListLimit = 100
	maxListLimit     = 10000
)

// pageFlags are every list command's --limit and --page-token: one page
// of at most limit items, read on the server, starting at token.
type pageFlags struct {
	limit int
	token string
}

func (p *pageFlags) addFlags(cmd *cobra.Command, what string) {
	cmd.Flags().IntVar(&p.limit, "limit", defaultListLimit, fmt.Sprintf("at most this many %s (one page, 1 to %d)", what, maxListLimit))
	cmd.Flags().StringVar(&p.token, "page-token", "", "start at this page: the token the previous page printed")
}

// maxInventoryPage bounds a page of the inventory service's listings
// (findings, items, coverage reports), which is smaller than the admin
// service's.
const maxInventoryPage = 1000

// addFlagsAll is addFlags for the listings that print every page when
// --limit is 0 (their default), fetching up to max items a call.
func (p *pageFlags) addFlagsAll(cmd *cobra.Command, what string, max int) {
	cmd.Flags().IntVar(&p.limit, "limit", 0, fmt.Sprintf("at most this many %s (one page, 1 to %d; 0: all, page by page)", what, max))
	cmd.Flags().StringVar(&p.token, "page-token", "", "start at this page: the token the previous page printed")
}

// checkAll checks --limit of a listing whose flags came from addFlagsAll.
func (p *pageFlags) checkAll(max int) error {
	if p.limit < 0 || p.limit > max {
		return fmt.Errorf("--limit %d: want 1 to %d (0: all, page by page)", p.limit, max)
	}
	return nil
}

// size checks --limit and returns it as a page size.
func (p *pageFlags) size() (int32, error) {
	if p.limit < 1 || p.limit > maxListLimit {
		return 0, fmt.Errorf("--limit %d: want 1 to %d (page on with --page-token)", p.limit, maxListLimit)
	}
	return int32(p.limit), nil
}

// nextPage tells a table's reader, on stderr so that stdout stays the
// table, how to get the page after this one; nothing when it was the last.
func nextPage(cmd *cobra.Command, token string) error {
	if token == "" {
		return nil
	}
	_, err := fmt.Fprintf(cmd.ErrOrStderr(), "next page: %s --page-token %s\n", cmd.CommandPath(), token)
	return err
}
