package agentcli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/term"
)

// NewLogger builds the process logger. level is parsed by slog
// (debug, info, warn, error, optionally with an offset such as debug-4);
// "" is info. format "" picks text on a terminal and JSON otherwise
// (production: JSON).
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lv, err := parseLogLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format (log.format) %q: use text or json", format)
}

// parseLogLevel parses a log level with slog.Level.UnmarshalText; "" is
// info and "warning" is accepted for warn.
func parseLogLevel(s string) (slog.Level, error) {
	var lv slog.Level
	switch strings.ToLower(s) {
	case "":
		return slog.LevelInfo, nil
	case "warning":
		return slog.LevelWarn, nil
	}
	if err := lv.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level (log.level) %q: use debug, info, warn or error (optionally with an offset, such as debug-4)", s)
	}
	return lv, nil
}
