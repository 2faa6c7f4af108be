package server_test

import (
	"context"
	"log/slog"
	"testing"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
)

// BenchmarkAdminRPC measures admin calls over the real admin socket: one
// answered from memory (GetBundle) and one that reads the store
// (ListJoinTokens). With tracing off (no TracerProvider) it is the baseline
// BenchmarkAdminRPCTraced compares with, and the same code as before
// tracing existed (the file builds on either).
func BenchmarkAdminRPC(b *testing.B) { benchAdminRPC(b) }

func benchAdminRPC(b *testing.B, opts ...testenv.Option) {
	quiet := func(c *server.Config) { c.Logger = slog.New(slog.DiscardHandler) }
	env := testenv.New(b, append([]testenv.Option{quiet}, opts...)...)
	ctx := context.Background()
	b.Run("GetBundle", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := env.Admin.GetBundle(ctx, &adminv1.GetBundleRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ListJoinTokens", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := env.Admin.ListJoinTokens(ctx, &adminv1.ListJoinTokensRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
