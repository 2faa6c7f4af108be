package tpm_test

import (
	"context"

	"github.com/signet-id/signet/internal/nodeattest"
)

// challenger answers challenges with an attestor's Responder.
type challenger struct{ a nodeattest.Responder }

func (c challenger) Challenge(ctx context.Context, ch []byte) ([]byte, error) {
	return c.a.Respond(ctx, ch)
}
