// Package nodeattesttest is the conformance suite every agent-side node
// attestor passes. Each method's tests call Run with a constructor, exactly
// as production code builds the attestor.
package nodeattesttest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/signet-id/signet/internal/nodeattest"
)

// Run checks the contract of nodeattest.Attestor against attestors made by
// newAttestor: a valid name, the same for every instance; a payload that is non-empty, safe to
// fetch concurrently, honours a cancelled context, and never shows up in
// fmt or log/slog output of the attestor.
func Run(t *testing.T, newAttestor func(t *testing.T) nodeattest.Attestor) {
	t.Helper()
	t.Run("Name", func(t *testing.T) {
		a := newAttestor(t)
		if err := nodeattest.ValidName(a.Name()); err != nil {
			t.Fatalf("Name() = %q: %v", a.Name(), err)
		}
		if b := newAttestor(t); b.Name() != a.Name() {
			t.Fatalf("Name() = %q then %q: not stable across instances", a.Name(), b.Name())
		}
	})
	t.Run("Payload", func(t *testing.T) {
		a := newAttestor(t)
		p, err := a.Payload(context.Background())
		if err != nil {
			t.Fatalf("Payload() error = %v", err)
		}
		if len(p) == 0 {
			t.Fatalf("Payload() is empty")
		}
	})
	t.Run("PayloadConcurrent", func(t *testing.T) {
		a := newAttestor(t)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				if _, err := a.Payload(context.Background()); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent Payload() error = %v", err)
		}
	})
	t.Run("PayloadCancelled", func(t *testing.T) {
		a := newAttestor(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := a.Payload(ctx); err == nil {
			t.Errorf("Payload(cancelled ctx) error = nil, want an error")
		}
	})
	t.Run("NoSecretInOutput", func(t *testing.T) {
		a := newAttestor(t)
		p, err := a.Payload(context.Background())
		if err != nil {
			t.Fatalf("Payload() error = %v", err)
		}
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("attestor", "a", a)
		slog.New(slog.NewTextHandler(&buf, nil)).Info("attestor", "a", a)
		fmt.Fprintf(&buf, "%v %+v %#v %s", a, a, a, a)
		if bytes.Contains(buf.Bytes(), p) {
			t.Errorf("attestor output contains its payload: %s", buf.String())
		}
	})
}
