package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
)

// allowanceFlags name what an operator allows, one flag per method that
// needs consent.
type allowanceFlags struct{ tpmEKHash string }

func (f *allowanceFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.tpmEKHash, "tpm-ek-hash", "",
		"SHA-256 of a TPM's EK public key (hex, as the tpm:ek_hash selector shows it), for TPMs without a manufacturer EK certificate")
}

// allowance returns the allowance the flags name.
func (f *allowanceFlags) allowance() (*adminv1.NodeAllowance, error) {
	h := strings.ToLower(strings.TrimSpace(f.tpmEKHash))
	if h == "" {
		return nil, fmt.Errorf("--tpm-ek-hash is required: the SHA-256 of the TPM's EK public key, 64 hex digits")
	}
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
		return nil, fmt.Errorf("--tpm-ek-hash %q: want a SHA-256 as 64 hex digits", f.tpmEKHash)
	}
	return &adminv1.NodeAllowance{AttestationType: "tpm", Value: h}, nil
}

// newAgentAllowCmds are `agent allow`, `agent disallow` and `agent allowed`.
func newAgentAllowCmds(conn *adminConn) []*cobra.Command {
	var allowF, disallowF allowanceFlags
	var listOut output
	allow := &cobra.Command{
		Use:     "allow --tpm-ek-hash SHA256",
		Short:   "Let a node attest with a method that needs an operator's consent (a TPM without an EK certificate)",
		Example: "  signet agent allow --tpm-ek-hash 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			al, err := allowF.allowance()
			if err != nil {
				return err
			}
			if err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				al, err = c.AllowNode(ctx, al)
				return err
			}); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "allowed %s:%s\n", al.GetAttestationType(), al.GetValue())
			return err
		},
	}
	allowF.add(allow)
	disallow := &cobra.Command{
		Use:   "disallow --tpm-ek-hash SHA256",
		Short: "Remove an allowance; nodes already attested keep their SVIDs until evicted or banned",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			al, err := disallowF.allowance()
			if err != nil {
				return err
			}
			if err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) error {
				_, err := c.DisallowNode(ctx, al)
				return err
			}); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "disallowed %s:%s\n", al.GetAttestationType(), al.GetValue())
			return err
		},
	}
	disallowF.add(disallow)
	var page pageFlags
	allowed := &cobra.Command{
		Use:   "allowed",
		Short: "List the nodes allowed by hand (signet agent allow), a page at a time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := adminPage(cmd, conn, &page, func(ctx context.Context, c adminv1.AdminClient, size int32, token string) (*adminv1.ListNodeAllowancesResponse, error) {
				return c.ListNodeAllowances(ctx, &adminv1.ListNodeAllowancesRequest{PageSize: size, PageToken: token})
			})
			if err != nil {
				return err
			}
			type allowanceJSON struct {
				AttestationType string `json:"attestation_type"`
				Value           string `json:"value"`
				CreatedAt       string `json:"created_at,omitempty"`
			}
			out := make([]allowanceJSON, len(resp.GetAllowances()))
			rows := [][]string{{"ATTESTATION", "VALUE", "ALLOWED"}}
			for i, a := range resp.GetAllowances() {
				out[i] = allowanceJSON{a.GetAttestationType(), a.GetValue(), rfc3339(a.GetCreatedAt())}
				rows = append(rows, []string{out[i].AttestationType, out[i].Value, orDash(out[i].CreatedAt)})
			}
			if listOut.json {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"allowances": out, "next_page_token": resp.GetNextPageToken()})
			}
			if err := table(cmd.OutOrStdout(), rows); err != nil {
				return err
			}
			return nextPage(cmd, resp.GetNextPageToken())
		},
	}
	page.addFlags(allowed, "allowances")
	listOut.addFlags(allowed)
	return []*cobra.Command{allow, disallow, allowed}
}
