package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func encode(t testing.TB, msgs ...pgproto3.FrontendMessage) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestReadStartup(t *testing.T) {
	startup := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "app", "database": "orders", "application_name": "report", "_pq_.x": "1"}}
	after := []byte("Q\x00\x00\x00\x0dSELECT 1\x00")
	for name, tc := range map[string]struct {
		in      []byte
		answers string // what the gateway wrote back
		want    string // the message type returned, or the error
	}{
		"startup":              {encode(t, startup), "", "*pgproto3.StartupMessage"},
		"ssl then startup":     {encode(t, &pgproto3.SSLRequest{}, startup), "N", "*pgproto3.StartupMessage"},
		"gss, ssl, startup":    {encode(t, &pgproto3.GSSEncRequest{}, &pgproto3.SSLRequest{}, startup), "NN", "*pgproto3.StartupMessage"},
		"cancel":               {encode(t, &pgproto3.CancelRequest{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}}), "", "*pgproto3.CancelRequest"},
		"three ssl requests":   {encode(t, &pgproto3.SSLRequest{}, &pgproto3.SSLRequest{}, &pgproto3.SSLRequest{}, startup), "NN", "more than two encryption requests"},
		"length too large":     {binary.BigEndian.AppendUint32(nil, maxStartupLen+1), "", "invalid startup packet length 10001"},
		"length negative":      {binary.BigEndian.AppendUint32(nil, 0xffffffff), "", "invalid startup packet length -1"},
		"protocol 2":           {binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 2<<16), "", "invalid startup packet: unknown startup message code"},
		"no final NUL":         {append(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 13), 3<<16), 'u', 's', 'e', 'r', 0), "", "invalid startup packet"},
		"truncated":            {encode(t, startup)[:20], "", "read startup packet: unexpected EOF"},
		"closed before a byte": {nil, "", "read startup packet: EOF"},
	} {
		t.Run(name, func(t *testing.T) {
			in := bytes.NewReader(nil)
			if tc.in != nil {
				in = bytes.NewReader(append(slices.Clone(tc.in), after...))
			}
			var out bytes.Buffer
			msg, err := readStartup(in, &out)
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = typeName(msg)
			}
			if !strings.Contains(got, tc.want) || out.String() != tc.answers {
				t.Fatalf("readStartup(%q) = %s, wrote %q; want %s, wrote %q", tc.in, got, out.String(), tc.want, tc.answers)
			}
			if err == nil {
				rest, _ := io.ReadAll(in)
				if !bytes.Equal(rest, after) {
					t.Errorf("readStartup consumed bytes after the startup packet: %q left, want %q", rest, after)
				}
			}
			var se *startupError
			if err != nil && strings.HasPrefix(tc.want, "invalid") && !errors.As(err, &se) {
				t.Errorf("readStartup(%q) error %T, want a *startupError for the application", tc.in, err)
			}
		})
	}
	msg, _ := readStartup(bytes.NewReader(encode(t, startup)), io.Discard)
	params, unsupported, repl := startupParams(msg.(*pgproto3.StartupMessage))
	if !maps.Equal(params, map[string]string{"application_name": "report"}) || !slices.Equal(unsupported, []string{"_pq_.x"}) || repl {
		t.Errorf("startupParams = %v, %v, %v; want only application_name forwarded and _pq_.x unsupported", params, unsupported, repl)
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *pgproto3.StartupMessage:
		return "*pgproto3.StartupMessage"
	case *pgproto3.CancelRequest:
		return "*pgproto3.CancelRequest"
	}
	return "unexpected"
}

// FuzzReadStartup feeds raw bytes to the startup handling: it never
// panics, never reads past what it returns or writes more than two
// answers, and a startup message it accepts survives encoding again.
func FuzzReadStartup(f *testing.F) {
	f.Add(encode(f, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u", "database": "d"}}))
	f.Add(encode(f, &pgproto3.SSLRequest{}, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32, Parameters: map[string]string{"user": "u", "replication": "true"}}))
	f.Add(encode(f, &pgproto3.CancelRequest{ProcessID: 1, SecretKey: bytes.Repeat([]byte{9}, 32)}))
	f.Add(encode(f, &pgproto3.GSSEncRequest{}))
	f.Add([]byte{0, 0, 0, 8, 0, 3, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.NewReader(data)
		var out bytes.Buffer
		msg, err := readStartup(in, &out)
		if out.Len() > maxNegotiation || strings.Trim(out.String(), "N") != "" {
			t.Fatalf("wrote %q", out.String())
		}
		if err != nil {
			return
		}
		sm, ok := msg.(*pgproto3.StartupMessage)
		if !ok {
			return
		}
		params, _, _ := startupParams(sm)
		if _, ok := params["user"]; ok {
			t.Fatal("user forwarded upstream")
		}
		b, err := sm.Encode(nil)
		if err != nil {
			return // a NUL in a key cannot be encoded; pgconn refuses it the same way
		}
		again, err := readStartup(bytes.NewReader(b), io.Discard)
		if err != nil || !maps.Equal(again.(*pgproto3.StartupMessage).Parameters, sm.Parameters) {
			t.Fatalf("re-encoded startup message %q: %v", b, err)
		}
	})
}
