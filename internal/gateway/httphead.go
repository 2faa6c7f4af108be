package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// This file holds the strict HTTP/1.1 message-head parsing of the http
// ingress forwarder (httpfwd.go). Requests come from peers the TLS
// handshake authenticated but that are not otherwise trusted, so anything
// two parsers could read two ways is refused rather than repaired: both
// Content-Length and Transfer-Encoding, a repeated or non-numeric
// Content-Length, a transfer coding other than chunked, obs-fold, bare LF,
// whitespace before a colon, control characters, a head past the size
// bound (RFC 9112 sections 2.2, 5, 6 and 11.2).

// headError is a request the forwarder answers with status and msg and
// then closes the connection.
type headError struct {
	status int
	msg    string
}

func (e *headError) Error() string { return e.msg }

func badRequest(format string, args ...any) *headError {
	return &headError{400, fmt.Sprintf(format, args...)}
}

// errHeadTooLarge is a head past maxHead bytes.
var errHeadTooLarge = &headError{431, "request head larger than 64 KiB"}

// field is one header field of a parsed head; name and value point into
// the head's buffer. value has no leading or trailing whitespace.
type field struct{ name, value []byte }

// reqHead is a parsed request head. Its slices point into the buffer it
// was parsed from.
type reqHead struct {
	method, target []byte
	minor          int // HTTP/1.minor: 0 or 1
	fields         []field
	// contentLength is the request body's length; -1 without a
	// Content-Length field.
	contentLength int64
	chunked       bool
	// wantClose: the peer asked for the connection to close after this
	// request (Connection: close, or HTTP/1.0).
	wantClose      bool
	expectContinue bool
	// upgrade: Connection names upgrade and an Upgrade field is present.
	upgrade bool
	hasHost bool
	// hop lists the field names the Connection field named (besides
	// close, keep-alive and upgrade): they are not forwarded.
	hop [][]byte
}

// bodyLen says how many body bytes follow the head: -1 for chunked.
func (h *reqHead) bodyLen() int64 {
	switch {
	case h.chunked:
		return -1
	case h.contentLength > 0:
		return h.contentLength
	}
	return 0
}

// readHead reads a message head (through the empty line) from br into
// buf[:0], at most max bytes, and returns it. A head past max is
// errHeadTooLarge; a connection that ends first returns io.EOF (nothing
// read) or io.ErrUnexpectedEOF.
func readHead(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	buf = buf[:0]
	lineStart, skipped := 0, false
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > max {
			return buf, errHeadTooLarge
		}
		buf = append(buf, frag...)
		switch {
		case err == nil:
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) == 0:
			return buf, io.EOF
		case errors.Is(err, io.EOF):
			return buf, io.ErrUnexpectedEOF
		default:
			return buf, err
		}
		line := buf[lineStart:]
		lineStart = len(buf)
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			if lineStart == len(line) && !skipped { // one empty line before a request is allowed (RFC 9112 section 2.2)
				buf, lineStart, skipped = buf[:0], 0, true
				continue
			}
			return buf, nil
		}
	}
}

// tchar reports whether c may appear in a token (RFC 9110 section 5.6.2).
func tchar(c byte) bool {
	return tokenTable[c]
}

var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// lines splits a head into its lines without the CRLF; a line that does
// not end in CRLF is an error.
func nextLine(head []byte) (line, rest []byte, err error) {
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		return nil, nil, badRequest("head does not end with an empty line")
	}
	if i == 0 || head[i-1] != '\r' {
		return nil, nil, badRequest("line ends in a bare LF: want CRLF")
	}
	return head[:i-1], head[i+1:], nil
}

// parseField parses one field line (name ":" OWS value OWS).
func parseField(line []byte) (field, error) {
	if line[0] == ' ' || line[0] == '\t' {
		return field{}, badRequest("obs-fold (a header line starting with whitespace) is not accepted")
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return field{}, badRequest("header line without a name and a colon")
	}
	name := line[:colon]
	for _, c := range name {
		if !tchar(c) {
			return field{}, badRequest("header name %q: only token characters are accepted (no whitespace before the colon)", truncate(name))
		}
	}
	value := line[colon+1:]
	for _, c := range value {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return field{}, badRequest("header %s: control character 0x%02x in the value", name, c)
		}
	}
	return field{name: name, value: bytes.Trim(value, " \t")}, nil
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// forEachToken calls fn for each element of a comma-separated list
// (empty elements skipped, whitespace trimmed).
func forEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		if tok = bytes.Trim(tok, " \t"); len(tok) > 0 {
			fn(tok)
		}
	}
}

// parseDecimal parses a Content-Length value: digits only.
func parseDecimal(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// Field names the forwarder reads (compared case-insensitively).
var (
	hContentLength    = []byte("Content-Length")
	hTransferEncoding = []byte("Transfer-Encoding")
	hConnection       = []byte("Connection")
	hHost             = []byte("Host")
	hExpect           = []byte("Expect")
	hUpgrade          = []byte("Upgrade")
	hClientID         = []byte(HeaderClientID)
)

// hopByHop are the fields that describe one connection only and are never
// forwarded (RFC 9110 section 7.6.1), besides those Connection names;
// the forwarder writes its own framing and Connection fields.
var hopByHop = [][]byte{
	hConnection, hTransferEncoding, []byte("Keep-Alive"), []byte("Proxy-Connection"),
	[]byte("TE"), []byte("Trailer"), hUpgrade, hExpect,
}

func isHopByHop(name []byte, named [][]byte) bool {
	for _, h := range hopByHop {
		if bytes.EqualFold(name, h) {
			return true
		}
	}
	for _, h := range named {
		if bytes.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// parseRequestHead parses a request head as readHead returned it into h
// (whose fields slice is reused). maxBody bounds Content-Length. Errors
// are *headError.
func parseRequestHead(head []byte, h *reqHead, maxBody int64) error {
	*h = reqHead{fields: h.fields[:0], hop: h.hop[:0], contentLength: -1}
	line, rest, err := nextLine(head)
	if err != nil {
		return err
	}
	// method SP request-target SP HTTP-version
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return badRequest("request line: want METHOD /path HTTP/1.1")
	}
	h.method = line[:sp1]
	for _, c := range h.method {
		if !tchar(c) {
			return badRequest("request line: the method must be a token")
		}
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return badRequest("request line: want METHOD /path HTTP/1.1")
	}
	h.target = line[sp1+1 : sp1+1+sp2]
	version := line[sp1+1+sp2+1:]
	for _, c := range h.target {
		if c <= 0x20 || c >= 0x7f {
			return badRequest("request target: byte 0x%02x is not accepted (percent-encode it)", c)
		}
	}
	switch {
	case string(version) == "HTTP/1.1":
		h.minor = 1
	case string(version) == "HTTP/1.0":
		h.minor = 0
		h.wantClose = true
	case len(version) == 8 && bytes.HasPrefix(version, []byte("HTTP/")) && version[6] == '.':
		return &headError{505, "HTTP version not supported: use HTTP/1.1 or HTTP/1.0"}
	default:
		return badRequest("request line: want METHOD /path HTTP/1.1")
	}
	switch {
	case h.target[0] == '/':
	case string(h.target) == "*" && string(h.method) == "OPTIONS":
	case string(h.method) == "CONNECT":
		return &headError{405, "CONNECT is not accepted: this route forwards requests to one application"}
	default:
		return badRequest("request target %q: want an absolute path (/...)", truncate(h.target))
	}
	var sawCL, sawTE, sawUpgrade, connUpgrade bool
	for {
		if line, rest, err = nextLine(rest); err != nil {
			return err
		}
		if len(line) == 0 {
			break
		}
		f, err := parseField(line)
		if err != nil {
			return err
		}
		switch {
		case bytes.EqualFold(f.name, hContentLength):
			if sawCL {
				return badRequest("Content-Length: more than one")
			}
			sawCL = true
			n, ok := parseDecimal(f.value)
			if !ok {
				return badRequest("Content-Length %q: want a decimal number of bytes", truncate(f.value))
			}
			if n > maxBody {
				return &headError{413, fmt.Sprintf("request body of %d bytes: at most %d are accepted", n, maxBody)}
			}
			h.contentLength = n
		case bytes.EqualFold(f.name, hTransferEncoding):
			if sawTE {
				return badRequest("Transfer-Encoding: more than one")
			}
			sawTE = true
			if !bytes.EqualFold(f.value, []byte("chunked")) {
				return &headError{501, fmt.Sprintf("Transfer-Encoding %q: only chunked is accepted", truncate(f.value))}
			}
			h.chunked = true
		case bytes.EqualFold(f.name, hHost):
			if h.hasHost {
				return badRequest("Host: more than one")
			}
			h.hasHost = true
			for _, c := range f.value {
				if !hostChar(c) {
					return badRequest("Host %q: not a host[:port]", truncate(f.value))
				}
			}
		case bytes.EqualFold(f.name, hConnection):
			forEachToken(f.value, func(tok []byte) {
				switch {
				case bytes.EqualFold(tok, []byte("close")):
					h.wantClose = true
				case bytes.EqualFold(tok, []byte("keep-alive")):
				case bytes.EqualFold(tok, []byte("upgrade")):
					connUpgrade = true
				default:
					h.hop = append(h.hop, tok)
				}
			})
		case bytes.EqualFold(f.name, hExpect):
			if !bytes.EqualFold(f.value, []byte("100-continue")) {
				return &headError{417, fmt.Sprintf("Expect %q: only 100-continue is accepted", truncate(f.value))}
			}
			h.expectContinue = true
		case bytes.EqualFold(f.name, hUpgrade):
			sawUpgrade = true
		}
		h.fields = append(h.fields, f)
	}
	if len(rest) != 0 {
		return badRequest("data after the head's empty line")
	}
	if sawCL && sawTE {
		return badRequest("both Content-Length and Transfer-Encoding: send one")
	}
	if sawTE && h.minor == 0 {
		return badRequest("Transfer-Encoding in an HTTP/1.0 request")
	}
	if h.minor == 1 && !h.hasHost {
		return badRequest("Host: required in HTTP/1.1")
	}
	h.upgrade = connUpgrade && sawUpgrade
	if h.upgrade && h.bodyLen() != 0 {
		return badRequest("an upgrade request with a body")
	}
	return nil
}

// hostChar reports whether c may appear in a Host value: reg-name, IPv4,
// bracketed IPv6 and a port (RFC 3986 section 3.2.2).
func hostChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', '%', ':', '[', ']':
		return true
	}
	return false
}

// respHead is a parsed response head from the application.
type respHead struct {
	status        int
	statusLine    []byte // "HTTP/1.x NNN reason"
	fields        []field
	contentLength int64 // -1 without Content-Length
	chunked       bool  // the last transfer coding is chunked
	// untilClose: the body ends when the application closes (a transfer
	// coding other than chunked last, or neither length nor coding).
	untilClose bool
	// keep: the application keeps the connection open after this
	// response (HTTP/1.1 without Connection: close).
	keep bool
	hop  [][]byte
}

// parseResponseHead parses a response head from the application. It is
// less strict than parseRequestHead about values (the application is
// the operator's) but refuses ambiguous framing, which would let one
// response be read as two.
func parseResponseHead(head []byte, h *respHead) error {
	*h = respHead{fields: h.fields[:0], hop: h.hop[:0], contentLength: -1}
	line, rest, err := nextLine(head)
	if err != nil {
		return err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return fmt.Errorf("status line %q: want HTTP/1.1 NNN reason", truncate(line))
	}
	code, ok := parseDecimal(line[9:12])
	if !ok || code < 100 {
		return fmt.Errorf("status line %q: want a three-digit status", truncate(line))
	}
	h.status, h.statusLine = int(code), line
	h.keep = line[7] == '1'
	var sawCL, sawTE bool
	for {
		if line, rest, err = nextLine(rest); err != nil {
			return err
		}
		if len(line) == 0 {
			break
		}
		f, err := parseField(line)
		if err != nil {
			return err
		}
		switch {
		case bytes.EqualFold(f.name, hContentLength):
			n, ok := parseDecimal(f.value)
			if !ok || (sawCL && n != h.contentLength) {
				return fmt.Errorf("content-length %q: invalid or conflicting", truncate(f.value))
			}
			sawCL, h.contentLength = true, n
		case bytes.EqualFold(f.name, hTransferEncoding):
			sawTE = true
			h.chunked = false
			forEachToken(f.value, func(tok []byte) { h.chunked = bytes.EqualFold(tok, []byte("chunked")) })
			if !h.chunked {
				h.untilClose = true
			}
		case bytes.EqualFold(f.name, hConnection):
			forEachToken(f.value, func(tok []byte) {
				switch {
				case bytes.EqualFold(tok, []byte("close")):
					h.keep = false
				case bytes.EqualFold(tok, []byte("keep-alive")), bytes.EqualFold(tok, []byte("upgrade")):
				default:
					h.hop = append(h.hop, tok)
				}
			})
		}
		h.fields = append(h.fields, f)
	}
	if sawTE {
		// Transfer-Encoding overrides Content-Length (RFC 9112 section
		// 6.3); such a connection is not reused.
		h.contentLength, h.keep = -1, h.keep && !sawCL && h.chunked
	} else if !sawCL {
		h.untilClose = true
	}
	if h.untilClose {
		h.keep = false
	}
	return nil
}

// bodyless reports whether a response to method with status has no body
// whatever its fields say (RFC 9112 section 6.3).
func bodyless(method []byte, status int) bool {
	return string(method) == "HEAD" || status < 200 || status == 204 || status == 304
}

// chunkReader reads a chunked body (RFC 9112 section 7.1) strictly: hex
// sizes, chunk extensions skipped, CRLF line ends, a bound on the data.
type chunkReader struct {
	br      *bufio.Reader
	left    int64 // data left in the current chunk
	total   int64
	max     int64 // bound on total; 0: none
	done    bool
	started bool
}

// errChunkedTooLarge is a chunked body past its bound.
var errChunkedTooLarge = errors.New("chunked body larger than the bound")

// chunkSyntaxError is a chunked body or trailer section that is not
// well formed.
type chunkSyntaxError string

func (e chunkSyntaxError) Error() string { return string(e) }

// next returns the size of the next chunk (0 at the last chunk, after
// which the trailer section follows).
func (cr *chunkReader) next() (int64, error) {
	if cr.started {
		// CRLF after the previous chunk's data.
		b, err := cr.br.Peek(2)
		if err != nil {
			return 0, unexpected(err)
		}
		if b[0] != '\r' || b[1] != '\n' {
			return 0, chunkSyntaxError("chunk data not followed by CRLF")
		}
		_, _ = cr.br.Discard(2)
	}
	cr.started = true
	line, err := cr.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, chunkSyntaxError("chunk size line too long")
		}
		return 0, unexpected(err)
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, chunkSyntaxError("chunk size line: want HEX CRLF")
	}
	line = line[:len(line)-2]
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		for _, c := range line[i:] {
			if (c < 0x20 && c != '\t') || c == 0x7f {
				return 0, chunkSyntaxError("chunk extension: control character")
			}
		}
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return 0, chunkSyntaxError("chunk size: want 1 to 15 hex digits")
	}
	var n int64
	for _, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, chunkSyntaxError("chunk size: want hex digits")
		}
		n = n<<4 | int64(d)
	}
	cr.total += n
	if cr.max > 0 && cr.total > cr.max {
		return 0, errChunkedTooLarge
	}
	cr.left = n
	if n == 0 {
		cr.done = true
	}
	return n, nil
}

// readTrailers reads the trailer section after the last chunk into buf
// (through the empty line), at most max bytes, checking each field line.
func readTrailers(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	buf = buf[:0]
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, chunkSyntaxError("trailer line too long")
			}
			return nil, unexpected(err)
		}
		if len(buf)+len(line) > max {
			return nil, chunkSyntaxError("trailer section too large")
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return nil, chunkSyntaxError("trailer line ends in a bare LF")
		}
		buf = append(buf, line...)
		if len(line) == 2 {
			return buf, nil
		}
		if _, err := parseField(line[:len(line)-2]); err != nil {
			return nil, err
		}
	}
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
