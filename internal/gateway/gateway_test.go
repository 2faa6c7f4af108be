package gateway_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/signet-id/signet/internal/gateway"
	"github.com/signet-id/signet/internal/testenv"
)

// TestIngressRotationKeepsConnections runs the gateway in-process against a
// real server and agent with a 6s SVID: a connection opened before the
// gateway's SVID rotates keeps working after it, and a new connection gets
// the new certificate.
func TestIngressRotationKeepsConnections(t *testing.T) {
	env := testenv.New(t)
	const id = "spiffe://example.org/gw"
	src := agentSource(t, env, id, 6)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get(gateway.HeaderClientID))
	})}
	go func() { _ = backend.Serve(bl) }()
	defer backend.Close()

	cfg, err := gateway.ParseConfig([]byte("ingress: [{listen: '127.0.0.1:0', forward: '" + bl.Addr().String() +
		"', protocol: http, allow: ['subject.id == \"" + id + "\"']}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, src, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gctx, gcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	defer func() {
		gcancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	testenv.WaitFor(t, 10*time.Second, "the route listening", func() error {
		if g.Addr("ingress[0]") == nil {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	addr := g.Addr("ingress[0]").String()
	dial := func() *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", addr, tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(id))))
		if err != nil {
			t.Fatalf("dial the gateway: %v", err)
		}
		return c
	}
	get := func(c *tls.Conn) string {
		t.Helper()
		tr := &http.Transport{DialTLSContext: func(context.Context, string, string) (net.Conn, error) { return c, nil }}
		resp, err := (&http.Client{Transport: tr}).Get("https://gw/")
		if err != nil {
			t.Fatalf("GET through the gateway: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	old := dial()
	defer old.Close()
	oldSerial := old.ConnectionState().PeerCertificates[0].SerialNumber
	tr := &http.Transport{DialTLSContext: func(context.Context, string, string) (net.Conn, error) { return old, nil }, MaxConnsPerHost: 1}
	client := &http.Client{Transport: tr}
	roundTrip := func() string {
		t.Helper()
		resp, err := client.Get("https://gw/")
		if err != nil {
			t.Fatalf("GET on the connection opened before rotation: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := roundTrip(); got != id {
		t.Fatalf("backend saw %s = %q, want %q", gateway.HeaderClientID, got, id)
	}
	testenv.WaitFor(t, 30*time.Second, "the gateway's SVID to rotate", func() error {
		c := dial()
		defer c.Close()
		if c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(oldSerial) == 0 {
			return io.ErrNoProgress
		}
		if got := get(c); got != id {
			t.Fatalf("new connection: backend saw %q", got)
		}
		return nil
	})
	if got := roundTrip(); got != id {
		t.Fatalf("after rotation, the old connection's request gave %q", got)
	}

	// No session resumption: every connection's peer SVID and allow rule
	// are checked anew (a resumed session would skip both).
	cache := tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		cfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(id)))
		cfg.ClientSessionCache = cache
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := get(c); got != id {
			t.Fatalf("connection %d: backend saw %q", i, got)
		}
		if c.ConnectionState().DidResume {
			t.Fatalf("connection %d resumed a TLS session: the gateway must verify every peer", i)
		}
		c.Close()
	}
}
