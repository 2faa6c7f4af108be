package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"

	"github.com/signet-id/signet/internal/telemetry"
)

func TestEnabled(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    bool
		wantErr string
	}{
		{name: "nothing set", env: nil, want: false},
		{name: "otlp exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: true},
		{name: "console exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "console"}, want: true},
		{name: "none", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, want: false},
		{name: "endpoint only", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, want: true},
		{name: "traces endpoint only", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, want: true},
		{name: "sdk disabled", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, want: false},
		{name: "sdk not disabled", env: map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, want: true},
		{name: "bad sdk disabled", env: map[string]string{"OTEL_SDK_DISABLED": "maybe"}, wantErr: `OTEL_SDK_DISABLED="maybe": want true or false`},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}, wantErr: `OTEL_TRACES_EXPORTER="jaeger": unknown exporter: use otlp, console or none`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := telemetry.Enabled(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Enabled() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Enabled() = %v, %v, want %v", got, err, tt.want)
			}
		})
	}
}

func TestFromEnvOffByDefault(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(k, "")
	}
	tr, err := telemetry.FromEnv(context.Background(), "signet-test")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Provider() != nil {
		t.Fatalf("FromEnv() with no OTEL_* variables: Provider() = %v, want nil (off)", tr.Provider())
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown() of tracing off = %v", err)
	}
	h := http.NewServeMux()
	if got := telemetry.HTTPHandler(nil, "x", h); got != http.Handler(h) {
		t.Errorf("HTTPHandler(nil) wrapped the handler; want it unchanged")
	}
	if _, ok := telemetry.GRPCServerOption(nil).(grpc.EmptyServerOption); !ok {
		t.Errorf("GRPCServerOption(nil) = %T, want grpc.EmptyServerOption", telemetry.GRPCServerOption(nil))
	}
}

func TestFromEnvBadValues(t *testing.T) {
	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
	if _, err := telemetry.FromEnv(context.Background(), "signet-test"); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL") {
		t.Fatalf("FromEnv() with OTEL_EXPORTER_OTLP_PROTOCOL=carrier-pigeon: error = %v, want one naming OTEL_EXPORTER_OTLP_PROTOCOL", err)
	}
}

func TestHTTPHandlerSpanName(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr := telemetry.NewForTest(exp)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, _ *http.Request) {})
	srv := httptest.NewServer(telemetry.HTTPHandler(tr.Provider(), "test", mux))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/things/secret-looking-id?token=abc")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "GET /things/{id}" {
		t.Fatalf("spans = %v, want one named by the route pattern", spans)
	}
	for _, kv := range spans[0].Attributes {
		if strings.Contains(kv.Value.String(), "token=abc") {
			t.Errorf("attribute %s = %q carries the query", kv.Key, kv.Value.String())
		}
	}
}
