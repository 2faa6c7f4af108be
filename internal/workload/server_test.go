//go:build linux

package workload_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workload"
	"github.com/signet-id/signet/internal/workload/workloadtest"
	"github.com/signet-id/signet/internal/workloadattest"
	"github.com/signet-id/signet/internal/workloadattest/unix"
)

var (
	td    = spiffeid.RequireTrustDomainFromString("example.org")
	fedTD = spiffeid.RequireTrustDomainFromString("partner.test")
	webID = spiffeid.RequireFromPath(td, "/web")
	dbID  = spiffeid.RequireFromPath(td, "/db")
)

// mine is a selector the unix attestor gives this test process; theirs is
// one it does not.
var (
	mine   = model.Selector{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}
	theirs = model.Selector{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid()+1)}
)

// env is a Workload API server on a temporary unix socket, attesting callers
// with the real unix attestor, and a go-spiffe client for it.
type env struct {
	src    *workloadtest.Source
	ca     *workloadtest.CA
	fedCA  *workloadtest.CA
	path   string
	client *workloadapi.Client
	srv    *workload.Server
	reg    *prometheus.Registry
	logs   *syncBuffer  // everything the server logged, at debug level
	stop   func() error // stops the server, returns Serve's error
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func start(tb testing.TB, opts ...func(*workload.Config)) *env {
	tb.Helper()
	e := &env{
		src:   workloadtest.NewSource(),
		ca:    workloadtest.NewCA(tb, td),
		fedCA: workloadtest.NewCA(tb, fedTD),
		reg:   prometheus.NewRegistry(),
		logs:  new(syncBuffer),
	}
	e.src.SetBundles(e.ca.Bundle(), e.fedCA.Bundle())
	if err := e.src.SetJWTSigner(e.ca.JWTKeyID, e.ca.JWTKey); err != nil {
		tb.Fatal(err)
	}
	e.src.SetReady(true)

	att, err := unix.New(unix.DefaultConfig(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	var w io.Writer = e.logs
	if t, ok := tb.(*testing.T); ok && testing.Verbose() {
		w = io.MultiWriter(e.logs, t.Output())
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, ok := tb.(*testing.B); ok {
		log = nil
	}
	cfg := workload.Config{
		Source:    e.src,
		Attestors: []workloadattest.Attestor{att},
		Logger:    log,
		Metrics:   e.reg,
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := workload.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	e.srv = srv
	e.path = filepath.Join(tb.TempDir(), "agent", "public", "api.sock")
	l, err := workload.Listen(e.path)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	var stopErr error
	stopped := false
	e.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-done
		}
		return stopErr
	}
	tb.Cleanup(func() {
		if err := e.stop(); err != nil {
			tb.Errorf("Serve() = %v, want nil", err)
		}
	})
	e.client, err = workloadapi.New(context.Background(), workloadapi.WithAddr("unix://"+e.path))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.client.Close() })
	return e
}

// entry returns an entry for id matching sel, with a fresh SVID.
func (e *env) entry(tb testing.TB, id spiffeid.ID, hint string, sel model.Selector) workloadtest.Entry {
	tb.Helper()
	svid := e.ca.X509SVID(tb, id)
	svid.Hint = hint
	return workloadtest.Entry{Selectors: []model.Selector{sel}, SVID: svid}
}

// raw returns the generated client stub on a plain gRPC connection, for
// calls the go-spiffe client cannot make (missing header, raw responses).
func (e *env) raw(tb testing.TB) workloadpb.SpiffeWorkloadAPIClient {
	tb.Helper()
	cc, err := grpc.NewClient("unix://"+e.path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.Close() })
	return workloadpb.NewSpiffeWorkloadAPIClient(cc)
}

func withHeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: code = %v (%v), want %v", what, got, err, want)
	}
}

func TestFetchX509SVID(t *testing.T) {
	e := start(t)
	e.src.SetEntries(e.entry(t, webID, "internal", mine), e.entry(t, dbID, "", theirs))
	ctx := testCtx(t)

	x509ctx, err := e.client.FetchX509Context(ctx)
	if err != nil {
		t.Fatalf("FetchX509Context() = %v", err)
	}
	if len(x509ctx.SVIDs) != 1 || x509ctx.SVIDs[0].ID != webID || x509ctx.SVIDs[0].Hint != "internal" {
		t.Fatalf("FetchX509Context().SVIDs = %v, want just %s with hint internal", x509ctx.SVIDs, webID)
	}
	svid := x509ctx.SVIDs[0]
	id, _, err := x509svid.Verify(svid.Certificates, x509ctx.Bundles)
	if err != nil || id != webID {
		t.Errorf("x509svid.Verify(fetched SVID, fetched bundles) = %v, %v; want %s", id, err, webID)
	}
	if !svid.PrivateKey.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(svid.Certificates[0].PublicKey) {
		t.Error("fetched private key does not match the certificate")
	}
	raw, err := svid.PrivateKey.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{hex.EncodeToString(raw), base64.StdEncoding.EncodeToString(pkcs8), new(big.Int).SetBytes(raw).String()} {
		if strings.Contains(e.logs.String(), secret) {
			t.Errorf("the SVID private key appears in the logs")
		}
	}
	for _, want := range []spiffeid.TrustDomain{td, fedTD} {
		if !x509ctx.Bundles.Has(want) {
			t.Errorf("FetchX509Context().Bundles has no bundle for %s", want)
		}
	}

	def, err := e.client.FetchX509SVID(ctx)
	if err != nil || def.ID != webID {
		t.Errorf("FetchX509SVID() = %v, %v; want %s", def, err, webID)
	}

	bundles, err := e.client.FetchX509Bundles(ctx)
	if err != nil {
		t.Fatalf("FetchX509Bundles() = %v", err)
	}
	if b, err := bundles.GetX509BundleForTrustDomain(fedTD); err != nil || !b.HasX509Authority(e.fedCA.Cert) {
		t.Errorf("FetchX509Bundles() for %s = %v, %v; want the partner CA", fedTD, b, err)
	}
}

func TestFetchX509SVIDWire(t *testing.T) {
	e := start(t)
	e.src.SetEntries(
		e.entry(t, webID, "internal", mine),
		e.entry(t, spiffeid.RequireFromPath(td, "/web-2"), "internal", mine), // same hint: dropped
		e.entry(t, dbID, "", mine),
		e.entry(t, spiffeid.RequireFromPath(td, "/db-2"), "", mine), // empty hints never clash
	)
	stream, err := e.raw(t).FetchX509SVID(withHeader(testCtx(t)), &workloadpb.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("Recv() = %v", err)
	}
	var got []string
	for _, s := range resp.Svids {
		got = append(got, s.SpiffeId+"#"+s.Hint)
		if len(s.X509Svid) == 0 || len(s.X509SvidKey) == 0 || len(s.Bundle) == 0 {
			t.Errorf("SVID %s has an empty mandatory field", s.SpiffeId)
		}
		if !slices.Equal(s.Bundle, e.ca.Cert.Raw) {
			t.Errorf("SVID %s bundle is not the trust domain's CA", s.SpiffeId)
		}
	}
	want := []string{webID.String() + "#internal", dbID.String() + "#", "spiffe://example.org/db-2#"}
	if !slices.Equal(got, want) {
		t.Errorf("svids = %v, want %v", got, want)
	}
	if fed := resp.FederatedBundles[fedTD.IDString()]; !slices.Equal(fed, e.fedCA.Cert.Raw) {
		t.Errorf("federated_bundles[%s] is not the partner CA", fedTD.IDString())
	}
	if _, ok := resp.FederatedBundles[td.IDString()]; ok {
		t.Errorf("federated_bundles includes the own trust domain %s", td)
	}
}

type watcher struct {
	updates chan *workloadapi.X509Context
	errs    chan error
}

func (w watcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w.updates <- c }
func (w watcher) OnX509ContextWatchError(err error) {
	select {
	case w.errs <- err:
	default:
	}
}

func TestWatchX509Context(t *testing.T) {
	e := start(t)
	e.src.SetEntries(e.entry(t, webID, "", mine))
	ctx, cancel := context.WithCancel(testCtx(t))
	w := watcher{updates: make(chan *workloadapi.X509Context, 4), errs: make(chan error, 4)}
	done := make(chan error, 1)
	go func() { done <- e.client.WatchX509Context(ctx, w) }()
	defer func() { cancel(); <-done }()

	next := func() *workloadapi.X509Context {
		t.Helper()
		select {
		case c := <-w.updates:
			return c
		case err := <-w.errs:
			t.Fatalf("watch error: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no update within 5s")
		}
		return nil
	}
	if c := next(); len(c.SVIDs) != 1 || c.SVIDs[0].ID != webID {
		t.Fatalf("first update = %v, want %s", c.SVIDs, webID)
	}
	rotated := e.entry(t, webID, "", mine)
	e.src.SetEntries(rotated, e.entry(t, dbID, "", mine))
	c := next()
	if len(c.SVIDs) != 2 || c.SVIDs[1].ID != dbID {
		t.Fatalf("second update = %v, want %s and %s", c.SVIDs, webID, dbID)
	}
	if !bytes.Equal(c.SVIDs[0].Certificates[0].Raw, rotated.SVID.ChainDER) {
		t.Error("second update does not carry the rotated SVID")
	}
}

// TestStreamSendsOnlyChanges checks that a source change that leaves the
// caller's response unchanged sends nothing.
func TestStreamSendsOnlyChanges(t *testing.T) {
	e := start(t)
	web := e.entry(t, webID, "", mine)
	e.src.SetEntries(web)
	stream, err := e.raw(t).FetchX509SVID(withHeader(testCtx(t)), &workloadpb.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	e.src.SetEntries(web, e.entry(t, dbID, "", theirs)) // not the caller's
	e.src.SetEntries(web, e.entry(t, dbID, "", mine))
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Svids) != 2 {
		t.Errorf("next response has %d SVIDs, want 2 (the unrelated change must not be sent)", len(resp.Svids))
	}
}

func TestActivity(t *testing.T) {
	e := start(t)
	web := e.entry(t, webID, "", mine)
	e.src.SetEntries(web)
	want := e.srv.Activity()
	check := func(what string, more uint64) {
		t.Helper()
		want += more
		if got := e.srv.Activity(); got != want {
			t.Errorf("after %s: Activity() = %d, want %d", what, got, want)
		}
	}
	cc, err := grpc.NewClient("unix://"+e.path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := healthpb.NewHealthClient(cc).Check(testCtx(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	check("a health check", 0)
	stream, err := e.raw(t).FetchX509SVID(withHeader(testCtx(t)), &workloadpb.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	check("a stream and its first response", 2)
	e.src.SetEntries(web, e.entry(t, dbID, "", mine))
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	check("a rotation sent on the stream", 1)
	if _, err := e.raw(t).FetchJWTSVID(withHeader(testCtx(t)), &workloadpb.JWTSVIDRequest{Audience: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	check("a unary call", 1)
	if _, err := e.raw(t).FetchJWTSVID(testCtx(t), &workloadpb.JWTSVIDRequest{Audience: []string{"a"}}); err == nil {
		t.Fatal("a call without the security header succeeded")
	}
	check("a refused call", 1)
}

func TestStreamEndsWhenIdentityRemoved(t *testing.T) {
	e := start(t)
	e.src.SetEntries(e.entry(t, webID, "", mine))
	ctx := withHeader(testCtx(t))
	raw := e.raw(t)
	x509s, err := raw.FetchX509SVID(ctx, &workloadpb.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	jwtb, err := raw.FetchJWTBundles(ctx, &workloadpb.JWTBundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509s.Recv(); err != nil {
		t.Fatal(err)
	}
	if _, err := jwtb.Recv(); err != nil {
		t.Fatal(err)
	}
	e.src.SetEntries(e.entry(t, webID, "", theirs))
	_, err = x509s.Recv()
	wantCode(t, "FetchX509SVID after the identity was removed", err, codes.PermissionDenied)
	_, err = jwtb.Recv()
	wantCode(t, "FetchJWTBundles after the identity was removed", err, codes.PermissionDenied)
}

func TestSecurityHeader(t *testing.T) {
	e := start(t)
	e.src.SetEntries(e.entry(t, webID, "", mine))
	raw := e.raw(t)
	for name, ctx := range map[string]context.Context{
		"missing":     testCtx(t),
		"wrong case":  metadata.AppendToOutgoingContext(testCtx(t), "workload.spiffe.io", "True"),
		"wrong value": metadata.AppendToOutgoingContext(testCtx(t), "workload.spiffe.io", "yes"),
		"given twice": metadata.AppendToOutgoingContext(testCtx(t), "workload.spiffe.io", "true", "workload.spiffe.io", "true"),
	} {
		t.Run(name, func(t *testing.T) {
			s1, err := raw.FetchX509SVID(ctx, &workloadpb.X509SVIDRequest{})
			if err == nil {
				_, err = s1.Recv()
			}
			wantCode(t, "FetchX509SVID", err, codes.InvalidArgument)
			s2, err := raw.FetchX509Bundles(ctx, &workloadpb.X509BundlesRequest{})
			if err == nil {
				_, err = s2.Recv()
			}
			wantCode(t, "FetchX509Bundles", err, codes.InvalidArgument)
			s3, err := raw.FetchJWTBundles(ctx, &workloadpb.JWTBundlesRequest{})
			if err == nil {
				_, err = s3.Recv()
			}
			wantCode(t, "FetchJWTBundles", err, codes.InvalidArgument)
			_, err = raw.FetchJWTSVID(ctx, &workloadpb.JWTSVIDRequest{Audience: []string{"a"}})
			wantCode(t, "FetchJWTSVID", err, codes.InvalidArgument)
			_, err = raw.ValidateJWTSVID(ctx, &workloadpb.ValidateJWTSVIDRequest{Audience: "a", Svid: "x"})
			wantCode(t, "ValidateJWTSVID", err, codes.InvalidArgument)
		})
	}
}

func TestNoIdentity(t *testing.T) {
	e := start(t)
	e.src.SetEntries(e.entry(t, webID, "", theirs))
	ctx := testCtx(t)
	_, err := e.client.FetchX509SVID(ctx)
	wantCode(t, "FetchX509SVID", err, codes.PermissionDenied)
	_, err = e.client.FetchX509Bundles(ctx)
	wantCode(t, "FetchX509Bundles", err, codes.PermissionDenied)
	_, err = e.client.FetchJWTBundles(ctx)
	wantCode(t, "FetchJWTBundles", err, codes.PermissionDenied)
	_, err = e.client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "svc"})
	wantCode(t, "FetchJWTSVID", err, codes.PermissionDenied)

	// Validation needs no identity.
	svids, err := e.src.FetchJWTSVIDs(ctx, []model.Selector{theirs}, webID, []string{"svc"})
	if err != nil || len(svids) != 1 {
		t.Fatalf("minting a token to validate: %v, %v", svids, err)
	}
	got, err := e.client.ValidateJWTSVID(ctx, svids[0].Token, "svc")
	if err != nil || got.ID != webID {
		t.Errorf("ValidateJWTSVID() without an identity = %v, %v; want %s", got, err, webID)
	}
}

func TestJWTRoundTrip(t *testing.T) {
	e := start(t)
	e.src.SetEntries(e.entry(t, webID, "", mine), e.entry(t, dbID, "", mine))
	ctx := testCtx(t)

	svid, err := e.client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "reports", ExtraAudiences: []string{"billing"}})
	if err != nil {
		t.Fatalf("FetchJWTSVID() = %v", err)
	}
	if svid.ID != webID || !slices.Equal(svid.Audience, []string{"reports", "billing"}) {
		t.Errorf("FetchJWTSVID() = %s %v, want %s [reports billing]", svid.ID, svid.Audience, webID)
	}
	all, err := e.client.FetchJWTSVIDs(ctx, jwtsvid.Params{Audience: "reports"})
	if err != nil || len(all) != 2 {
		t.Errorf("FetchJWTSVIDs() = %d SVIDs, %v; want 2", len(all), err)
	}
	only, err := e.client.FetchJWTSVIDs(ctx, jwtsvid.Params{Audience: "reports", Subject: dbID})
	if err != nil || len(only) != 1 || only[0].ID != dbID {
		t.Errorf("FetchJWTSVIDs(subject %s) = %v, %v; want just it", dbID, only, err)
	}

	validated, err := e.client.ValidateJWTSVID(ctx, svid.Marshal(), "billing")
	if err != nil || validated.ID != webID {
		t.Fatalf("ValidateJWTSVID() = %v, %v; want %s", validated, err, webID)
	}
	resp, err := e.raw(t).ValidateJWTSVID(withHeader(ctx), &workloadpb.ValidateJWTSVIDRequest{Audience: "reports", Svid: svid.Marshal()})
	if err != nil {
		t.Fatal(err)
	}
	claims := resp.Claims.AsMap()
	if resp.SpiffeId != webID.String() || claims["sub"] != webID.String() || claims["exp"] == nil {
		t.Errorf("ValidateJWTSVID() = %s, claims %v; want %s with sub and exp", resp.SpiffeId, claims, webID)
	}
	if aud, _ := claims["aud"].([]any); len(aud) != 2 {
		t.Errorf("claims aud = %v, want both audiences", claims["aud"])
	}

	_, err = e.client.ValidateJWTSVID(ctx, svid.Marshal(), "someone-else")
	wantCode(t, "ValidateJWTSVID(wrong audience)", err, codes.InvalidArgument)

	// Tokens are secrets: the server logs IDs and expiry, never a token or
	// any part of its signature.
	logs := e.logs.String()
	if !strings.Contains(logs, webID.String()) {
		t.Errorf("logs do not mention %s; is debug logging on?", webID)
	}
	for _, tok := range append(all, svid) {
		parts := strings.Split(tok.Marshal(), ".")
		if strings.Contains(logs, parts[1]) || strings.Contains(logs, parts[2]) {
			t.Errorf("a JWT-SVID for %s appears in the logs:\n%s", tok.ID, logs)
		}
	}

	bundles, err := e.client.FetchJWTBundles(ctx)
	if err != nil {
		t.Fatalf("FetchJWTBundles() = %v", err)
	}
	if _, err := jwtsvid.ParseAndValidate(svid.Marshal(), bundles, []string{"reports"}); err != nil {
		t.Errorf("validating the JWT-SVID against the fetched JWT bundles: %v", err)
	}
}

func TestFetchJWTBundlesWire(t *testing.T) {
	e := start(t)
	e.src.SetEntries(e.entry(t, webID, "", mine))
	fedOnlyX509 := e.fedCA.Bundle()
	fedOnlyX509.SetJWTAuthorities(nil)
	e.src.SetBundles(e.ca.Bundle(), fedOnlyX509)
	stream, err := e.raw(t).FetchJWTBundles(withHeader(testCtx(t)), &workloadpb.JWTBundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.Bundles[fedTD.IDString()]; ok {
		t.Errorf("bundles include %s, which has no JWT keys", fedTD)
	}
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(resp.Bundles[td.IDString()], &jwks); err != nil {
		t.Fatalf("bundle for %s is not JSON: %v", td, err)
	}
	if len(jwks.Keys) != 1 || jwks.Keys[0]["kid"] != e.ca.JWTKeyID || jwks.Keys[0]["use"] != "jwt-svid" || jwks.Keys[0]["x5c"] != nil {
		t.Errorf("JWKS = %v, want one key with kid %s, use jwt-svid, no x5c", jwks.Keys, e.ca.JWTKeyID)
	}
	if _, err := jwtbundle.Parse(td, resp.Bundles[td.IDString()]); err != nil {
		t.Errorf("jwtbundle.Parse() = %v", err)
	}
}

func TestFetchJWTSVIDArguments(t *testing.T) {
	e := start(t)
	e.src.SetEntries(e.entry(t, webID, "", mine), e.entry(t, dbID, "", theirs))
	raw, ctx := e.raw(t), withHeader(testCtx(t))
	tests := []struct {
		name string
		req  *workloadpb.JWTSVIDRequest
		want codes.Code
	}{
		{"no audience", &workloadpb.JWTSVIDRequest{}, codes.InvalidArgument},
		{"empty audience", &workloadpb.JWTSVIDRequest{Audience: []string{""}}, codes.InvalidArgument},
		{"invalid spiffe_id", &workloadpb.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: "https://example.org/web"}, codes.InvalidArgument},
		{"spiffe_id not the caller's", &workloadpb.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: dbID.String()}, codes.PermissionDenied},
		{"spiffe_id the caller's", &workloadpb.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: webID.String()}, codes.OK},
		{"any identity", &workloadpb.JWTSVIDRequest{Audience: []string{"a"}}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := raw.FetchJWTSVID(ctx, tt.req)
			wantCode(t, "FetchJWTSVID", err, tt.want)
			if err == nil && (len(resp.Svids) != 1 || resp.Svids[0].SpiffeId != webID.String()) {
				t.Errorf("FetchJWTSVID() = %v, want one SVID for %s", resp.Svids, webID)
			}
		})
	}
}

func TestValidateJWTSVIDArguments(t *testing.T) {
	e := start(t)
	raw, ctx := e.raw(t), withHeader(testCtx(t))
	other := workloadtest.NewCA(t, td) // same trust domain, key not in the bundle
	forged := workloadtest.NewSource()
	forged.SetEntries(e.entry(t, webID, "", mine))
	if err := forged.SetJWTSigner(other.JWTKeyID, other.JWTKey); err != nil {
		t.Fatal(err)
	}
	forgedSVIDs, err := forged.FetchJWTSVIDs(ctx, []model.Selector{mine}, spiffeid.ID{}, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	expired := workloadtest.NewSource()
	expired.SetEntries(e.entry(t, webID, "", mine))
	expired.SetClock(func() time.Time { return time.Now().Add(-time.Hour) })
	if err := expired.SetJWTSigner(e.ca.JWTKeyID, e.ca.JWTKey); err != nil {
		t.Fatal(err)
	}
	expiredSVIDs, err := expired.FetchJWTSVIDs(ctx, []model.Selector{mine}, spiffeid.ID{}, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  *workloadpb.ValidateJWTSVIDRequest
	}{
		{"no audience", &workloadpb.ValidateJWTSVIDRequest{Svid: forgedSVIDs[0].Token}},
		{"no svid", &workloadpb.ValidateJWTSVIDRequest{Audience: "a"}},
		{"garbage", &workloadpb.ValidateJWTSVIDRequest{Audience: "a", Svid: "not.a.jwt"}},
		{"unknown key", &workloadpb.ValidateJWTSVIDRequest{Audience: "a", Svid: forgedSVIDs[0].Token}},
		{"expired", &workloadpb.ValidateJWTSVIDRequest{Audience: "a", Svid: expiredSVIDs[0].Token}},
		{"too long", &workloadpb.ValidateJWTSVIDRequest{Audience: "a", Svid: string(make([]byte, 70000))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := raw.ValidateJWTSVID(ctx, tt.req)
			wantCode(t, "ValidateJWTSVID", err, codes.InvalidArgument)
		})
	}
}

// shortWait makes calls that cannot be answered yet give up quickly.
func shortWait(c *workload.Config) { c.ReadyWait = 200 * time.Millisecond }

// TestNotReady: calls that arrive before the source has synced, and are
// not answered within the ready wait, fail with Unavailable.
func TestNotReady(t *testing.T) {
	e := start(t, shortWait)
	e.src.SetEntries(e.entry(t, webID, "", mine))
	e.src.SetReady(false)
	ctx := testCtx(t)
	_, err := e.client.FetchX509SVID(ctx)
	wantCode(t, "FetchX509SVID", err, codes.Unavailable)
	_, err = e.client.FetchX509Bundles(ctx)
	wantCode(t, "FetchX509Bundles", err, codes.Unavailable)
	_, err = e.client.FetchJWTBundles(ctx)
	wantCode(t, "FetchJWTBundles", err, codes.Unavailable)
	_, err = e.client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"})
	wantCode(t, "FetchJWTSVID", err, codes.Unavailable)
	_, err = e.client.ValidateJWTSVID(ctx, "a.b.c", "a")
	wantCode(t, "ValidateJWTSVID", err, codes.Unavailable)
}

func TestSourceErrors(t *testing.T) {
	e := start(t, shortWait)
	ctx := testCtx(t)
	e.src.SetEntries(e.entry(t, webID, "", mine))

	e.src.SetJWTError(errkind.New(errkind.Unavailable, "server unreachable"))
	_, err := e.client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"})
	wantCode(t, "FetchJWTSVID(source unavailable)", err, codes.Unavailable)

	e.src.SetJWTError(errors.New("disk on fire"))
	_, err = e.client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"})
	wantCode(t, "FetchJWTSVID(source failure)", err, codes.Internal)
	if st, _ := status.FromError(err); !strings.HasPrefix(st.Message(), "internal error (id=") || strings.Contains(st.Message(), "disk") {
		t.Errorf("internal error message = %q, want an opaque message with an id", st.Message())
	}

	// An SVID the server cannot serve (no chain, no key) is left out; with
	// nothing left, the caller is told to retry.
	e.src.SetEntries(workloadtest.Entry{Selectors: []model.Selector{mine}, SVID: workload.X509SVID{ID: webID}})
	_, err = e.client.FetchX509SVID(ctx)
	wantCode(t, "FetchX509SVID(incomplete SVID)", err, codes.Unavailable)

	// No bundle for the SVID's trust domain: same.
	e.src.SetEntries(e.entry(t, webID, "", mine))
	e.src.SetBundles(e.fedCA.Bundle())
	_, err = e.client.FetchX509SVID(ctx)
	wantCode(t, "FetchX509SVID(no bundle)", err, codes.Unavailable)
}

// TestCallsWaitForTheirSVIDs: a client that connects before the source
// has synced, and one whose SVID cannot be served yet (not signed), get
// it without an error as soon as it exists, not one client back-off later.
func TestCallsWaitForTheirSVIDs(t *testing.T) {
	t.Run("before the first sync", func(t *testing.T) {
		e := start(t)
		e.src.SetReady(false)
		got := make(chan error, 3)
		go func() {
			x, err := e.client.FetchX509Context(testCtx(t))
			if err == nil && (len(x.SVIDs) != 1 || x.SVIDs[0].ID != webID) {
				err = fmt.Errorf("got %d SVIDs", len(x.SVIDs))
			}
			got <- err
		}()
		go func() {
			_, err := e.client.FetchJWTSVID(testCtx(t), jwtsvid.Params{Audience: "a"})
			got <- err
		}()
		go func() {
			_, err := e.client.FetchX509Bundles(testCtx(t))
			got <- err
		}()
		time.Sleep(300 * time.Millisecond) // the calls are waiting
		e.src.SetEntries(e.entry(t, webID, "", mine))
		e.src.SetReady(true)
		for range 3 {
			if err := <-got; err != nil {
				t.Errorf("call made before the first sync: %v, want the SVID", err)
			}
		}
	})
	t.Run("while the SVID is being signed", func(t *testing.T) {
		e := start(t)
		e.src.SetEntries(workloadtest.Entry{Selectors: []model.Selector{mine}, SVID: workload.X509SVID{ID: webID}}) // no chain or key yet
		got := make(chan error, 1)
		go func() {
			x, err := e.client.FetchX509Context(testCtx(t))
			if err == nil && (len(x.SVIDs) != 1 || x.SVIDs[0].ID != webID) {
				err = fmt.Errorf("got %d SVIDs", len(x.SVIDs))
			}
			got <- err
		}()
		time.Sleep(300 * time.Millisecond)
		e.src.SetEntries(e.entry(t, webID, "", mine))
		if err := <-got; err != nil {
			t.Errorf("call made while the SVID was being signed: %v, want the SVID", err)
		}
	})
}

func TestServeStopsStreams(t *testing.T) {
	e := start(t)
	e.src.SetEntries(e.entry(t, webID, "", mine))
	stream, err := e.raw(t).FetchX509SVID(withHeader(testCtx(t)), &workloadpb.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := e.stop(); err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("Serve took %v to stop with an open stream, want well under the grace period", d)
	}
	_, err = stream.Recv()
	wantCode(t, "stream after stop", err, codes.Unavailable)
	if _, err := os.Stat(e.path); !os.IsNotExist(err) {
		t.Errorf("socket file after stop: %v, want it removed", err)
	}
}

func TestMetrics(t *testing.T) {
	e := start(t)
	e.src.SetEntries(e.entry(t, webID, "", mine))
	ctx := testCtx(t)
	if _, err := e.client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"}); err != nil {
		t.Fatal(err)
	}
	_, _ = e.client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a", Subject: dbID})
	stream, err := e.raw(t).FetchX509SVID(withHeader(ctx), &workloadpb.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, e.reg, "signet_workload_api_rpcs_total", map[string]string{"method": "FetchJWTSVID", "code": "OK"}); got != 1 {
		t.Errorf("rpcs_total{FetchJWTSVID,OK} = %v, want 1", got)
	}
	if got := metricValue(t, e.reg, "signet_workload_api_rpcs_total", map[string]string{"method": "FetchJWTSVID", "code": "PermissionDenied"}); got != 1 {
		t.Errorf("rpcs_total{FetchJWTSVID,PermissionDenied} = %v, want 1", got)
	}
	if got := metricValue(t, e.reg, "signet_workload_api_active_streams", map[string]string{"method": "FetchX509SVID"}); got != 1 {
		t.Errorf("active_streams{FetchX509SVID} = %v, want 1", got)
	}

	// A stream the client cancels, as go-spiffe's FetchX509SVID does after
	// the first response, counts as Canceled and leaves the gauge.
	if _, err := e.client.FetchX509SVID(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		return metricValue(t, e.reg, "signet_workload_api_rpcs_total", map[string]string{"method": "FetchX509SVID", "code": "Canceled"}) == 1
	})
	if got := metricValue(t, e.reg, "signet_workload_api_active_streams", map[string]string{"method": "FetchX509SVID"}); got != 1 {
		t.Errorf("active_streams{FetchX509SVID} after a canceled stream = %v, want 1 (the raw stream)", got)
	}
	// Only the codes that occurred have a series.
	var series []string
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "signet_workload_api_rpcs_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var method, code string
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "method":
					method = lp.GetValue()
				case "code":
					code = lp.GetValue()
				}
			}
			series = append(series, method+"/"+code)
		}
	}
	slices.Sort(series)
	want := []string{"FetchJWTSVID/OK", "FetchJWTSVID/PermissionDenied", "FetchX509SVID/Canceled"}
	if !slices.Equal(series, want) {
		t.Errorf("rpcs_total series = %v, want %v", series, want)
	}
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

func TestNewValidates(t *testing.T) {
	att, err := unix.New(unix.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	tests := []struct {
		name string
		cfg  workload.Config
	}{
		{"no source", workload.Config{Attestors: []workloadattest.Attestor{att}}},
		{"no attestors", workload.Config{Source: workloadtest.NewSource()}},
		{"nil attestor", workload.Config{Source: workloadtest.NewSource(), Attestors: []workloadattest.Attestor{nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := workload.New(tt.cfg); !errkind.Is(err, errkind.InvalidArgument) {
				t.Errorf("New(%s) = %v, want InvalidArgument", tt.name, err)
			}
		})
	}
	cfg := workload.Config{Source: workloadtest.NewSource(), Attestors: []workloadattest.Attestor{att}, Metrics: reg}
	if _, err := workload.New(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := workload.New(cfg); err == nil {
		t.Error("New() registering metrics twice = nil error, want an error")
	}
}

// TestReflection checks that gRPC server reflection (SPIFFE Workload
// Endpoint, 7) lists the Workload API, behind the same security header.
func TestReflection(t *testing.T) {
	e := start(t)
	cc, err := grpc.NewClient("unix://"+e.path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	list := func(ctx context.Context) ([]string, error) {
		stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		req := &reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}
		if err := stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
			return nil, err // on EOF, Recv reports the status
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		return names, nil
	}
	_, err = list(testCtx(t))
	wantCode(t, "reflection without the security header", err, codes.InvalidArgument)
	names, err := list(withHeader(testCtx(t)))
	if err != nil || !slices.Contains(names, "SpiffeWorkloadAPI") {
		t.Errorf("reflection services = %v, %v; want SpiffeWorkloadAPI among them", names, err)
	}
}
