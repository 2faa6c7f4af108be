package main

import (
	"io"
	"log/slog"

	"github.com/signet-id/signet/internal/agentcli"
)

// newLogger builds the process logger (agentcli.NewLogger).
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	return agentcli.NewLogger(w, level, format)
}
