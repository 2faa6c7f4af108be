//go:build linux

package workload_test

import (
	"bytes"
	"testing"

	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc/codes"

	"github.com/signet-id/signet/internal/workload/workloadtest"
)

// TestCachedResponsesFollowChanges checks that the responses the server
// caches per selector set are never served once the Source has changed:
// every call here is a new stream, as go-spiffe's one-shot fetches are, so
// each would get the cached response of the call before it if the cache
// missed a change.
func TestCachedResponsesFollowChanges(t *testing.T) {
	e := start(t)
	raw := e.raw(t)
	ctx := withHeader(testCtx(t))

	// fetch opens a stream, takes its first response and closes it.
	fetchX509 := func() (*workloadpb.X509SVIDResponse, error) {
		t.Helper()
		stream, err := raw.FetchX509SVID(ctx, &workloadpb.X509SVIDRequest{})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = stream.CloseSend() }()
		return stream.Recv()
	}
	fetchBundles := func() (*workloadpb.X509BundlesResponse, error) {
		t.Helper()
		stream, err := raw.FetchX509Bundles(ctx, &workloadpb.X509BundlesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = stream.CloseSend() }()
		return stream.Recv()
	}
	mustX509 := func(what string) *workloadpb.X509SVIDResponse {
		t.Helper()
		resp, err := fetchX509()
		if err != nil {
			t.Fatalf("FetchX509SVID %s: %v", what, err)
		}
		if len(resp.Svids) != 1 {
			t.Fatalf("FetchX509SVID %s: %d SVIDs, want 1", what, len(resp.Svids))
		}
		return resp
	}

	first := e.entry(t, webID, "", mine)
	e.src.SetEntries(first)
	before := mustX509("before the rotation")
	// Twice, so that the second answer comes from the cache.
	if again := mustX509("again"); !bytes.Equal(again.Svids[0].X509Svid, before.Svids[0].X509Svid) {
		t.Fatal("FetchX509SVID twice without a change: different SVIDs")
	}

	// Rotation: the same entry with a new SVID.
	rotated := e.entry(t, webID, "", mine)
	e.src.SetEntries(rotated)
	after := mustX509("after the rotation")
	if !bytes.Equal(after.Svids[0].X509Svid, rotated.SVID.ChainDER) {
		t.Error("FetchX509SVID after the rotation: served the SVID from before the rotation")
	}
	if !bytes.Equal(after.Svids[0].X509SvidKey, rotated.SVID.KeyDER) {
		t.Error("FetchX509SVID after the rotation: served the key from before the rotation")
	}

	// Bundle change: the own trust domain gets another CA.
	bundlesBefore, err := fetchBundles()
	if err != nil {
		t.Fatal(err)
	}
	newCA := workloadtest.NewCA(t, td)
	e.src.SetBundles(newCA.Bundle(), e.fedCA.Bundle())
	wantBundle := newCA.Bundle().X509Authorities()[0].Raw
	if got := mustX509("after the bundle change").Svids[0].Bundle; !bytes.Equal(got, wantBundle) {
		t.Error("FetchX509SVID after the bundle change: served the bundle from before the change")
	}
	bundlesAfter, err := fetchBundles()
	if err != nil {
		t.Fatal(err)
	}
	if got := bundlesAfter.Bundles[td.IDString()]; !bytes.Equal(got, wantBundle) {
		t.Error("FetchX509Bundles after the bundle change: served the bundle from before the change")
	}
	if bytes.Equal(bundlesBefore.Bundles[td.IDString()], bundlesAfter.Bundles[td.IDString()]) {
		t.Error("FetchX509Bundles: same bundle before and after the change")
	}

	// Entry removal: the caller's only entry goes away.
	e.src.SetEntries(e.entry(t, dbID, "", theirs))
	_, err = fetchX509()
	wantCode(t, "FetchX509SVID after the entry was removed", err, codes.PermissionDenied)
	_, err = fetchBundles()
	wantCode(t, "FetchX509Bundles after the entry was removed", err, codes.PermissionDenied)
}
