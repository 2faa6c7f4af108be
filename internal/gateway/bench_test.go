package gateway_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/signet-id/signet/internal/gateway"
	"github.com/signet-id/signet/internal/testenv"
)

// BenchmarkIngressHTTP measures one GET (1 KiB response) through an http
// ingress route over parallel keep-alive mTLS connections, gateway and
// client in this process, against a real agent.
func BenchmarkIngressHTTP(b *testing.B) {
	env := testenv.New(b)
	const id = "spiffe://example.org/gw"
	src := agentSource(b, env, id, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(strings.Repeat("x", 1024))
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) })}
	go func() { _ = backend.Serve(bl) }()
	defer backend.Close()
	cfg, err := gateway.ParseConfig([]byte("ingress: [{listen: '127.0.0.1:0', forward: '" + bl.Addr().String() +
		"', protocol: http, allow: ['subject.id == \"" + id + "\"']}]\n"))
	if err != nil {
		b.Fatal(err)
	}
	g, err := gateway.New(cfg, src, gateway.Options{})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testenv.WaitFor(b, 10*time.Second, "the route listening", func() error {
		if g.Addr("ingress[0]") == nil {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	tcfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(id)))
	tr := &http.Transport{TLSClientConfig: tcfg, MaxIdleConnsPerHost: 64, DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: tcfg}
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := "https://" + g.Addr("ingress[0]").String() + "/"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
