package healthz

import (
	"context"
	"encoding/json"
	"errors"
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
