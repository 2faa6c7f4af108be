//go:build !linux

package agent

import (
	"errors"
	"log/slog"

	"github.com/signet-id/signet/internal/workloadattest"
)

// defaultAttestors fails: no built-in workload attestor supports this
// platform, so Config.Attestors must name one.
func defaultAttestors(*slog.Logger) ([]workloadattest.Attestor, error) {
	return nil, errors.New("Attestors: required on this platform (the unix attestor needs Linux)")
}
