package healthz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "signet_test_gauge", Help: "test"})
	reg.MustRegister(g)
	g.Set(42)
	ready := false
	h := Handler(map[string]Check{
		"store": func(context.Context) error { return nil },
		"sync": func(context.Context) error {
			if !ready {
				return errors.New("not synced yet")
			}
			return nil
		},
	}, reg)

	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	code, body := get("/readyz")
	var got struct {
		Ready  bool
		Checks map[string]string
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if code != http.StatusServiceUnavailable || got.Ready || got.Checks["sync"] != "not synced yet" || got.Checks["store"] != "ok" {
		t.Errorf("/readyz before ready = %d %s", code, body)
	}
	ready = true
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready = %d %s", code, body)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "signet_test_gauge 42") {
		t.Errorf("/metrics = %d, missing the gauge", code)
	}
}

// TestListenLogsBoundAddress binds port 0 and finds the address in the
// log record, the way tests of the built binary find it.
func TestListenLogsBoundAddress(t *testing.T) {
	var logs bytes.Buffer
	s, err := Listen("127.0.0.1:0", Handler(nil, nil), slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	var rec map[string]any
	if err := json.Unmarshal(logs.Bytes(), &rec); err != nil {
		t.Fatalf("log %q: %v", logs.String(), err)
	}
	if rec["msg"] != LogMsgListening || rec[LogKeyAddr] != s.Addr().String() || strings.HasSuffix(s.Addr().String(), ":0") {
		t.Fatalf("Listen logged %v, want msg %q and %s=%s", rec, LogMsgListening, LogKeyAddr, s.Addr())
	}
	resp, err := http.Get("http://" + rec[LogKeyAddr].(string) + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz at the logged address: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz at the logged address = %s, want 200", resp.Status)
	}
}

func TestListenRefusesABoundAddress(t *testing.T) {
	a, err := Listen("127.0.0.1:0", Handler(nil, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if b, err := Listen(a.Addr().String(), Handler(nil, nil), nil); err == nil {
		b.Close()
		t.Fatalf("Listen(%q) on a bound address succeeded", a.Addr())
	} else if !strings.Contains(err.Error(), "health address "+a.Addr().String()) {
		t.Errorf("Listen(%q) = %v, want it to name the health address", a.Addr(), err)
	}
}
