package workload_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"

	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workload"
	"github.com/signet-id/signet/internal/workload/workloadtest"
)

// scopedSource is a Source that scopes bundles by caller: a caller whose
// selectors include fedSel sees the partner bundle, others only the own
// one. It records the selectors BundlesFor was asked about.
type scopedSource struct {
	*workloadtest.Source
	own, fed *spiffebundle.Bundle
	fedSel   model.Selector

	mu    sync.Mutex
	asked [][]model.Selector
}

var _ workload.CallerBundler = (*scopedSource)(nil)

func (s *scopedSource) BundlesFor(sels []model.Selector) []*spiffebundle.Bundle {
	s.mu.Lock()
	s.asked = append(s.asked, slices.Clone(sels))
	s.mu.Unlock()
	if slices.Contains(sels, s.fedSel) {
		return []*spiffebundle.Bundle{s.own, s.fed}
	}
	return []*spiffebundle.Bundle{s.own}
}

// TestCallerBundler: with a Source that scopes bundles by caller, the
// Workload API asks it with the caller's attested selectors and serves
// only what it returns — in federated_bundles, FetchX509Bundles,
// FetchJWTBundles and ValidateJWTSVID — although Bundles() holds the
// partner bundle too.
func TestCallerBundler(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fedSel  model.Selector
		partner bool
	}{
		{"caller federates", mine, true},
		{"caller does not federate", theirs, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var src *scopedSource
			e := start(t, func(cfg *workload.Config) {
				base := cfg.Source.(*workloadtest.Source)
				src = &scopedSource{Source: base, fedSel: tc.fedSel}
				cfg.Source = src
			})
			src.own, src.fed = e.ca.Bundle(), e.fedCA.Bundle()
			e.src.SetEntries(e.entry(t, webID, "", mine))
			ctx := testCtx(t)

			x509ctx, err := e.client.FetchX509Context(ctx)
			if err != nil {
				t.Fatalf("FetchX509Context() = %v", err)
			}
			if !x509ctx.Bundles.Has(td) || x509ctx.Bundles.Has(fedTD) != tc.partner {
				t.Errorf("FetchX509Context() bundles: own %v, %s %v; want true, %v", x509ctx.Bundles.Has(td), fedTD, x509ctx.Bundles.Has(fedTD), tc.partner)
			}
			xb, err := e.client.FetchX509Bundles(ctx)
			if err != nil {
				t.Fatalf("FetchX509Bundles() = %v", err)
			}
			if !xb.Has(td) || xb.Has(fedTD) != tc.partner {
				t.Errorf("FetchX509Bundles(): own %v, %s %v; want true, %v", xb.Has(td), fedTD, xb.Has(fedTD), tc.partner)
			}
			jb, err := e.client.FetchJWTBundles(ctx)
			if err != nil {
				t.Fatalf("FetchJWTBundles() = %v", err)
			}
			if !jb.Has(td) || jb.Has(fedTD) != tc.partner {
				t.Errorf("FetchJWTBundles(): own %v, %s %v; want true, %v", jb.Has(td), fedTD, jb.Has(fedTD), tc.partner)
			}

			// A JWT-SVID of the partner trust domain.
			partner := workloadtest.NewSource()
			partnerID := spiffeid.RequireFromPath(fedTD, "/client")
			partner.SetEntries(workloadtest.Entry{Selectors: []model.Selector{mine}, SVID: workload.X509SVID{ID: partnerID}})
			if err := partner.SetJWTSigner(e.fedCA.JWTKeyID, e.fedCA.JWTKey); err != nil {
				t.Fatal(err)
			}
			toks, err := partner.FetchJWTSVIDs(ctx, []model.Selector{mine}, spiffeid.ID{}, []string{"db"})
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.client.ValidateJWTSVID(ctx, toks[0].Token, "db")
			if tc.partner {
				if err != nil || got.ID != partnerID {
					t.Errorf("ValidateJWTSVID(partner token) = %v, %v; want %s", got, err, partnerID)
				}
			} else {
				wantCode(t, "ValidateJWTSVID(partner token, not federated)", err, codes.InvalidArgument)
			}

			src.mu.Lock()
			defer src.mu.Unlock()
			if len(src.asked) == 0 {
				t.Fatal("BundlesFor was never called")
			}
			for _, sels := range src.asked {
				if !slices.Contains(sels, mine) {
					t.Errorf("BundlesFor(%v): the caller's attested selectors lack %v", sels, mine)
				}
			}
		})
	}
}
