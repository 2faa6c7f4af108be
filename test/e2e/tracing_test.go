package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/signet-id/signet/internal/testenv"
)

// otlpReceiver is an OTLP/HTTP trace receiver: it decodes each
// ExportTraceServiceRequest (protobuf) posted to /v1/traces and keeps its
// spans with their service name, and the raw bodies for the secrets check.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []receivedSpan
	raw   [][]byte
}

type receivedSpan struct {
	service string
	span    *tracepb.Span
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/traces application/x-protobuf", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var er coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &er); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.raw = append(r.raw, body)
	for _, rs := range er.ResourceSpans {
		svc := attr(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				r.spans = append(r.spans, receivedSpan{service: svc, span: sp})
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// find returns the spans of service that match.
func (r *otlpReceiver) find(service string, match func(*tracepb.Span) bool) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if s.service == service && match(s.span) {
			out = append(out, s.span)
		}
	}
	return out
}

// wait polls until find returns a span.
func (r *otlpReceiver) wait(t *testing.T, service, what string, match func(*tracepb.Span) bool) *tracepb.Span {
	t.Helper()
	var got []*tracepb.Span
	err := testenv.Poll(20*time.Second, func() error {
		if got = r.find(service, match); len(got) == 0 {
			return fmt.Errorf("no span yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("span %s of %s: none after 20s; received:\n%s", what, service, r.dump())
	}
	return got[0]
}

// dump lists the spans received, for failure reports.
func (r *otlpReceiver) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, s := range r.spans {
		fmt.Fprintf(&b, "  %s %q span=%x parent=%x %v\n", s.service, s.span.Name, s.span.SpanId, s.span.ParentSpanId, s.span.Attributes)
	}
	return b.String()
}

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			switch v := kv.Value.Value.(type) {
			case *commonpb.AnyValue_StringValue:
				return v.StringValue
			case *commonpb.AnyValue_IntValue:
				return fmt.Sprint(v.IntValue)
			}
		}
	}
	return ""
}

func named(name string) func(*tracepb.Span) bool {
	return func(s *tracepb.Span) bool { return s.Name == name }
}

func childOf(p *tracepb.Span, match func(*tracepb.Span) bool) func(*tracepb.Span) bool {
	return func(s *tracepb.Span) bool {
		return bytes.Equal(s.TraceId, p.TraceId) && bytes.Equal(s.ParentSpanId, p.SpanId) && match(s)
	}
}

// startEnv starts a long-running signet process with env added to the
// test's environment.
func startEnv(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(signetBin, args...), out: &testenv.LogBuffer{}}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, p.out.String())
		}
	})
	return p
}

// TestTracing runs a server and an agent with tracing switched on only by
// the OTEL_* environment, exporting OTLP/HTTP to a receiver in the test, and
// checks that an admin RPC, its store write and the SQL under it, HTTP
// requests (health, token endpoint) and a Workload API call arrive as spans
// with their parent/child links, and that no secret (join token, subject
// token, a query parameter, an Authorization header) is in any of them.
func TestTracing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	recv := &otlpReceiver{}
	rs := httptest.NewServer(recv)
	t.Cleanup(rs.Close)
	env := func(service string) []string {
		return []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + rs.URL, "OTEL_SERVICE_NAME=" + service, "OTEL_BSP_SCHEDULE_DELAY=100"}
	}

	dir := t.TempDir()
	serverDir := filepath.Join(dir, "server")
	adminSock := filepath.Join(serverDir, "admin.sock")
	server := startEnv(t, "server", env("e2e-server"), "server", "run", "--trust-domain", "example.org", "--data-dir", serverDir,
		"--bind-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--health-address", "127.0.0.1:0",
		"--log-format", "text")
	agentAPI, httpsAddr := serverAddrs(t, server)
	health := healthAddr(t, server)
	bundlePath := filepath.Join(dir, "bundle.pem")
	writeFile(t, bundlePath, signet(t, "bundle", "show", "--admin-socket", adminSock))
	if !strings.Contains(server.out.String(), "tracing on") {
		t.Errorf("server did not log that tracing is on")
	}

	// gRPC → store → SQL.
	nodeID := "spiffe://example.org/node/traced"
	joinToken := strings.TrimSpace(signet(t, "token", "create", "--admin-socket", adminSock, "--spiffe-id", nodeID))
	rpc := recv.wait(t, "e2e-server", "CreateJoinToken", named("signet.admin.v1.Admin/CreateJoinToken"))
	if rpc.Kind != tracepb.Span_SPAN_KIND_SERVER || attr(rpc.Attributes, "rpc.system.name")+attr(rpc.Attributes, "rpc.system") != "grpc" {
		t.Errorf("CreateJoinToken span: kind %v, attributes %v; want a gRPC server span", rpc.Kind, rpc.Attributes)
	}
	write := recv.wait(t, "e2e-server", "store write under the RPC", childOf(rpc, named("store update")))
	if op := attr(write.Attributes, "signet.store.operation"); !strings.HasPrefix(op, "create join token ") {
		t.Errorf("store span operation = %q, want create join token …", op)
	}
	stmt := recv.wait(t, "e2e-server", "SQL under the store write", childOf(write, func(s *tracepb.Span) bool {
		return strings.Contains(attr(s.Attributes, "db.query.text")+attr(s.Attributes, "db.statement"), "join_tokens")
	}))
	if sys := attr(stmt.Attributes, "db.system.name") + attr(stmt.Attributes, "db.system"); sys != "sqlite" {
		t.Errorf("SQL span db system = %q, want sqlite", sys)
	}

	// HTTP: health, and the token endpoint with secrets in the body, the
	// query and a header.
	resp, err := http.Get("http://" + health + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	hs := recv.wait(t, "e2e-server", "GET /healthz", named("GET /healthz"))
	if hs.Kind != tracepb.Span_SPAN_KIND_SERVER || attr(hs.Attributes, "http.response.status_code") != "200" {
		t.Errorf("health span: kind %v, attributes %v", hs.Kind, hs.Attributes)
	}
	const subjectSecret, querySecret, headerSecret = "subject-token-secret-7f3a9c", "query-secret-5b2e81", "header-secret-c49d07"
	b, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString("example.org"), bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsconfig.TLSClientConfig(b, tlsconfig.AuthorizeAny())}, Timeout: 10 * time.Second}
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {subjectSecret},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "requested_token_type": {"urn:ietf:params:oauth:token-type:jwt"}}
	req, _ := http.NewRequest(http.MethodPost, "https://"+httpsAddr+"/oauth2/token?token="+querySecret, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+headerSecret)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ts := recv.wait(t, "e2e-server", "POST /oauth2/token", named("POST /oauth2/token"))
	if got := attr(ts.Attributes, "http.response.status_code"); got != fmt.Sprint(resp.StatusCode) {
		t.Errorf("token endpoint span status = %q, want %d", got, resp.StatusCode)
	}

	// The agent: attestation with the join token, then a Workload API call.
	socket := filepath.Join(dir, "agent.sock")
	startEnv(t, "agent", env("e2e-agent"), "agent", "run", "--server-address", agentAPI, "--trust-bundle", bundlePath,
		"--socket", socket, "--data-dir", filepath.Join(dir, "agent"), "--join-token", joinToken, "--log-format", "text")
	recv.wait(t, "e2e-server", "AttestAgent", named("signet.agent.v1.Agent/AttestAgent"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// No entry matches this caller: the call fails, and is traced all the
	// same. Called until one reached the agent (its socket appears once it
	// has attested).
	eventually(t, 30*time.Second, "a traced Workload API call", func() error {
		bctx, bcancel := context.WithTimeout(ctx, time.Second)
		_, _ = client.FetchX509Bundles(bctx)
		bcancel()
		if len(recv.find("e2e-agent", named("SpiffeWorkloadAPI/FetchX509Bundles"))) == 0 {
			return fmt.Errorf("no FetchX509Bundles span yet")
		}
		return nil
	})
	recv.wait(t, "e2e-agent", "FetchX509Bundles", named("SpiffeWorkloadAPI/FetchX509Bundles"))

	// No secret anywhere in what was exported.
	recv.mu.Lock()
	defer recv.mu.Unlock()
	for i, body := range recv.raw {
		for _, secret := range []string{joinToken, subjectSecret, querySecret, headerSecret} {
			if bytes.Contains(body, []byte(secret)) {
				t.Errorf("export %d contains a secret (%s…)", i, secret[:6])
			}
		}
	}
	var names []string
	for _, s := range recv.spans {
		names = append(names, s.service+":"+s.span.Name)
	}
	t.Logf("%d spans: %s", len(recv.spans), strings.Join(names, ", "))
}
