package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/config"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
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
	Status          string            `json:"status,omitempty"`
}

// agentSilentAfter is how long an agent may go unseen before it is shown as
// silent. Agents sync every few seconds; the server stamps last seen at
// most once a minute.
const agentSilentAfter = 3 * time.Minute

// nodeStatus is an agent's live status at now: banned, svid expired,
// silent (not seen for a while), never seen, or active.
func nodeStatus(n *adminv1.Node, now time.Time) string {
	seen := unixTime(n.GetLastSeenAt())
	switch {
	case n.GetBanned():
		return "banned"
	case n.GetCertNotAfter() != 0 && !now.Before(unixTime(n.GetCertNotAfter())):
		return "svid expired"
	case seen.IsZero():
		return "never seen"
	case now.Sub(seen) > agentSilentAfter:
		return "silent " + config.FormatDuration(now.Sub(seen).Truncate(time.Minute))
	}
	return "active"
}

// relTime renders t for a table with its distance from now: "…Z (5m ago)",
// "…Z (in 32m)". Zero is "-".
func relTime(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now)
	switch {
	case d > -time.Second && d < time.Second:
		return fmtTime(t) + " (now)"
	case d >= 10*time.Minute || d <= -10*time.Minute:
		d = d.Round(time.Minute)
	default:
		d = d.Truncate(time.Second)
	}
	if d < 0 {
		return fmtTime(t) + " (" + config.FormatDuration(-d) + " ago)"
	}
	return fmtTime(t) + " (in " + config.FormatDuration(d) + ")"
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
	var page pageFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List attested agents (nodes) by SPIFFE ID, a page at a time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := adminPage(cmd, conn, &page, func(ctx context.Context, c adminv1.AdminClient, size int32, token string) (*adminv1.ListNodesResponse, error) {
				return c.ListNodes(ctx, &adminv1.ListNodesRequest{Filter: filter, PageSize: size, PageToken: token})
			})
			if err != nil {
				return err
			}
			if listOut.json {
				nodes := make([]nodeJSON, len(resp.GetNodes()))
				for i, n := range resp.GetNodes() {
					nodes[i] = nodeToJSON(n)
					nodes[i].Status = nodeStatus(n, time.Now())
				}
				return writeJSON(cmd.OutOrStdout(), map[string]any{"agents": nodes, "next_page_token": resp.GetNextPageToken()})
			}
			now := time.Now()
			rows := [][]string{{"SPIFFE ID", "STATUS", "ATTESTATION", "SELECTORS", "SVID EXPIRES", "LAST SEEN"}}
			for _, n := range resp.GetNodes() {
				rows = append(rows, []string{n.GetSpiffeId(), nodeStatus(n, now), n.GetAttestationType(),
					joinOrDash(nodeToJSON(n).Selectors), relTime(unixTime(n.GetCertNotAfter()), now), relTime(unixTime(n.GetLastSeenAt()), now)})
			}
			if err := table(cmd.OutOrStdout(), rows); err != nil {
				return err
			}
			if _, err = fmt.Fprintf(cmd.OutOrStdout(), "%d agent(s)\n", len(resp.GetNodes())); err != nil {
				return err
			}
			return nextPage(cmd, resp.GetNextPageToken())
		},
	}
	list.Flags().StringVar(&filter, "filter", "", "banned or active (default: all)")
	page.addFlags(list, "agents")
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
	return append([]*cobra.Command{list, show, evict, ban, unban}, newAgentAllowCmds(conn)...)
}

func printNode(w io.Writer, n *adminv1.Node) error {
	j := nodeToJSON(n)
	return table(w, [][]string{
		{"SPIFFE ID:", j.SPIFFEID}, {"Attestation:", j.AttestationType}, {"Selectors:", joinOrDash(j.Selectors)},
		{"SVID serial:", j.SerialNumber}, {"SVID expires:", orDash(j.CertNotAfter)}, {"Banned:", fmt.Sprint(j.Banned)},
		{"Status:", nodeStatus(n, time.Now())}, {"Attested:", orDash(j.CreatedAt)},
		{"Last seen:", relTime(unixTime(n.GetLastSeenAt()), time.Now())},
	})
}

// maxJoinTokenTTL is the longest join token lifetime the server accepts,
// in seconds.
const maxJoinTokenTTL = 30 * 24 * 3600

// tokenFlagNames rewords the server's messages about a join token request
// to name the flags of token create.
func tokenFlagNames(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(strings.NewReplacer("ttl_seconds", "--ttl", "spiffe_id", "--spiffe-id").Replace(err.Error()))
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
			if secs > maxJoinTokenTTL {
				return fmt.Errorf("--ttl %s: a join token may live at most %s", ttl, config.FormatDuration(maxJoinTokenTTL*time.Second))
			}
			var resp *adminv1.CreateJoinTokenResponse
			err = conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.CreateJoinToken(ctx, &adminv1.CreateJoinTokenRequest{SpiffeId: spiffeID, TtlSeconds: secs})
				return err
			})
			if err != nil {
				return tokenFlagNames(err)
			}
			ref := hex.EncodeToString(jointoken.Hash(resp.GetToken()))[:8]
			if out.json {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"token": resp.GetToken(), "ref": ref, "spiffe_id": resp.GetSpiffeId(),
					"expires_at": rfc3339(resp.GetExpiresAt())})
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "join token %s for %s, valid until %s, single use (revoke: signet token revoke %s)\n",
				ref, resp.GetSpiffeId(), rfc3339(resp.GetExpiresAt()), ref)
			_, err = fmt.Fprintln(cmd.OutOrStdout(), resp.GetToken())
			return err
		},
	}
	create.Flags().StringVar(&spiffeID, "spiffe-id", "", "agent ID the node receives (default: derived from the token)")
	create.Flags().StringVar(&ttl, "ttl", "", "how long the token may be used, e.g. 15m (default: the server's, 1h)")
	out.addFlags(create)
	cmd.AddCommand(create, newTokenListCmd(&conn), newTokenRevokeCmd(&conn))
	return cmd
}

// tokenJSON is the CLI's JSON shape of a join token: its ref, never the
// token.
type tokenJSON struct {
	Ref       string `json:"ref"`
	SPIFFEID  string `json:"spiffe_id"`
	ExpiresAt string `json:"expires_at"`
	CreatedAt string `json:"created_at"`
}

func tokenToJSON(t *adminv1.JoinToken) tokenJSON {
	return tokenJSON{Ref: t.GetRef(), SPIFFEID: t.GetSpiffeId(), ExpiresAt: rfc3339(t.GetExpiresAt()), CreatedAt: rfc3339(t.GetCreatedAt())}
}

func newTokenListCmd(conn *adminConn) *cobra.Command {
	var out output
	var page pageFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List unused join tokens by ref (the first 8 hex digits of their hash), oldest first, a page at a time; the tokens themselves are not stored",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := adminPage(cmd, conn, &page, func(ctx context.Context, c adminv1.AdminClient, size int32, token string) (*adminv1.ListJoinTokensResponse, error) {
				return c.ListJoinTokens(ctx, &adminv1.ListJoinTokensRequest{PageSize: size, PageToken: token})
			})
			if err != nil {
				return err
			}
			if out.json {
				list := make([]tokenJSON, len(resp.GetTokens()))
				for i, t := range resp.GetTokens() {
					list[i] = tokenToJSON(t)
				}
				return writeJSON(cmd.OutOrStdout(), map[string]any{"tokens": list, "next_page_token": resp.GetNextPageToken()})
			}
			rows := [][]string{{"REF", "SPIFFE ID", "EXPIRES", "CREATED"}}
			for _, t := range resp.GetTokens() {
				rows = append(rows, []string{t.GetRef(), t.GetSpiffeId(), rfc3339(t.GetExpiresAt()), rfc3339(t.GetCreatedAt())})
			}
			if err := table(cmd.OutOrStdout(), rows); err != nil {
				return err
			}
			if _, err = fmt.Fprintf(cmd.OutOrStdout(), "%d unused join token(s)\n", len(resp.GetTokens())); err != nil {
				return err
			}
			return nextPage(cmd, resp.GetNextPageToken())
		},
	}
	page.addFlags(cmd, "tokens")
	out.addFlags(cmd)
	return cmd
}

func newTokenRevokeCmd(conn *adminConn) *cobra.Command {
	return &cobra.Command{
		Use:     "revoke REF",
		Short:   "Revoke an unused join token by its ref, or a unique prefix of it (at least 4 hex digits)",
		Example: "  signet token list\n  signet token revoke 3f9a21c7",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var t *adminv1.JoinToken
			err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				t, err = c.RevokeJoinToken(ctx, &adminv1.RevokeJoinTokenRequest{RefPrefix: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "revoked join token %s for %s\n", t.GetRef(), t.GetSpiffeId())
			return err
		},
	}
}
