package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/logsafe"
)

// The http ingress forwarder: one goroutine per peer connection reads
// requests with a strict head parser (httphead.go), forwards each over a
// pooled keep-alive connection to the application with the peer's
// verified SPIFFE ID in X-Forwarded-Client-Spiffe-Id, and streams the
// response back, framed by Content-Length or chunked as the application
// framed it, without buffering bodies. It replaces net/http's server and
// httputil.ReverseProxy on this path, whose per-request allocations and
// goroutine hand-offs (the transport's read and write loops) cost more
// than half of the route's throughput.

// Bounds of http ingress routes: the edge's (internal/edge).
const (
	maxHead           = edge.DefaultHTTPMaxHeaderBytes
	maxRequestBody    = edge.DefaultHTTPMaxBodyBytes
	readHeaderTimeout = edge.DefaultHTTPReadHeaderTimeout
	readTimeout       = edge.DefaultHTTPReadTimeout
	writeTimeout      = edge.DefaultHTTPWriteTimeout
	idleTimeout       = edge.DefaultHTTPIdleTimeout
)

// Keep-alive connections to the application.
const (
	maxIdleBackend     = 256
	backendIdleTimeout = 90 * time.Second
)

// Buffer sizes. The peer's writer holds a whole small response, so it
// leaves in one TLS record and one write.
const (
	peerReadBuf   = 4 << 10
	peerWriteBuf  = 16 << 10
	backendBuf    = 8 << 10
	statusGateway = "bad gateway: the application behind this route is unavailable\n"
)

// Connection states, for shutdown: an idle connection (in its handshake
// or waiting for a request) is closed at once; an active one finishes its
// request first.
const (
	stateIdle int32 = iota
	stateActive
	stateClosed
)

// forwarder serves one http ingress route.
type forwarder struct {
	g        *Gateway
	route    string
	pool     backendPool
	draining atomic.Bool
}

// serveHTTPIngress serves an http ingress route on l (plain TCP; TLS is
// done here) until ctx is done; then it stops accepting, closes idle
// connections, gives active requests up to shutdownGrace and closes the
// rest.
func (g *Gateway) serveHTTPIngress(ctx context.Context, route string, r *Ingress, l net.Listener) error {
	cfg := g.serverTLS(route, r)
	// One record per write from the first byte (the default starts with
	// small records for the first 128 KiB of each connection).
	cfg.DynamicRecordSizingDisabled = true
	f := &forwarder{g: g, route: route, pool: backendPool{addr: r.Forward}}
	defer f.pool.closeAll()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[*peerConn]struct{}{}
	)
	stop := context.AfterFunc(ctx, func() {
		f.draining.Store(true)
		l.Close()
		mu.Lock()
		for pc := range conns {
			if pc.state.CompareAndSwap(stateIdle, stateClosed) {
				pc.c.Close()
			}
		}
		mu.Unlock()
	})
	defer stop()
	var err error
	for {
		var c net.Conn
		c, err = l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				err = nil
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			err = errors.Join(errors.New(route+": accept"), err)
			break
		}
		pc := &peerConn{f: f, ctx: ctx, c: tls.Server(c, cfg)}
		mu.Lock()
		conns[pc] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				pc.c.Close()
				mu.Lock()
				delete(conns, pc)
				mu.Unlock()
			}()
			pc.serve()
		}()
	}
	l.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		mu.Lock()
		for pc := range conns {
			pc.c.Close()
		}
		mu.Unlock()
		<-done
	}
	return err
}

// peerConn is one peer connection and its reusable buffers.
type peerConn struct {
	f     *forwarder
	ctx   context.Context
	c     *tls.Conn
	state atomic.Int32
	br    *bufio.Reader
	bw    *bufio.Writer
	// idLine is the X-Forwarded-Client-Spiffe-Id field line of the peer.
	idLine []byte
	head   []byte
	req    reqHead
	resp   respHead
}

func (pc *peerConn) log() *slog.Logger { return pc.f.g.log }

func (pc *peerConn) serve() {
	hctx, cancel := context.WithTimeout(pc.ctx, handshakeTimeout)
	err := pc.c.HandshakeContext(hctx)
	cancel()
	if err != nil {
		pc.log().Info("handshake failed", slog.String(logKeyRoute, pc.f.route), slog.String(logKeyPeer, pc.c.RemoteAddr().String()),
			slog.String(logKeyErr, logsafe.Truncate(err.Error())))
		return
	}
	// The handshake verified the chain and authorized this ID.
	certs := pc.c.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return
	}
	pc.idLine = append(append(append([]byte(nil), HeaderClientID+": "...), id.String()...), "\r\n"...)
	pc.br = bufio.NewReaderSize(pc.c, peerReadBuf)
	pc.bw = bufio.NewWriterSize(pc.c, peerWriteBuf)
	for {
		if pc.br.Buffered() == 0 {
			_ = pc.c.SetReadDeadline(time.Now().Add(idleTimeout))
		}
		if _, err := pc.br.Peek(1); err != nil {
			return
		}
		if !pc.state.CompareAndSwap(stateIdle, stateActive) {
			return
		}
		keep := pc.handle()
		if !keep || !pc.state.CompareAndSwap(stateActive, stateIdle) || pc.f.draining.Load() {
			return
		}
	}
}

// handle serves one request and reports whether the connection carries
// on.
func (pc *peerConn) handle() bool {
	now := time.Now()
	_ = pc.c.SetReadDeadline(now.Add(readHeaderTimeout))
	head, err := readHead(pc.br, pc.head, maxHead)
	pc.head = head[:0]
	if err != nil {
		var he *headError
		if errors.As(err, &he) {
			pc.refuse(he)
		}
		return false
	}
	req := &pc.req
	if err := parseRequestHead(head, req, maxRequestBody); err != nil {
		var he *headError
		if errors.As(err, &he) {
			pc.refuse(he)
		}
		return false
	}
	_ = pc.c.SetReadDeadline(now.Add(readTimeout))
	_ = pc.c.SetWriteDeadline(now.Add(writeTimeout))
	if req.expectContinue && req.bodyLen() != 0 {
		_, _ = pc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if pc.bw.Flush() != nil {
			return false
		}
	}
	keep := pc.exchange(now)
	// A head buffer grown by one large request is not kept for the
	// connection's lifetime (up to 64 KiB each, 4,096 connections).
	if cap(pc.head) > 2*peerReadBuf {
		pc.head = nil
	}
	return keep
}

// refuse answers a request the forwarder does not accept; the connection
// then closes.
func (pc *peerConn) refuse(he *headError) {
	_ = pc.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	pc.writeError(he.status, he.msg+"\n", false)
	_ = pc.bw.Flush()
}

func (pc *peerConn) writeError(status int, msg string, keep bool) {
	w := pc.bw
	_, _ = w.WriteString("HTTP/1.1 ")
	_, _ = w.WriteString(strconv.Itoa(status))
	_ = w.WriteByte(' ')
	_, _ = w.WriteString(http.StatusText(status))
	_, _ = w.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: ")
	_, _ = w.WriteString(strconv.Itoa(len(msg)))
	if !keep {
		_, _ = w.WriteString("\r\nConnection: close")
	}
	_, _ = w.WriteString("\r\n\r\n")
	_, _ = w.WriteString(msg)
}

// peerReadError is a failure reading the peer's request body.
type peerReadError struct{ err error }

func (e *peerReadError) Error() string { return "read request body: " + e.err.Error() }
func (e *peerReadError) Unwrap() error { return e.err }

// exchange forwards the parsed request and streams the response back. A
// request without a body that fails on a reused application connection
// before any response byte (the application closed it while idle) is
// sent once more on a new connection.
func (pc *peerConn) exchange(start time.Time) bool {
	req, resp := &pc.req, &pc.resp
	closeAfter := req.wantClose || pc.f.draining.Load()
	bodyRead := req.bodyLen() == 0
	var bc *backendConn
	for attempt := 0; ; attempt++ {
		var err error
		bc, err = pc.f.pool.get()
		if err != nil {
			pc.log().Warn("backend failed", slog.String(logKeyRoute, pc.f.route), slog.String(logKeyErr, err.Error()))
			return pc.badGateway(!closeAfter && bodyRead)
		}
		_ = bc.c.SetDeadline(start.Add(writeTimeout))
		err = pc.writeRequest(bc)
		if err == nil {
			bodyRead = true
		}
		nothingRead := true // also when writing failed: no response byte came
		if err == nil {
			nothingRead, err = bc.readResponseHead(resp)
		}
		if err == nil {
			break
		}
		bc.c.Close()
		var pe *peerReadError
		if errors.As(err, &pe) {
			var se chunkSyntaxError
			var he *headError
			switch {
			case errors.Is(err, errChunkedTooLarge):
				pc.refuse(&headError{413, "request body larger than 1 MiB"})
			case errors.As(err, &se):
				pc.refuse(badRequest("chunked body: %s", se))
			case errors.As(err, &he):
				pc.refuse(he)
			}
			return false
		}
		if bc.reused && nothingRead && attempt == 0 && req.bodyLen() == 0 {
			continue
		}
		pc.log().Warn("backend failed", slog.String(logKeyRoute, pc.f.route), slog.String(logKeyErr, err.Error()))
		return pc.badGateway(!closeAfter && bodyRead)
	}
	// Interim responses (103 Early Hints, …) go to HTTP/1.1 peers.
	for resp.status < 200 && resp.status != http.StatusSwitchingProtocols {
		if req.minor == 1 {
			_, _ = pc.bw.Write(bc.head)
			if err := pc.bw.Flush(); err != nil {
				bc.c.Close()
				return false
			}
		}
		if _, err := bc.readResponseHead(resp); err != nil {
			bc.c.Close()
			pc.log().Warn("backend failed", slog.String(logKeyRoute, pc.f.route), slog.String(logKeyErr, err.Error()))
			return pc.badGateway(!closeAfter)
		}
	}
	if resp.status == http.StatusSwitchingProtocols {
		if !req.upgrade {
			bc.c.Close()
			pc.log().Warn("backend failed", slog.String(logKeyRoute, pc.f.route), slog.String(logKeyErr, "101 Switching Protocols to a request that asked for no upgrade"))
			return pc.badGateway(false)
		}
		pc.tunnel(bc)
		return false
	}
	if err := pc.writeResponse(bc, &closeAfter); err != nil {
		bc.c.Close()
		if !errors.Is(err, errPeerWrite) {
			pc.log().Warn("backend failed mid-response", slog.String(logKeyRoute, pc.f.route), slog.String(logKeyErr, err.Error()))
		}
		return false
	}
	if resp.keep {
		pc.f.pool.put(bc)
	} else {
		bc.c.Close()
	}
	return !closeAfter
}

func (pc *peerConn) badGateway(keep bool) bool {
	pc.writeError(http.StatusBadGateway, statusGateway, keep)
	return pc.bw.Flush() == nil && keep
}

// writeRequest sends the request head, with the peer's ID and without
// hop-by-hop fields or an X-Forwarded-Client-Spiffe-Id of the peer's
// (whatever its case, however often it appears), and the body.
func (pc *peerConn) writeRequest(bc *backendConn) error {
	req, w := &pc.req, bc.bw
	_, _ = w.Write(req.method)
	_ = w.WriteByte(' ')
	_, _ = w.Write(req.target)
	_, _ = w.WriteString(" HTTP/1.1\r\n")
	for _, f := range req.fields {
		if bytes.EqualFold(f.name, hClientID) {
			continue
		}
		if isHopByHop(f.name, req.hop) && !(req.upgrade && bytes.EqualFold(f.name, hUpgrade)) {
			continue
		}
		writeField(w, f)
	}
	if !req.hasHost {
		_, _ = w.WriteString("Host: ")
		_, _ = w.WriteString(pc.f.pool.addr)
		_, _ = w.WriteString("\r\n")
	}
	if req.upgrade {
		_, _ = w.WriteString("Connection: Upgrade\r\n")
	}
	_, _ = w.Write(pc.idLine)
	switch {
	case req.chunked:
		_, _ = w.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		if err := pc.copyChunkedRequest(w); err != nil {
			return err
		}
	default:
		_, _ = w.WriteString("\r\n")
		if n := req.bodyLen(); n > 0 {
			if err := copyN(w, pc.br, n, true); err != nil {
				return err
			}
		}
	}
	return w.Flush()
}

// copyChunkedRequest re-frames the peer's chunked body (at most
// maxRequestBody bytes of data); trailer fields are not forwarded.
func (pc *peerConn) copyChunkedRequest(w *bufio.Writer) error {
	cr := chunkReader{br: pc.br, max: maxRequestBody}
	for {
		n, err := cr.next()
		if err != nil {
			return &peerReadError{err}
		}
		if n == 0 {
			if _, err := readTrailers(pc.br, pc.head[:0], maxHead); err != nil {
				return &peerReadError{err}
			}
			_, err := w.WriteString("0\r\n\r\n")
			return err
		}
		writeChunkSize(w, n)
		if err := copyN(w, pc.br, n, true); err != nil {
			return err
		}
		_, _ = w.WriteString("\r\n")
	}
}

// errPeerWrite is a failure writing to the peer.
var errPeerWrite = errors.New("write to the peer")

// writeResponse streams the application's response to the peer; it sets
// *closeAfter when the framing needs the peer connection closed.
func (pc *peerConn) writeResponse(bc *backendConn, closeAfter *bool) error {
	req, resp, w := &pc.req, &pc.resp, pc.bw
	noBody := bodyless(req.method, resp.status)
	if !noBody && (resp.untilClose || (resp.chunked && req.minor == 0)) {
		*closeAfter = true
	}
	_, _ = w.WriteString("HTTP/1.1")
	_, _ = w.Write(resp.statusLine[8:])
	_, _ = w.WriteString("\r\n")
	for _, f := range resp.fields {
		if isHopByHop(f.name, resp.hop) || (resp.contentLength < 0 && bytes.EqualFold(f.name, hContentLength)) {
			continue
		}
		writeField(w, f)
	}
	chunkOut := !noBody && resp.chunked && req.minor == 1
	if chunkOut {
		_, _ = w.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if *closeAfter {
		_, _ = w.WriteString("Connection: close\r\n")
	}
	_, _ = w.WriteString("\r\n")
	var err error
	switch {
	case noBody:
	case resp.contentLength >= 0:
		err = copyN(w, bc.br, resp.contentLength, false)
	case resp.chunked:
		err = pc.copyChunkedResponse(bc, chunkOut)
	default:
		err = copyAll(w, bc.br)
	}
	if err != nil {
		return err
	}
	if w.Flush() != nil {
		return errPeerWrite
	}
	return nil
}

// copyChunkedResponse copies the application's chunked body, re-framed
// for an HTTP/1.1 peer (trailers included) or de-chunked for HTTP/1.0.
func (pc *peerConn) copyChunkedResponse(bc *backendConn, chunkOut bool) error {
	w := pc.bw
	cr := chunkReader{br: bc.br}
	for {
		n, err := cr.next()
		if err != nil {
			return err
		}
		if n == 0 {
			tr, err := readTrailers(bc.br, bc.head[:0], maxHead)
			if err != nil {
				return err
			}
			if chunkOut {
				_, _ = w.WriteString("0\r\n")
				_, _ = w.Write(tr)
			}
			return nil
		}
		if chunkOut {
			writeChunkSize(w, n)
		}
		if err := copyN(w, bc.br, n, false); err != nil {
			return err
		}
		if chunkOut {
			_, _ = w.WriteString("\r\n")
		}
	}
}

// tunnel relays an upgraded connection (101 Switching Protocols to a
// request with Connection: upgrade, such as a WebSocket) both ways until
// either side ends it. The response head goes to the peer as the
// application sent it, Connection and Upgrade included.
func (pc *peerConn) tunnel(bc *backendConn) {
	_, _ = pc.bw.Write(bc.head)
	if pc.bw.Flush() != nil {
		bc.c.Close()
		return
	}
	_ = pc.c.SetDeadline(time.Time{})
	_ = bc.c.SetDeadline(time.Time{})
	pipe(pc.ctx, &bufConn{Conn: pc.c, r: pc.br}, &bufConn{Conn: bc.c, r: bc.br})
}

// bufConn is a connection whose reads go through the bufio.Reader that
// already holds some of its bytes.
type bufConn struct {
	net.Conn
	r io.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// CloseWrite ends the write side of the connection beneath.
func (b *bufConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return b.Conn.Close()
}

func writeField(w *bufio.Writer, f field) {
	_, _ = w.Write(f.name)
	_, _ = w.WriteString(": ")
	_, _ = w.Write(f.value)
	_, _ = w.WriteString("\r\n")
}

func writeChunkSize(w *bufio.Writer, n int64) {
	var b [20]byte
	_, _ = w.Write(strconv.AppendInt(b[:0], n, 16))
	_, _ = w.WriteString("\r\n")
}

// copyN copies n bytes from src to dst without an intermediate buffer,
// flushing dst whenever src has nothing buffered so a streamed body is
// not held back. fromPeer says which side src is: its read errors are
// *peerReadError, and dst's write errors are the application's; the other
// way round, dst's are errPeerWrite.
func copyN(dst *bufio.Writer, src *bufio.Reader, n int64, fromPeer bool) error {
	for n > 0 {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return writeErr(err, fromPeer)
			}
			if _, err := src.Peek(1); err != nil {
				return readErr(unexpected(err), fromPeer)
			}
		}
		k := min(int64(src.Buffered()), n)
		b, _ := src.Peek(int(k))
		if _, err := dst.Write(b); err != nil {
			return writeErr(err, fromPeer)
		}
		_, _ = src.Discard(int(k))
		n -= k
	}
	return nil
}

// copyAll copies the application's body until it closes the connection.
func copyAll(dst *bufio.Writer, src *bufio.Reader) error {
	for {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return errPeerWrite
			}
			if _, err := src.Peek(1); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
		b, _ := src.Peek(src.Buffered())
		if _, err := dst.Write(b); err != nil {
			return errPeerWrite
		}
		_, _ = src.Discard(len(b))
	}
}

func readErr(err error, fromPeer bool) error {
	if fromPeer {
		return &peerReadError{err}
	}
	return err
}

func writeErr(err error, fromPeer bool) error {
	if fromPeer {
		return err
	}
	return errPeerWrite
}

// backendConn is a connection to the application.
type backendConn struct {
	c         net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	head      []byte
	reused    bool
	idleSince time.Time
}

// readResponseHead reads and parses the next response head into resp;
// nothingRead says the connection ended before its first byte.
func (bc *backendConn) readResponseHead(resp *respHead) (nothingRead bool, err error) {
	head, err := readHead(bc.br, bc.head, maxHead)
	bc.head = head
	if err != nil {
		return len(head) == 0, err
	}
	return false, parseResponseHead(head, resp)
}

// backendPool keeps idle keep-alive connections to one application
// address, newest first out.
type backendPool struct {
	addr string
	mu   sync.Mutex
	idle []*backendConn
	shut bool
}

func (p *backendPool) get() (*backendConn, error) {
	now := time.Now()
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		bc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if now.Sub(bc.idleSince) < backendIdleTimeout {
			p.mu.Unlock()
			bc.reused = true
			return bc, nil
		}
		bc.c.Close()
	}
	p.mu.Unlock()
	c, err := net.DialTimeout("tcp", p.addr, dialTimeout)
	if err != nil {
		return nil, err
	}
	return &backendConn{c: c, br: bufio.NewReaderSize(c, backendBuf), bw: bufio.NewWriterSize(c, backendBuf)}, nil
}

func (p *backendPool) put(bc *backendConn) {
	if bc.br.Buffered() != 0 { // bytes past the response: not a connection to reuse
		bc.c.Close()
		return
	}
	if cap(bc.head) > 2*peerReadBuf {
		bc.head = nil
	}
	bc.idleSince = time.Now()
	p.mu.Lock()
	if p.shut || len(p.idle) >= maxIdleBackend {
		p.mu.Unlock()
		bc.c.Close()
		return
	}
	p.idle = append(p.idle, bc)
	p.mu.Unlock()
}

func (p *backendPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shut = true
	for _, bc := range p.idle {
		bc.c.Close()
	}
	p.idle = nil
}
