package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParseRequestHead feeds arbitrary bytes through readHead and
// parseRequestHead: neither panics, and a head that is accepted has one
// unambiguous framing, token names, values without CR, LF or NUL, a
// Content-Length within the bound and a target that is a path (or *).
func FuzzParseRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"\r\nGET /x?y=1 HTTP/1.0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, x-b\r\nX-B: 1\r\nExpect: 100-continue\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		head, err := readHead(bufio.NewReaderSize(bytes.NewReader(in), 64), nil, 4096)
		if err != nil {
			return
		}
		var h reqHead
		if err := parseRequestHead(head, &h, 1000); err != nil {
			var he *headError
			if !errors.As(err, &he) || he.status < 400 || he.status > 505 || he.msg == "" {
				t.Fatalf("parseRequestHead(%q) = %v, want a *headError with a 4xx/5xx status", head, err)
			}
			return
		}
		if h.chunked && h.contentLength >= 0 {
			t.Fatalf("parseRequestHead(%q): both chunked and Content-Length %d", head, h.contentLength)
		}
		if h.contentLength > 1000 {
			t.Fatalf("parseRequestHead(%q): Content-Length %d over the bound", head, h.contentLength)
		}
		if h.target[0] != '/' && string(h.target) != "*" {
			t.Fatalf("parseRequestHead(%q): target %q", head, h.target)
		}
		if h.minor == 1 && !h.hasHost {
			t.Fatalf("parseRequestHead(%q): HTTP/1.1 without Host", head)
		}
		for _, fl := range h.fields {
			for _, c := range fl.name {
				if !tchar(c) {
					t.Fatalf("parseRequestHead(%q): field name %q", head, fl.name)
				}
			}
			if bytes.ContainsAny(fl.value, "\r\n\x00") {
				t.Fatalf("parseRequestHead(%q): field value %q", head, fl.value)
			}
		}
	})
}

// FuzzChunkReader feeds arbitrary bytes to the chunked-body reader: it
// never panics and never reads past its bound.
func FuzzChunkReader(f *testing.F) {
	for _, s := range []string{"3\r\nabc\r\n0\r\n\r\n", "1;x=y\r\na\r\n0\r\nT: 1\r\n\r\n", "fffffffffffffff\r\n", "3\nabc\n0\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 64)
		cr := chunkReader{br: br, max: 100}
		for range 1000 {
			n, err := cr.next()
			if err != nil {
				return
			}
			if cr.total > 100 {
				t.Fatalf("read %d bytes past the bound of 100", cr.total)
			}
			if n == 0 {
				_, _ = readTrailers(br, nil, 256)
				return
			}
			if _, err := br.Discard(int(n)); err != nil {
				return
			}
		}
	})
}

func TestParseResponseHead(t *testing.T) {
	for name, tc := range map[string]struct {
		in         string
		keep, err  bool
		untilClose bool
		length     int64
	}{
		"length":             {in: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", keep: true, length: 3},
		"chunked":            {in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", keep: true, length: -1},
		"close":              {in: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n", length: 3},
		"1.0":                {in: "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", length: 3},
		"no length":          {in: "HTTP/1.1 200 OK\r\n\r\n", untilClose: true, length: -1},
		"conflicting length": {in: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", err: true},
		"both":               {in: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", length: -1},
		"gzip last":          {in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", untilClose: true, length: -1},
		"bad status":         {in: "HTTP/1.1 2x0 OK\r\n\r\n", err: true},
		"no reason":          {in: "HTTP/1.1 200\r\n\r\n", untilClose: true, length: -1},
	} {
		var h respHead
		err := parseResponseHead([]byte(tc.in), &h)
		if (err != nil) != tc.err {
			t.Errorf("%s: parseResponseHead(%q) = %v, want error %v", name, tc.in, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if h.keep != tc.keep || h.untilClose != tc.untilClose || h.contentLength != tc.length {
			t.Errorf("%s: parseResponseHead(%q) = keep %v untilClose %v length %d, want %v %v %d",
				name, strings.TrimSpace(tc.in), h.keep, h.untilClose, h.contentLength, tc.keep, tc.untilClose, tc.length)
		}
	}
}
