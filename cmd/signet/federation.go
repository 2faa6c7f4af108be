package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/apiconv"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	"github.com/signet-id/signet/internal/keyfile"
)

// maxTrustBundleFile bounds --trust-bundle (the server takes at most 1 MiB).
const maxTrustBundleFile = 1 << 20

// federationJSON is the CLI's JSON shape of a federation relationship.
type federationJSON struct {
	TrustDomain       string `json:"trust_domain"`
	BundleEndpointURL string `json:"bundle_endpoint_url"`
	Profile           string `json:"profile"`
	EndpointSPIFFEID  string `json:"endpoint_spiffe_id,omitempty"`
	BundleSequence    uint64 `json:"bundle_sequence"`
	X509Authorities   int    `json:"x509_authorities"`
	JWTAuthorities    int    `json:"jwt_authorities"`
	LastRefresh       string `json:"last_refresh,omitempty"`
	LastAttempt       string `json:"last_attempt,omitempty"`
	LastError         string `json:"last_error,omitempty"`
	Failures          int64  `json:"failures"`
	NextRefresh       string `json:"next_refresh,omitempty"`
	CreatedAt         string `json:"created_at,omitempty"`
	Status            string `json:"status"`
}

// federationStatus is "ok", "failing" (a last good bundle is kept),
// "no bundle" or "pending".
func federationStatus(f *adminv1.Federation) string {
	switch {
	case f.GetLastError() != "" && f.GetBundle() != nil:
		return "failing (keeping the last good bundle)"
	case f.GetLastError() != "":
		return "failing (no bundle)"
	case f.GetBundle() == nil:
		return "pending"
	}
	return "ok"
}

func federationToJSON(f *adminv1.Federation) federationJSON {
	return federationJSON{
		TrustDomain: f.GetTrustDomain(), BundleEndpointURL: f.GetBundleEndpointUrl(), Profile: f.GetProfile(),
		EndpointSPIFFEID: f.GetEndpointSpiffeId(), BundleSequence: f.GetBundle().GetSequence(),
		X509Authorities: len(f.GetBundle().GetX509Authorities()), JWTAuthorities: len(f.GetBundle().GetJwtAuthorities()),
		LastRefresh: rfc3339(f.GetLastRefresh()), LastAttempt: rfc3339(f.GetLastAttempt()), LastError: f.GetLastError(),
		Failures: f.GetFailures(), NextRefresh: rfc3339(f.GetNextRefresh()), CreatedAt: rfc3339(f.GetCreatedAt()),
		Status: federationStatus(f),
	}
}

// refreshFailed is the error of a refresh whose fetch failed, or nil: the
// server answers a refresh with the relationship's state, whose last error
// it clears when a fetch succeeds.
func refreshFailed(f *adminv1.Federation) error {
	if f.GetLastError() == "" {
		return nil
	}
	kept := "no bundle of " + f.GetTrustDomain() + " is held yet"
	if f.GetBundle() != nil {
		kept = fmt.Sprintf("the last good bundle (sequence %d) stays in use", f.GetBundle().GetSequence())
	}
	return fmt.Errorf("refresh of %s failed: %s; %s", f.GetTrustDomain(), f.GetLastError(), kept)
}

func printFederation(w io.Writer, f *adminv1.Federation) error {
	j := federationToJSON(f)
	now := time.Now()
	return table(w, [][]string{
		{"Trust domain:", j.TrustDomain}, {"Bundle endpoint:", j.BundleEndpointURL}, {"Profile:", j.Profile},
		{"Endpoint SPIFFE ID:", orDash(j.EndpointSPIFFEID)}, {"Status:", j.Status},
		{"Bundle sequence:", fmt.Sprint(j.BundleSequence)},
		{"Authorities:", fmt.Sprintf("%d x509, %d jwt", j.X509Authorities, j.JWTAuthorities)},
		{"Last refresh:", relTime(unixTime(f.GetLastRefresh()), now)}, {"Last attempt:", relTime(unixTime(f.GetLastAttempt()), now)},
		{"Last error:", orDash(j.LastError)}, {"Failures in a row:", fmt.Sprint(j.Failures)},
		{"Next refresh:", relTime(unixTime(f.GetNextRefresh()), now)}, {"Created:", orDash(j.CreatedAt)},
	})
}

// federationFlagNames rewords the server's field names as this command's
// flags.
func federationFlagNames(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(strings.NewReplacer("trust_domain", "--trust-domain", "bundle_endpoint_url", "--bundle-endpoint-url",
		"endpoint_spiffe_id", "--endpoint-spiffe-id", "trust_bundle", "--trust-bundle", "profile", "--profile").Replace(err.Error()))
}

func newFederationCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{
		Use:   "federation",
		Short: "Federate with other SPIFFE trust domains (relationships and their bundles)",
		Long: `A federation relationship makes this trust domain fetch another one's bundle from its
SPIFFE bundle endpoint and hand it to the workloads whose entries name it in --federates-with.
Profile https_spiffe authenticates the endpoint with an X509-SVID (--endpoint-spiffe-id, verified
with --trust-bundle, the remote bundle obtained out of band); https_web with a web-PKI certificate.`,
	}
	conn.addFlags(cmd)

	var td, url, profile, endpointID, bundleFile string
	var createOut output
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a federation relationship",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &adminv1.CreateFederationRequest{TrustDomain: td, BundleEndpointUrl: url, Profile: profile, EndpointSpiffeId: endpointID}
			if bundleFile != "" {
				data, err := keyfile.ReadLimited(bundleFile, maxTrustBundleFile)
				if err != nil {
					return fmt.Errorf("--trust-bundle: %w", err)
				}
				req.TrustBundle = data
			}
			var f *adminv1.Federation
			err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				f, err = c.CreateFederation(ctx, req)
				return err
			})
			if err != nil {
				return federationFlagNames(err)
			}
			if createOut.json {
				return writeJSON(cmd.OutOrStdout(), federationToJSON(f))
			}
			return printFederation(cmd.OutOrStdout(), f)
		},
	}
	fl := create.Flags()
	fl.StringVar(&td, "trust-domain", "", "the remote trust domain, such as partner.org")
	fl.StringVar(&url, "bundle-endpoint-url", "", "https:// URL of the remote SPIFFE bundle endpoint")
	fl.StringVar(&profile, "profile", "", "https_spiffe or https_web: how the endpoint authenticates")
	fl.StringVar(&endpointID, "endpoint-spiffe-id", "", "the endpoint's SPIFFE ID (https_spiffe)")
	fl.StringVar(&bundleFile, "trust-bundle", "", "file with the remote trust domain's bundle, SPIFFE bundle JSON or PEM (https_spiffe: required)")
	createOut.addFlags(create)

	var (
		listOut output
		page    pageFlags
	)
	list := &cobra.Command{
		Use: "list", Short: "List federation relationships, a page at a time", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := adminPage(cmd, &conn, &page, func(ctx context.Context, c adminv1.AdminClient, size int32, token string) (*adminv1.ListFederationsResponse, error) {
				return c.ListFederations(ctx, &adminv1.ListFederationsRequest{PageSize: size, PageToken: token})
			})
			if err != nil {
				return err
			}
			if listOut.json {
				out := make([]federationJSON, len(resp.GetFederations()))
				for i, f := range resp.GetFederations() {
					out[i] = federationToJSON(f)
				}
				return writeJSON(cmd.OutOrStdout(), map[string]any{"federations": out, "next_page_token": resp.GetNextPageToken()})
			}
			now := time.Now()
			rows := [][]string{{"TRUST DOMAIN", "PROFILE", "BUNDLE ENDPOINT", "STATUS", "SEQUENCE", "LAST REFRESH"}}
			for _, f := range resp.GetFederations() {
				rows = append(rows, []string{f.GetTrustDomain(), f.GetProfile(), f.GetBundleEndpointUrl(), federationStatus(f),
					fmt.Sprint(f.GetBundle().GetSequence()), relTime(unixTime(f.GetLastRefresh()), now)})
			}
			if err := table(cmd.OutOrStdout(), rows); err != nil {
				return err
			}
			if _, err := fmt.Fprintf(cmd.OutOrStdout(), "%d relationship(s)\n", len(resp.GetFederations())); err != nil {
				return err
			}
			return nextPage(cmd, resp.GetNextPageToken())
		},
	}
	listOut.addFlags(list)
	page.addFlags(list, "relationships")

	// one is a command on one relationship; after, when set, runs once
	// the relationship is printed, and its error ends the command.
	one := func(use, short string, after func(*cobra.Command, *adminv1.Federation) error,
		op func(context.Context, adminv1.AdminClient, *adminv1.FederationRequest) (*adminv1.Federation, error)) *cobra.Command {
		var out output
		c := &cobra.Command{
			Use: use + " TRUST_DOMAIN", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				var f *adminv1.Federation
				err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
					f, err = op(ctx, c, &adminv1.FederationRequest{TrustDomain: args[0]})
					return err
				})
				if err != nil {
					return err
				}
				if out.json {
					err = writeJSON(cmd.OutOrStdout(), federationToJSON(f))
				} else {
					err = printFederation(cmd.OutOrStdout(), f)
				}
				if err != nil || after == nil {
					return err
				}
				return after(cmd, f)
			},
		}
		out.addFlags(c)
		return c
	}
	show := one("show", "Show a relationship and the state of its bundle refresh", nil,
		func(ctx context.Context, c adminv1.AdminClient, r *adminv1.FederationRequest) (*adminv1.Federation, error) {
			return c.GetFederation(ctx, r)
		})
	refresh := one("refresh", "Fetch the remote bundle now (on failure: the state, then exit status 1; the last good bundle is kept)",
		func(_ *cobra.Command, f *adminv1.Federation) error { return refreshFailed(f) },
		func(ctx context.Context, c adminv1.AdminClient, r *adminv1.FederationRequest) (*adminv1.Federation, error) {
			return c.RefreshFederation(ctx, r)
		})
	del := one("delete", "Delete a relationship: its bundle stops being served to workloads (entries that name it are warned about)",
		func(cmd *cobra.Command, f *adminv1.Federation) error {
			warnStillFederating(cmd, &conn, f.GetTrustDomain())
			return nil
		},
		func(ctx context.Context, c adminv1.AdminClient, r *adminv1.FederationRequest) (*adminv1.Federation, error) {
			return c.DeleteFederation(ctx, r)
		})
	var bundleFormat string
	showBundle := &cobra.Command{
		Use: "bundle TRUST_DOMAIN", Short: "Print the last good bundle of a federated trust domain (pem or spiffe)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if bundleFormat != "pem" && bundleFormat != "spiffe" {
				return fmt.Errorf("--format %q: use pem or spiffe", bundleFormat)
			}
			var f *adminv1.Federation
			err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				f, err = c.GetFederation(ctx, &adminv1.FederationRequest{TrustDomain: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			if f.GetBundle() == nil {
				return fmt.Errorf("trust domain %s: no bundle yet (%s)", args[0], federationStatus(f))
			}
			b, err := apiconv.BundleFromProto(f.GetBundle())
			if err != nil {
				return err
			}
			return writeBundle(cmd.OutOrStdout(), b, bundleFormat)
		},
	}
	showBundle.Flags().StringVar(&bundleFormat, "format", "spiffe", "pem or spiffe (SPIFFE bundle JSON)")
	cmd.AddCommand(create, list, show, refresh, del, showBundle)
	return cmd
}
