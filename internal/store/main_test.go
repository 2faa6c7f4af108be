package store_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a store (or its connection pool) is left
// open by any test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
