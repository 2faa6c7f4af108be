package workload

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestLogValueBoundsHint: a hint is caller-chosen (whoever writes entries),
// and SVIDs are logged on every call that skips one, so the log line must
// not carry all of it.
func TestLogValueBoundsHint(t *testing.T) {
	hint := strings.Repeat("h", 1<<20)
	tests := []struct {
		name string
		v    slog.LogValuer
	}{
		{"x509", X509SVID{EntryID: "e1", Hint: hint}},
		{"jwt", JWTSVID{Hint: hint}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			slog.New(slog.NewTextHandler(&buf, nil)).Info("svid", "svid", tt.v)
			if buf.Len() > 1024 {
				t.Errorf("logging an SVID with a %d-byte hint wrote %d bytes, want at most 1024", len(hint), buf.Len())
			}
		})
	}
}
