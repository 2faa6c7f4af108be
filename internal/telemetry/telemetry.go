// Package telemetry is Signet's OpenTelemetry tracing: a tracer provider
// configured only by the standard OTEL_* environment variables, and the
// instrumentation every listener and the store install from it (otelgrpc
// stats handlers, otelhttp handlers, otelsql).
//
// Tracing is off unless the environment asks for it; off, FromEnv returns a
// Tracing whose Provider is nil, and every helper here returns its input
// unchanged (or no options), so a process without tracing runs exactly the
// code it ran before tracing existed.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// The environment variables that switch tracing on or off. Every other
// OTEL_* variable the OpenTelemetry SDK and its OTLP exporters read
// (OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER,
// OTEL_TRACES_SAMPLER_ARG, OTEL_BSP_*, OTEL_SPAN_*_LIMIT…) applies as
// documented by OpenTelemetry once tracing is on.
const (
	EnvSDKDisabled         = "OTEL_SDK_DISABLED"
	EnvTracesExporter      = "OTEL_TRACES_EXPORTER"
	EnvOTLPEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvOTLPTracesEndpoint  = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvOTLPProtocol        = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvOTLPTracesProtocol  = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	tracesExporterNone     = "none"
	tracesExporterAccepted = "otlp, console or none"
)

// Tracing is the process's tracing. The zero value is tracing off. Close it
// with Shutdown, which flushes spans not yet exported.
type Tracing struct {
	sdk *sdktrace.TracerProvider // nil when off
}

// Enabled reports whether the environment switched tracing on.
func Enabled(getenv func(string) string) (bool, error) {
	if v := strings.TrimSpace(getenv(EnvSDKDisabled)); v != "" {
		off, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("%s=%q: want true or false", EnvSDKDisabled, v)
		}
		if off {
			return false, nil
		}
	}
	switch exp := strings.TrimSpace(getenv(EnvTracesExporter)); exp {
	case tracesExporterNone:
		return false, nil
	case "":
		// The OTel default exporter is otlp; Signet sends nothing unless
		// told where to.
		return getenv(EnvOTLPEndpoint) != "" || getenv(EnvOTLPTracesEndpoint) != "", nil
	case "otlp", "console":
		return true, nil
	default:
		return false, fmt.Errorf("%s=%q: unknown exporter: use %s", EnvTracesExporter, exp, tracesExporterAccepted)
	}
}

// FromEnv configures tracing from the process environment. Tracing is on
// when OTEL_TRACES_EXPORTER names an exporter (otlp, console) or, with it
// unset, when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; OTEL_SDK_DISABLED=true and
// OTEL_TRACES_EXPORTER=none keep it off. service is the service.name used
// when OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) does
// not set one. A bad value is an error naming the variable.
func FromEnv(ctx context.Context, service string) (*Tracing, error) {
	on, err := Enabled(os.Getenv)
	if err != nil || !on {
		return &Tracing{}, err
	}
	exp, err := spanExporter(ctx, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	// Later options win: the environment overrides the default name.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	// The SDK reads OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_* and the span
	// limits itself.
	return &Tracing{sdk: sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))}, nil
}

// spanExporter builds the exporter OTEL_TRACES_EXPORTER names (otlp when
// unset), over the protocol OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
// OTEL_EXPORTER_OTLP_PROTOCOL names (http/protobuf when unset, as
// OpenTelemetry documents). Only the trace exporters are linked: choosing
// them here rather than through the contrib autoexport package keeps its
// metric and log exporters and Prometheus bridge out of every binary.
func spanExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	if strings.TrimSpace(getenv(EnvTracesExporter)) == "console" {
		return stdouttrace.New()
	}
	name, proto := EnvOTLPTracesProtocol, strings.TrimSpace(getenv(EnvOTLPTracesProtocol))
	if proto == "" {
		name, proto = EnvOTLPProtocol, strings.TrimSpace(getenv(EnvOTLPProtocol))
	}
	switch proto {
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	case "grpc":
		return otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("%s=%q: unknown protocol: use grpc or http/protobuf", name, proto)
	}
}

// NewForTest returns tracing that hands every span to exp synchronously (for
// tests and benchmarks that need spans without an environment).
func NewForTest(exp sdktrace.SpanExporter) *Tracing {
	return &Tracing{sdk: sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))}
}

// Provider is the tracer provider, nil when tracing is off (the components'
// configs take nil as "no tracing").
func (t *Tracing) Provider() trace.TracerProvider {
	if t == nil || t.sdk == nil {
		return nil
	}
	return t.sdk
}

// Shutdown flushes pending spans and stops the exporter; a no-op when off.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.sdk == nil {
		return nil
	}
	return t.sdk.Shutdown(ctx)
}

// propagator is the W3C trace context: a caller's span becomes the parent of
// the server's. Baggage is not propagated.
var propagator = propagation.TraceContext{}

// GRPCServerOption returns the option that gives every RPC of a server a
// span (otelgrpc's stats handler), or an option that does nothing when tp
// is nil. Spans carry the method, status code and peer address; never
// message contents or metadata.
func GRPCServerOption(tp trace.TracerProvider) grpc.ServerOption {
	if tp == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(propagator)))
}

// HTTPHandler wraps h so every request gets a span named after its method
// and the ServeMux pattern it matched (listener names the listener when no
// pattern matched), or returns h itself when tp is nil. Spans carry the
// method, route, path, status and client address; never the query, headers
// other than User-Agent, or bodies.
func HTTPHandler(tp trace.TracerProvider, listener string, h http.Handler) http.Handler {
	if tp == nil {
		return h
	}
	return otelhttp.NewHandler(h, listener,
		otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagator))
}
