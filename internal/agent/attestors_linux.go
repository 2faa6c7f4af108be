//go:build linux

package agent

import (
	"log/slog"

	"github.com/signet-id/signet/internal/workloadattest"
	"github.com/signet-id/signet/internal/workloadattest/unix"
)

// defaultAttestors returns the workload attestors used when Config names
// none: the unix attestor with its default configuration.
func defaultAttestors(log *slog.Logger) ([]workloadattest.Attestor, error) {
	u, err := unix.New(unix.DefaultConfig(), log)
	if err != nil {
		return nil, err
	}
	return []workloadattest.Attestor{u}, nil
}
