package store

import (
	"context"
	"database/sql/driver"
	"errors"

	"github.com/XSAM/otelsql"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the store's spans.
const tracerName = "github.com/signet-id/signet/internal/store"

// The write transaction's span: one name, the operation (with the IDs it
// names, never secrets: join tokens appear as a hash prefix, broker secrets
// by name) as an attribute.
const (
	spanUpdate    = "store update"
	attrOperation = attribute.Key("signet.store.operation")
)

// sqlTracing is the otelsql configuration of a traced database handle: a
// span per statement, transaction and commit, with the statement text (its
// '?'/'$n' placeholders, never the bound values); no spans per row or per
// session reset, which would only add noise. Statements run outside any
// span (the change-feed poll, housekeeping) get none: store spans are the
// children of an RPC, a request or a write transaction.
func sqlTracing(tp trace.TracerProvider, system attribute.KeyValue) []otelsql.Option {
	return []otelsql.Option{
		otelsql.WithTracerProvider(tp),
		otelsql.WithAttributes(system),
		otelsql.WithSpanOptions(otelsql.SpanOptions{OmitConnResetSession: true, OmitRows: true, SpanFilter: hasParent}),
	}
}

// endSpan ends span, recording err (its text only: store errors carry no
// secrets, and the kind stays on the caller's side). errRollback is not an
// error.
func endSpan(span trace.Span, err error) {
	if err != nil && !errors.Is(err, errRollback) {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// hasParent reports whether ctx carries a span for a statement's span to
// belong to.
func hasParent(ctx context.Context, _ otelsql.Method, _ string, _ []driver.NamedValue) bool {
	return trace.SpanContextFromContext(ctx).IsValid()
}

// spanOf returns the span in ctx when traced is set, else nil.
func spanOf(ctx context.Context, traced bool) trace.Span {
	if !traced {
		return nil
	}
	return trace.SpanFromContext(ctx)
}
