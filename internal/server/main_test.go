package server_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// server, listener and connection the harness starts must stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
