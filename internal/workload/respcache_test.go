//go:build linux

package workload_test

import (
	"bytes"
	"testing"

	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/protobuf/proto"

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

// TestEncodedResponsesOnTheWire checks that what a client receives from the
// pre-encoded stream responses is exactly the response the Workload API
// defines for the Source's data, with and without compression (gRPC
// compresses the encoded bytes like any message).
func TestEncodedResponsesOnTheWire(t *testing.T) {
	e := start(t)
	web, db := e.entry(t, webID, "internal", mine), e.entry(t, dbID, "", mine)
	e.src.SetEntries(web, db)
	want := &workloadpb.X509SVIDResponse{
		Svids: []*workloadpb.X509SVID{
			{SpiffeId: webID.String(), X509Svid: web.SVID.ChainDER, X509SvidKey: web.SVID.KeyDER, Bundle: e.ca.Cert.Raw, Hint: "internal"},
			{SpiffeId: dbID.String(), X509Svid: db.SVID.ChainDER, X509SvidKey: db.SVID.KeyDER, Bundle: e.ca.Cert.Raw},
		},
		FederatedBundles: map[string][]byte{fedTD.IDString(): e.fedCA.Cert.Raw},
	}
	wantBundles := &workloadpb.X509BundlesResponse{Bundles: map[string][]byte{
		td.IDString(): e.ca.Cert.Raw, fedTD.IDString(): e.fedCA.Cert.Raw,
	}}
	ctx := withHeader(testCtx(t))
	for _, tc := range []struct {
		name string
		opts []grpc.CallOption
	}{
		{"plain", nil},
		{"gzip", []grpc.CallOption{grpc.UseCompressor(gzip.Name)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := e.raw(t)
			for i := range 2 { // the second answer comes from the cache
				stream, err := raw.FetchX509SVID(ctx, &workloadpb.X509SVIDRequest{}, tc.opts...)
				if err != nil {
					t.Fatal(err)
				}
				got, err := stream.Recv()
				if err != nil {
					t.Fatalf("FetchX509SVID %d: %v", i, err)
				}
				if !proto.Equal(got, want) {
					t.Errorf("FetchX509SVID %d = %v, want %v", i, got, want)
				}
				bs, err := raw.FetchX509Bundles(ctx, &workloadpb.X509BundlesRequest{}, tc.opts...)
				if err != nil {
					t.Fatal(err)
				}
				gotBundles, err := bs.Recv()
				if err != nil {
					t.Fatalf("FetchX509Bundles %d: %v", i, err)
				}
				if !proto.Equal(gotBundles, wantBundles) {
					t.Errorf("FetchX509Bundles %d = %v, want %v", i, gotBundles, wantBundles)
				}
			}
		})
	}
}
