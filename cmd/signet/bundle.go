package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/apiconv"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
)

func newBundleCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{Use: "bundle", Short: "Show the trust domain's trust bundle"}
	conn.addFlags(cmd)
	var format string
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the trust bundle: PEM X.509 authorities (default) or the SPIFFE bundle JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "pem" && format != "spiffe" {
				return fmt.Errorf("--format %q: use pem or spiffe", format)
			}
			var b *commonv1.Bundle
			err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				b, err = c.GetBundle(ctx, &adminv1.GetBundleRequest{})
				return err
			})
			if err != nil {
				return err
			}
			sb, err := apiconv.BundleFromProto(b)
			if err != nil {
				return err
			}
			return writeBundle(cmd.OutOrStdout(), sb, format)
		},
	}
	show.Flags().StringVar(&format, "format", "pem", "pem or spiffe (SPIFFE bundle JSON with JWT keys)")
	cmd.AddCommand(show)
	return cmd
}

// writeBundle prints b as PEM X.509 authorities or SPIFFE bundle JSON.
func writeBundle(w io.Writer, b *spiffebundle.Bundle, format string) error {
	if format == "pem" {
		for _, c := range b.X509Authorities() {
			if err := pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
				return err
			}
		}
		return nil
	}
	data, err := b.Marshal()
	if err != nil {
		return fmt.Errorf("encode bundle: %w", err)
	}
	_, err = fmt.Fprintln(w, string(data))
	return err
}

func newAuthorityCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{
		Use:   "authority",
		Short: "Inspect and rotate the CA's X.509 and JWT authorities",
		Long: `Authorities go prepared → active → old. The server rotates them automatically:
the next key is prepared (and published in the trust bundle) at half the active
one's lifetime, and activated at five sixths, so peers trust it long before it signs.
These commands force the steps.`,
	}
	conn.addFlags(cmd)
	var out output
	var page pageFlags
	list := &cobra.Command{
		Use: "list", Short: "List authorities and their states, a page at a time", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := adminPage(cmd, &conn, &page, func(ctx context.Context, c adminv1.AdminClient, size int32, token string) (*adminv1.ListAuthoritiesResponse, error) {
				return c.ListAuthorities(ctx, &adminv1.ListAuthoritiesRequest{PageSize: size, PageToken: token})
			})
			if err != nil {
				return err
			}
			if out.json {
				items := make([]map[string]string, 0, len(resp.GetAuthorities()))
				for _, a := range resp.GetAuthorities() {
					items = append(items, map[string]string{"id": a.GetId(), "kind": a.GetKind(), "state": a.GetState(),
						"server_id": a.GetServerId(), "not_before": rfc3339(a.GetNotBefore()), "not_after": rfc3339(a.GetNotAfter())})
				}
				return writeJSON(cmd.OutOrStdout(), map[string]any{"authorities": items, "next_page_token": resp.GetNextPageToken()})
			}
			rows := [][]string{{"KIND", "STATE", "ID", "NOT BEFORE", "NOT AFTER", "SERVER"}}
			for _, a := range resp.GetAuthorities() {
				rows = append(rows, []string{a.GetKind(), a.GetState(), a.GetId(), rfc3339(a.GetNotBefore()), rfc3339(a.GetNotAfter()), a.GetServerId()})
			}
			if err := table(cmd.OutOrStdout(), rows); err != nil {
				return err
			}
			return nextPage(cmd, resp.GetNextPageToken())
		},
	}
	page.addFlags(list, "authorities")
	out.addFlags(list)

	op := func(use, short string, needID bool, rpc func(adminv1.AdminClient, context.Context, *adminv1.AuthorityRequest) (*adminv1.Authority, error)) *cobra.Command {
		args := cobra.ExactArgs(1)
		if needID {
			args = cobra.ExactArgs(2)
			use += " x509|jwt ID"
		} else {
			use += " x509|jwt"
		}
		return &cobra.Command{
			Use: use, Short: short, Args: args,
			RunE: func(cmd *cobra.Command, args []string) error {
				req := &adminv1.AuthorityRequest{Kind: args[0]}
				if needID {
					req.Id = args[1]
				}
				var a *adminv1.Authority
				err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
					a, err = rpc(c, ctx, req)
					return err
				})
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s authority %s is now %s (valid until %s)\n", a.GetKind(), a.GetId(), a.GetState(), rfc3339(a.GetNotAfter()))
				return err
			},
		}
	}
	cmd.AddCommand(list,
		op("prepare", "Prepare the next authority now (published in the bundle, not yet signing)", false,
			func(c adminv1.AdminClient, ctx context.Context, r *adminv1.AuthorityRequest) (*adminv1.Authority, error) {
				return c.PrepareAuthority(ctx, r)
			}),
		op("activate", "Activate the prepared authority; the active one becomes old", false,
			func(c adminv1.AdminClient, ctx context.Context, r *adminv1.AuthorityRequest) (*adminv1.Authority, error) {
				return c.ActivateAuthority(ctx, r)
			}),
		op("taint", "Mark an old authority as suspect (still published, never used)", true,
			func(c adminv1.AdminClient, ctx context.Context, r *adminv1.AuthorityRequest) (*adminv1.Authority, error) {
				return c.TaintAuthority(ctx, r)
			}),
		op("revoke", "Remove a tainted or old authority from the trust bundle", true,
			func(c adminv1.AdminClient, ctx context.Context, r *adminv1.AuthorityRequest) (*adminv1.Authority, error) {
				return c.RevokeAuthority(ctx, r)
			}),
	)
	return cmd
}
