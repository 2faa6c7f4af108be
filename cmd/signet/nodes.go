package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
)

// nodeJSON is the CLI's JSON shape of an attested node.
type nodeJSON struct {
	SPIFFEID        string            `json:"spiffe_id"`
	AttestationType string            `json:"attestation_type"`
	Selectors       []string          `json:"selectors,omitempty"`
	SerialNumber    string            `json:"serial_number"`
	CertNotAfter    string            `json:"cert_not_after,omitempty"`
	Banned          bool              `json:"banned"`
	Labels          map[string]string `json:"labels,omitempty"`
	CreatedAt       string            `json:"created_at,omitempty"`
	LastSeenAt      string            `json:"last_seen_at,omitempty"`
}

func nodeToJSON(n *adminv1.Node) nodeJSON {
	sels := make([]string, len(n.GetSelectors()))
	for i, s := range n.GetSelectors() {
		sels[i] = s.GetType() + ":" + s.GetValue()
	}
	return nodeJSON{SPIFFEID: n.GetSpiffeId(), AttestationType: n.GetAttestationType(), Selectors: sels,
		SerialNumber: n.GetSerialNumber(), CertNotAfter: rfc3339(n.GetCertNotAfter()), Banned: n.GetBanned(),
		Labels: n.GetLabels(), CreatedAt: rfc3339(n.GetCreatedAt()), LastSeenAt: rfc3339(n.GetLastSeenAt())}
}

// newAgentAdminCmds returns the admin subcommands of `signet agent`.
func newAgentAdminCmds(conn *adminConn) []*cobra.Command {
	var listOut, showOut output
	var filter string
	list := &cobra.Command{
		Use:   "list",
		Short: "List attested agents (nodes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp *adminv1.ListNodesResponse
			err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.ListNodes(ctx, &adminv1.ListNodesRequest{Filter: filter})
				return err
			})
			if err != nil {
				return err
			}
			if listOut.json {
				nodes := make([]nodeJSON, len(resp.GetNodes()))
				for i, n := range resp.GetNodes() {
					nodes[i] = nodeToJSON(n)
				}
				return writeJSON(cmd.OutOrStdout(), map[string]any{"agents": nodes})
			}
			rows := [][]string{{"SPIFFE ID", "ATTESTATION", "SVID EXPIRES", "LAST SEEN", "BANNED"}}
			for _, n := range resp.GetNodes() {
				rows = append(rows, []string{n.GetSpiffeId(), n.GetAttestationType(), fmtTime(unixTime(n.GetCertNotAfter())),
					fmtTime(unixTime(n.GetLastSeenAt())), fmt.Sprint(n.GetBanned())})
			}
			return table(cmd.OutOrStdout(), rows)
		},
	}
	list.Flags().StringVar(&filter, "filter", "", "banned or active (default: all)")
	listOut.addFlags(list)

	show := &cobra.Command{
		Use:   "show SPIFFE_ID",
		Short: "Show one attested agent",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var n *adminv1.Node
			err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				n, err = c.GetNode(ctx, &adminv1.GetNodeRequest{SpiffeId: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			if showOut.json {
				return writeJSON(cmd.OutOrStdout(), nodeToJSON(n))
			}
			return printNode(cmd.OutOrStdout(), n)
		},
	}
	showOut.addFlags(show)

	evict := &cobra.Command{
		Use:   "evict SPIFFE_ID",
		Short: "Forget an agent: its SVID stops working; it must re-attest with a new join token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) error {
				_, err := c.EvictNode(ctx, &adminv1.NodeRequest{SpiffeId: args[0]})
				return err
			})
			if err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "evicted %s\n", args[0])
			}
			return err
		},
	}
	banCmd := func(use, short, done string, rpc func(adminv1.AdminClient, context.Context, *adminv1.NodeRequest) (*adminv1.Node, error)) *cobra.Command {
		return &cobra.Command{
			Use: use + " SPIFFE_ID", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) error {
					_, err := rpc(c, ctx, &adminv1.NodeRequest{SpiffeId: args[0]})
					return err
				})
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", done, args[0])
				}
				return err
			},
		}
	}
	ban := banCmd("ban", "Refuse an agent until unbanned, even if it attests again", "banned",
		func(c adminv1.AdminClient, ctx context.Context, r *adminv1.NodeRequest) (*adminv1.Node, error) {
			return c.BanNode(ctx, r)
		})
	unban := banCmd("unban", "Lift an agent's ban", "unbanned",
		func(c adminv1.AdminClient, ctx context.Context, r *adminv1.NodeRequest) (*adminv1.Node, error) {
			return c.UnbanNode(ctx, r)
		})
	return []*cobra.Command{list, show, evict, ban, unban}
}

func printNode(w io.Writer, n *adminv1.Node) error {
	j := nodeToJSON(n)
	return table(w, [][]string{
		{"SPIFFE ID:", j.SPIFFEID}, {"Attestation:", j.AttestationType}, {"Selectors:", joinOrDash(j.Selectors)},
		{"SVID serial:", j.SerialNumber}, {"SVID expires:", orDash(j.CertNotAfter)}, {"Banned:", fmt.Sprint(j.Banned)},
		{"Attested:", orDash(j.CreatedAt)}, {"Last seen:", orDash(j.LastSeenAt)},
	})
}

func newTokenCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{Use: "token", Short: "Manage join tokens for agent attestation"}
	conn.addFlags(cmd)
	var (
		spiffeID, ttl string
		out           output
	)
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a single-use join token; prints the token alone on stdout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secs, err := parseTTL("--ttl", ttl)
			if err != nil {
				return err
			}
			var resp *adminv1.CreateJoinTokenResponse
			err = conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.CreateJoinToken(ctx, &adminv1.CreateJoinTokenRequest{SpiffeId: spiffeID, TtlSeconds: secs})
				return err
			})
			if err != nil {
				return err
			}
			if out.json {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"token": resp.GetToken(), "spiffe_id": resp.GetSpiffeId(),
					"expires_at": rfc3339(resp.GetExpiresAt())})
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "join token for %s, valid until %s, single use\n", resp.GetSpiffeId(), rfc3339(resp.GetExpiresAt()))
			_, err = fmt.Fprintln(cmd.OutOrStdout(), resp.GetToken())
			return err
		},
	}
	create.Flags().StringVar(&spiffeID, "spiffe-id", "", "agent ID the node receives (default: derived from the token)")
	create.Flags().StringVar(&ttl, "ttl", "", "how long the token may be used, e.g. 15m (default: the server's, 1h)")
	out.addFlags(create)
	cmd.AddCommand(create)
	return cmd
}
