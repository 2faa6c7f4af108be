package agent

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if the agent leaves a goroutine behind after
// Run returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
