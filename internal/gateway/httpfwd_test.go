package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/signet-id/signet/internal/gateway"
	"github.com/signet-id/signet/internal/testenv"
)

// seen is what the backend of TestIngressForwarder received.
type seen struct {
	mu   sync.Mutex
	reqs []seenReq
}

type seenReq struct {
	ids  []string // every X-Forwarded-Client-Spiffe-Id value, whatever its case
	body string
	hdr  http.Header
}

func (s *seen) take() []seenReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reqs
	s.reqs = nil
	return r
}

// TestIngressForwarder sends hand-written requests over real mTLS
// connections through an http ingress route to a real net/http backend:
// the peer's own X-Forwarded-Client-Spiffe-Id never reaches the backend
// in any case or number; smuggling shapes, bad names, obs-fold, bare LF,
// oversize heads and bodies are refused before a byte reaches it; bodies
// (Content-Length, chunked, 100-continue) and keep-alive, HTTP/1.0 and
// Connection: close behave; an upgrade is tunnelled.
func TestIngressForwarder(t *testing.T) {
	env := testenv.New(t)
	const id = "spiffe://example.org/gw"
	src := agentSource(t, env, id, 0)
	var got seen
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "echo" {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			_ = brw.Flush()
			line, _ := brw.ReadString('\n')
			_, _ = brw.WriteString("echo " + line)
			_ = brw.Flush()
			return
		}
		b, _ := io.ReadAll(r.Body)
		var ids []string
		for k, v := range r.Header {
			if strings.EqualFold(k, gateway.HeaderClientID) {
				ids = append(ids, v...)
			}
		}
		got.mu.Lock()
		got.reqs = append(got.reqs, seenReq{ids: ids, body: string(b), hdr: r.Header.Clone()})
		got.mu.Unlock()
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush() // no Content-Length: chunked to HTTP/1.1
			_, _ = io.WriteString(w, "part one,")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "part two")
			return
		}
		_, _ = fmt.Fprintf(w, "ok %s %d", r.Method, len(b))
	})}
	go func() { _ = backend.Serve(bl) }()
	defer backend.Close()
	g := runGateway(t, "ingress: [{listen: '127.0.0.1:0', forward: '"+bl.Addr().String()+
		"', protocol: http, allow: ['subject.id == \""+id+"\"']}]\n", src, gateway.Options{})
	addr := g.Addr("ingress[0]").String()
	tcfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(id)))
	dial := func(t *testing.T) (*tls.Conn, *bufio.Reader) {
		t.Helper()
		c, err := tls.Dial("tcp", addr, tcfg)
		if err != nil {
			t.Fatalf("dial the gateway: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		return c, bufio.NewReader(c)
	}
	// send writes raw and reads one response.
	send := func(t *testing.T, raw string) (*http.Response, string, *tls.Conn, *bufio.Reader) {
		t.Helper()
		c, br := dial(t)
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read the response: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b), c, br
	}
	const host = "Host: app\r\n"

	t.Run("the peer's own ID header is stripped in every case and number", func(t *testing.T) {
		_ = got.take()
		resp, _, _, _ := send(t, "GET / HTTP/1.1\r\n"+host+
			"X-Forwarded-Client-Spiffe-Id: spiffe://example.org/admin\r\n"+
			"x-forwarded-client-spiffe-id: spiffe://example.org/admin2\r\n"+
			"X-FORWARDED-CLIENT-SPIFFE-ID: spiffe://example.org/admin3\r\n"+
			"x-Forwarded-client-SPIFFE-id:spiffe://example.org/admin4\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("status %s", resp.Status)
		}
		r := got.take()
		if len(r) != 1 || len(r[0].ids) != 1 || r[0].ids[0] != id {
			t.Fatalf("backend saw %s values %v, want exactly [%s]", gateway.HeaderClientID, r, id)
		}
	})

	t.Run("a header the peer's Connection names is not forwarded", func(t *testing.T) {
		_ = got.take()
		resp, _, _, _ := send(t, "GET / HTTP/1.1\r\n"+host+"Connection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nX-Kept: yes\r\n\r\n")
		r := got.take()
		if resp.StatusCode != 200 || len(r) != 1 {
			t.Fatalf("status %s, %d requests", resp.Status, len(r))
		}
		for _, h := range []string{"X-Secret", "Keep-Alive"} {
			if v := r[0].hdr.Get(h); v != "" {
				t.Errorf("backend saw %s: %q", h, v)
			}
		}
		if r[0].hdr.Get("X-Kept") != "yes" {
			t.Errorf("backend lost X-Kept: %v", r[0].hdr)
		}
	})

	refused := []struct {
		name, raw string
		status    int
	}{
		{"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"Transfer-Encoding and Content-Length", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
		{"two Content-Lengths", "POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400},
		{"Content-Length list", "POST / HTTP/1.1\r\n" + host + "Content-Length: 3, 3\r\n\r\nabc", 400},
		{"signed Content-Length", "POST / HTTP/1.1\r\n" + host + "Content-Length: +3\r\n\r\nabc", 400},
		{"transfer coding other than chunked", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"chunked in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\n" + host + "X-A: 1\r\n  folded\r\n\r\n", 400},
		{"space before the colon", "GET / HTTP/1.1\r\n" + host + "Transfer-Encoding : chunked\r\n\r\n", 400},
		{"bad header name", "GET / HTTP/1.1\r\n" + host + "X(A): 1\r\n\r\n", 400},
		{"bare LF", "GET / HTTP/1.1\n" + host + "\r\n", 400},
		{"bare CR in a value", "GET / HTTP/1.1\r\n" + host + "X-A: 1\rX-B: 2\r\n\r\n", 400},
		{"NUL in a value", "GET / HTTP/1.1\r\n" + host + "X-A: \x00\r\n\r\n", 400},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\n" + host + host + "\r\n", 400},
		{"absolute-form target", "GET http://evil/ HTTP/1.1\r\n" + host + "\r\n", 400},
		{"CONNECT", "CONNECT evil:443 HTTP/1.1\r\n" + host + "\r\n", 405},
		{"HTTP/2.0", "GET / HTTP/2.0\r\n" + host + "\r\n", 505},
		{"head over 64 KiB", "GET / HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 65<<10) + "\r\n\r\n", 431},
		{"Content-Length over 1 MiB", "POST / HTTP/1.1\r\n" + host + "Content-Length: 1048577\r\n\r\n", 413},
		{"chunked body over 1 MiB", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
			"80000\r\n" + strings.Repeat("a", 0x80000) + "\r\n80001\r\n" + strings.Repeat("a", 0x80001) + "\r\n0\r\n\r\n", 413},
		{"bad chunk size", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400},
		{"Expect other than 100-continue", "GET / HTTP/1.1\r\n" + host + "Expect: 200-ok\r\n\r\n", 417},
	}
	for _, tc := range refused {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			_ = got.take()
			c, br := dial(t)
			_, _ = io.WriteString(c, tc.raw)
			resp, err := http.ReadResponse(br, nil)
			switch {
			case tc.status == 0 && err == nil:
				t.Errorf("got %s, want the connection closed", resp.Status)
			case tc.status != 0 && err != nil:
				t.Fatalf("read the response: %v", err)
			case tc.status != 0 && resp.StatusCode != tc.status:
				t.Errorf("status %s, want %d", resp.Status, tc.status)
			}
			if tc.status != 0 {
				_, _ = io.ReadAll(resp.Body)
				// The connection ends: nothing more is read from it.
				if _, err := br.ReadByte(); err == nil {
					t.Errorf("connection still open after a refused request")
				}
			}
			// A chunked body is streamed, so the backend sees the start of
			// the one over the bound (never more than the bound), once its
			// handler is done.
			if tc.name == "chunked body over 1 MiB" {
				testenv.WaitFor(t, 5*time.Second, "the backend's handler", func() error {
					got.mu.Lock()
					defer got.mu.Unlock()
					if len(got.reqs) == 0 {
						return io.ErrNoProgress
					}
					return nil
				})
			}
			for _, r := range got.take() {
				if tc.name != "chunked body over 1 MiB" || len(r.body) > 1<<20 {
					t.Errorf("backend received a request with %d body bytes", len(r.body))
				}
			}
		})
	}

	t.Run("keep-alive, pipelined, bodies by length and chunked", func(t *testing.T) {
		_ = got.take()
		c, br := dial(t)
		_, _ = io.WriteString(c, "POST /a HTTP/1.1\r\n"+host+"Content-Length: 5\r\n\r\nhello"+
			"POST /b HTTP/1.1\r\n"+host+"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"+
			"GET /chunked HTTP/1.1\r\n"+host+"\r\n")
		for i, want := range []string{"ok POST 5", "ok POST 5", "part one,part two"} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("response %d: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			if string(b) != want || resp.Close {
				t.Errorf("response %d: %q close=%v, want %q on an open connection", i, b, resp.Close, want)
			}
		}
		r := got.take()
		if len(r) != 3 || r[0].body != "hello" || r[1].body != "abcde" {
			t.Fatalf("backend saw %+v", r)
		}
	})

	t.Run("HTTP/1.0 and Connection: close end the connection", func(t *testing.T) {
		for _, raw := range []string{"GET /chunked HTTP/1.0\r\n\r\n", "GET / HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n"} {
			resp, body, _, br := send(t, raw)
			if resp.StatusCode != 200 || !resp.Close || body == "" {
				t.Errorf("%q: %s close=%v body=%q", raw, resp.Status, resp.Close, body)
			}
			if _, err := br.ReadByte(); err == nil {
				t.Errorf("%q: connection still open", raw)
			}
		}
	})

	t.Run("Expect: 100-continue", func(t *testing.T) {
		_ = got.take()
		c, br := dial(t)
		_, _ = io.WriteString(c, "PUT / HTTP/1.1\r\n"+host+"Expect: 100-continue\r\nContent-Length: 4\r\n\r\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("got %q, %v; want 100 Continue", line, err)
		}
		_, _ = br.ReadString('\n')
		_, _ = io.WriteString(c, "data")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if r := got.take(); string(b) != "ok PUT 4" || len(r) != 1 || r[0].hdr.Get("Expect") != "" {
			t.Errorf("got %q; backend saw %+v", b, r)
		}
	})

	t.Run("an upgrade is tunnelled", func(t *testing.T) {
		c, br := dial(t)
		_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\n"+host+"Connection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("got %v, %v; want 101", resp, err)
		}
		_, _ = io.WriteString(c, "ping\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "echo ping\n" {
			t.Errorf("through the tunnel: %q, %v", line, err)
		}
	})

	t.Run("Go's client: a large streamed upload and download", func(t *testing.T) {
		tr := &http.Transport{DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&tls.Dialer{Config: tcfg}).DialContext(ctx, "tcp", addr)
		}}
		defer tr.CloseIdleConnections()
		body := bytes.Repeat([]byte("0123456789abcdef"), 60000) // 960,000 bytes, chunked (unknown length)
		resp, err := (&http.Client{Transport: tr}).Post("https://gw/up", "application/octet-stream", io.MultiReader(bytes.NewReader(body)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != fmt.Sprintf("ok POST %d", len(body)) {
			t.Errorf("upload: %q", b)
		}
	})
}

// TestIngressForwarderStaleBackendConn: a kept-alive connection that the
// application closed while it was idle costs the peer nothing, since a
// request without a body is sent once more on a new connection.
func TestIngressForwarderStaleBackendConn(t *testing.T) {
	env := testenv.New(t)
	const id = "spiffe://example.org/gw"
	src := agentSource(t, env, id, 0)
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	conns := map[string]bool{}
	backend := &http.Server{IdleTimeout: 50 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	})}
	go func() { _ = backend.Serve(bl) }()
	defer backend.Close()
	g := runGateway(t, "ingress: [{listen: '127.0.0.1:0', forward: '"+bl.Addr().String()+
		"', protocol: http, allow: ['subject.id == \""+id+"\"']}]\n", src, gateway.Options{})
	tcfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString(id)))
	c, err := tls.Dial("tcp", g.Addr("ingress[0]").String(), tcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	for i := range 3 {
		if i > 0 {
			time.Sleep(200 * time.Millisecond) // past the backend's idle timeout
		}
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: app\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("request %d: %s %q, want 200 ok", i, resp.Status, b)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != 3 {
		t.Errorf("backend saw %d connections, want 3 (each idle one closed by the backend)", len(conns))
	}
}
