package agentcli

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestParseLogLevel(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want slog.Level
	}{
		{"", slog.LevelInfo}, {"info", slog.LevelInfo}, {"DEBUG", slog.LevelDebug}, {"warn", slog.LevelWarn},
		{"warning", slog.LevelWarn}, {"error", slog.LevelError}, {"debug-4", slog.LevelDebug - 4}, {"info+2", slog.LevelInfo + 2},
	} {
		if got, err := parseLogLevel(tt.in); err != nil || got != tt.want {
			t.Errorf("parseLogLevel(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
	_, err := parseLogLevel("verbose")
	if err == nil || !strings.Contains(err.Error(), "--log-level (log.level)") || !strings.Contains(err.Error(), "debug, info, warn or error") {
		t.Errorf("parseLogLevel(verbose) = %v, want the flag, key and accepted values", err)
	}
	if _, err := NewLogger(io.Discard, "info", "xml"); err == nil || !strings.Contains(err.Error(), "--log-format (log.format)") {
		t.Errorf("NewLogger(format xml) = %v", err)
	}
}
