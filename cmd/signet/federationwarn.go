package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
)

// maxFederationPages bounds the pages warnUnfederated reads: a server
// with more relationships than that is not warned about.
const maxFederationPages = 100

// warnUnfederated writes to stderr one warning per trust domain that
// entries federate with but that has no federation relationship on the
// server. Such an entry is valid (the relationship may be created later,
// and the entry then works), but until then its workloads receive no
// bundle of that trust domain, which a typo in --federates-with would
// otherwise hide. A server that cannot list relationships (an older one,
// or a caller without the right) is not warned about: the entries are
// created either way.
func warnUnfederated(cmd *cobra.Command, conn *adminConn, entries []*commonv1.Entry) {
	want := make(map[string]bool)
	for _, e := range entries {
		for _, f := range e.GetFederatesWith() {
			if td, err := spiffeid.TrustDomainFromString(f); err == nil {
				want[td.Name()] = true
			}
		}
	}
	if len(want) == 0 {
		return
	}
	err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) error {
		token := ""
		for range maxFederationPages {
			resp, err := c.ListFederations(ctx, &adminv1.ListFederationsRequest{PageToken: token})
			if err != nil {
				return err
			}
			for _, f := range resp.GetFederations() {
				delete(want, f.GetTrustDomain())
			}
			if token = resp.GetNextPageToken(); token == "" || len(want) == 0 {
				return nil
			}
		}
		return fmt.Errorf("more than %d pages of relationships", maxFederationPages)
	})
	if err != nil {
		return
	}
	missing := make([]string, 0, len(want))
	for td := range want {
		missing = append(missing, td)
	}
	slices.Sort(missing)
	for _, td := range missing {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: this server has no federation relationship with %s: workloads of "+
			"entries that federate with it get no bundle of %s until `signet federation create --trust-domain %s …` adds one\n",
			td, td, td)
	}
}

// stillFederatingPage is how many of the entries that federate with a
// deleted relationship's trust domain warnStillFederating counts.
const stillFederatingPage = 1000

// warnStillFederating writes to stderr how many entries still federate
// with td, whose relationship was just deleted: their workloads no longer
// receive its bundle, until the relationship is created again or the
// entries are changed. Nothing when there are none or they cannot be
// listed.
func warnStillFederating(cmd *cobra.Command, conn *adminConn, td string) {
	var resp *adminv1.ListEntriesResponse
	err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
		resp, err = c.ListEntries(ctx, &adminv1.ListEntriesRequest{FederatesWith: td, PageSize: stillFederatingPage})
		return err
	})
	if err != nil || len(resp.GetEntries()) == 0 {
		return
	}
	what := fmt.Sprintf("%d entries still federate", len(resp.GetEntries()))
	switch {
	case resp.GetNextPageToken() != "":
		what = fmt.Sprintf("%d or more entries still federate", stillFederatingPage)
	case len(resp.GetEntries()) == 1:
		what = "1 entry still federates"
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s with %s: their workloads no longer receive its bundle "+
		"(signet entry list --federates-with %s)\n", what, td, td)
}

// createdEntries returns the entries of the results that succeeded.
func createdEntries(results []*adminv1.EntryResult) []*commonv1.Entry {
	var out []*commonv1.Entry
	for _, r := range results {
		if r.GetStatus().GetCode() == 0 && r.GetEntry() != nil {
			out = append(out, r.GetEntry())
		}
	}
	return out
}
