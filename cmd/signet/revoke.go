package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
)

// revocationJSON is the CLI's JSON shape of an SVID revocation.
type revocationJSON struct {
	Serial    string `json:"serial,omitempty"`
	SPIFFEID  string `json:"spiffe_id"`
	SVID      string `json:"svid"` // x509 (by serial) or jwt (every JWT-SVID of the ID until revoked_at)
	RevokedAt string `json:"revoked_at"`
	ExpiresAt string `json:"expires_at"`
}

func toRevocationJSON(r *adminv1.SVIDRevocation) revocationJSON {
	kind := "x509"
	if r.GetSerial() == "" {
		kind = "jwt"
	}
	return revocationJSON{Serial: r.GetSerial(), SPIFFEID: r.GetSpiffeId(), SVID: kind,
		RevokedAt: fmtTime(unixTime(r.GetRevokedAt())), ExpiresAt: fmtTime(unixTime(r.GetExpiresAt()))}
}

// printRevocations writes revocations as JSON or as a table.
func printRevocations(cmd *cobra.Command, out output, revs []*adminv1.SVIDRevocation) error {
	list := make([]revocationJSON, len(revs))
	for i, r := range revs {
		list[i] = toRevocationJSON(r)
	}
	if out.json {
		return writeJSON(cmd.OutOrStdout(), list)
	}
	rows := [][]string{{"SVID", "SERIAL", "SPIFFE ID", "REVOKED AT", "UNTIL"}}
	for _, r := range list {
		serial := r.Serial
		if serial == "" {
			serial = "(all issued until revoked)"
		}
		rows = append(rows, []string{r.SVID, serial, r.SPIFFEID, r.RevokedAt, r.ExpiresAt})
	}
	return table(cmd.OutOrStdout(), rows)
}

// newSVIDRevokeCmds builds `svid revoke` and `svid revocations`, admin
// commands on the server's admin socket.
func newSVIDRevokeCmds() []*cobra.Command {
	var (
		conn             adminConn
		serial, spiffeID string
		out              output
	)
	revoke := &cobra.Command{
		Use:   "revoke --serial HEX | --spiffe-id ID",
		Short: "Revoke SVIDs now: agents stop serving them within a second and get fresh ones; the server and Signet's validators refuse them until they expire",
		Long: "Revoke one X509-SVID by its serial number (--serial, hex as openssl prints it), or every SVID of a SPIFFE ID\n" +
			"(--spiffe-id: each X509-SVID issued for it so far, and its JWT-SVIDs issued until now).\n" +
			"Agents drop revoked SVIDs at once and mint fresh ones where the entry still exists, so a stolen key dies and\n" +
			"the workload keeps working. Revoking an agent's own SVID ends that agent: it must attest again.",
		Example: "  signet svid revoke --serial 3f:a2:09:c1\n  signet svid revoke --spiffe-id spiffe://example.org/web",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &adminv1.RevokeSVIDsRequest{}
			switch {
			case serial != "" && spiffeID != "":
				return errors.New("--serial and --spiffe-id: give one, not both")
			case serial != "":
				req.Target = &adminv1.RevokeSVIDsRequest_Serial{Serial: serial}
			case spiffeID != "":
				req.Target = &adminv1.RevokeSVIDsRequest_SpiffeId{SpiffeId: spiffeID}
			default:
				return errors.New("--serial or --spiffe-id is required: the serial number (hex) of one X509-SVID, or a SPIFFE ID whose SVIDs to revoke")
			}
			var resp *adminv1.RevokeSVIDsResponse
			if err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.RevokeSVIDs(ctx, req)
				return err
			}); err != nil {
				return err
			}
			if out.json {
				return printRevocations(cmd, out, resp.GetRevocations())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d revocation(s) recorded and pushed to the agents\n", len(resp.GetRevocations()))
			return printRevocations(cmd, out, resp.GetRevocations())
		},
	}
	conn.addFlags(revoke)
	out.addFlags(revoke)
	revoke.Flags().StringVar(&serial, "serial", "", "serial number of the X509-SVID to revoke, in hex (colons allowed)")
	revoke.Flags().StringVar(&spiffeID, "spiffe-id", "", "SPIFFE ID whose SVIDs to revoke")

	var listConn adminConn
	var listOut output
	list := &cobra.Command{
		Use:   "revocations",
		Short: "List the SVID revocations in force (each until the SVIDs it names expire)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp *adminv1.ListSVIDRevocationsResponse
			if err := listConn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.ListSVIDRevocations(ctx, &adminv1.ListSVIDRevocationsRequest{})
				return err
			}); err != nil {
				return err
			}
			return printRevocations(cmd, listOut, resp.GetRevocations())
		},
	}
	listConn.addFlags(list)
	listOut.addFlags(list)
	return []*cobra.Command{revoke, list}
}
