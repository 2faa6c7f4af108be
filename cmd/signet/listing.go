package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/agentcli"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
)

// table writes rows as aligned columns; the first row is the header: the
// one table style of every command of both binaries (agentcli.Table).
func table(w io.Writer, rows [][]string) error { return agentcli.Table(w, rows) }

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

// adminPage reads one page of an admin listing: it checks --limit, then
// calls list on the admin API with the page size and --page-token.
func adminPage[R any](cmd *cobra.Command, conn *adminConn, page *pageFlags,
	list func(ctx context.Context, c adminv1.AdminClient, size int32, token string) (R, error)) (R, error) {
	var resp R
	size, err := page.size()
	if err != nil {
		return resp, err
	}
	err = conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
		resp, err = list(ctx, c, size, page.token)
		return err
	})
	return resp, err
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
