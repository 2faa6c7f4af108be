//go:build linux

package workload_test

import (
	"context"
	"sync/atomic"
	"testing"

	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"

	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workload"
	"github.com/signet-id/signet/internal/workloadattest"
	"github.com/signet-id/signet/internal/workloadattest/unix"
)

// countingAttestor is the real unix attestor, counting its attestations.
type countingAttestor struct {
	*unix.Attestor
	n atomic.Int64
}

func (c *countingAttestor) Attest(ctx context.Context, p workloadattest.Peer) ([]model.Selector, error) {
	c.n.Add(1)
	return c.Attestor.Attest(ctx, p)
}

// TestAttestationReusedPerConnection: calls on one connection reuse its
// attestation; another connection of the same process is attested anew.
func TestAttestationReusedPerConnection(t *testing.T) {
	u, err := unix.New(unix.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	att := &countingAttestor{Attestor: u}
	e := start(t, func(c *workload.Config) { c.Attestors = []workloadattest.Attestor{att} })
	e.src.SetEntries(e.entry(t, webID, "", mine))
	ctx := testCtx(t)
	for i := range 5 {
		if _, err := e.client.FetchX509SVID(ctx); err != nil {
			t.Fatalf("FetchX509SVID %d: %v", i, err)
		}
		if _, err := e.client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"}); err != nil {
			t.Fatalf("FetchJWTSVID %d: %v", i, err)
		}
	}
	if got := att.n.Load(); got != 1 {
		t.Errorf("attestations for 10 calls on one connection = %d, want 1", got)
	}
	other, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+e.path))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.FetchX509SVID(ctx); err != nil {
		t.Fatal(err)
	}
	if got := att.n.Load(); got != 2 {
		t.Errorf("attestations after a call on a second connection = %d, want 2", got)
	}
}

// TestReusedAttestationNotServedAfterExit: a connection passed on by a
// child process that then exits gets nothing more, although its
// attestation is still within its reuse time: the process it was attested
// for is gone (and its PID may be another process's by now).
func TestReusedAttestationNotServedAfterExit(t *testing.T) {
	e := start(t)
	e.src.SetEntries(e.entry(t, webID, "", mine))

	client, exit := childClient(t, e)
	ctx := withHeader(testCtx(t))
	req := &workloadpb.JWTSVIDRequest{Audience: []string{"a"}}
	if _, err := client.FetchJWTSVID(ctx, req); err != nil {
		t.Fatalf("FetchJWTSVID while the child runs: %v", err)
	}
	exit()
	_, err := client.FetchJWTSVID(ctx, req)
	wantCode(t, "FetchJWTSVID after the caller exited", err, codes.PermissionDenied)
	stream, err := client.FetchX509SVID(ctx, &workloadpb.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, "FetchX509SVID after the caller exited", err, codes.PermissionDenied)
}
