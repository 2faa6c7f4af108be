package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"time"

	"github.com/signet-id/signet/internal/credtemplate"
)

// serveHTTPEgress proxies the application's plain HTTP requests on l to
// the route's https upstream, each with inject.header set to inject.format
// rendered over the route's current lease (a header of that name from the
// application is replaced). Without a live lease the application gets
// 503, with the reason; a template that needs a field the credential
// lacks gets 500 naming the field.
func (g *Gateway) serveHTTPEgress(ctx context.Context, name string, r *Egress, ls *lease, l net.Listener) error {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dialTimeout}).DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: r.roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: handshakeTimeout,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	defer tr.CloseIdleConnections()
	header := http.CanonicalHeaderKey(r.Inject.Header)
	proxy := &httputil.ReverseProxy{
		Transport:  tr,
		BufferPool: copyBuffers,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(r.target)
			// Set by the handler on the inbound request; Rewrite runs on
			// a copy of its headers.
			pr.Out.Header.Set(header, pr.In.Header.Get(header))
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			g.log.Warn("upstream failed", slog.String(logKeyRoute, name), slog.String(logKeyErr, err.Error()))
			http.Error(w, "bad gateway: the upstream of this route is unavailable", http.StatusBadGateway)
		},
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		cred, err := ls.current(req.Context())
		if err != nil {
			http.Error(w, fmt.Sprintf("signet gateway: no %s credential from the broker: %v", r.Credential, err), http.StatusServiceUnavailable)
			return
		}
		v, err := r.format.Execute(credtemplate.Fields(cred.LeaseID, cred.Credential, cred.ExpiresAt, cred.Data))
		if err != nil {
			g.log.Error("inject.format failed", slog.String(logKeyRoute, name), slog.String(logKeyErr, err.Error()))
			http.Error(w, "signet gateway: "+err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header.Set(header, string(v))
		proxy.ServeHTTP(w, req)
	})
	return g.runHTTP(ctx, name, handler, l)
}
