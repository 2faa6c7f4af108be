package workload

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// metrics are the server's Prometheus metrics. A nil *metrics records
// nothing.
type metrics struct {
	rpcs    *prometheus.CounterVec
	streams *prometheus.GaugeVec

	// The children of rpcs and streams by label values, looked up once:
	// WithLabelValues hashes the label values on every call.
	rpcsBy    sync.Map // rpcLabels → prometheus.Counter
	streamsBy sync.Map // method → prometheus.Gauge
}

type rpcLabels struct {
	method string
	code   codes.Code
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "signet",
			Subsystem: "workload_api",
			Name:      "rpcs_total",
			Help:      "Workload API RPCs finished, by method and gRPC status code.",
		}, []string{"method", "code"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "signet",
			Subsystem: "workload_api",
			Name:      "active_streams",
			Help:      "Workload API streams open now, by method.",
		}, []string{"method"}),
	}
	cs := []prometheus.Collector{m.rpcs, m.streams}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) rpcDone(method string, code codes.Code) {
	if m != nil {
		k := rpcLabels{method, code}
		c, ok := m.rpcsBy.Load(k)
		if !ok {
			c, _ = m.rpcsBy.LoadOrStore(k, m.rpcs.WithLabelValues(method, code.String()))
		}
		c.(prometheus.Counter).Inc()
	}
}

func (m *metrics) streamStarted(method string) {
	if m != nil {
		m.stream(method).Inc()
	}
}

func (m *metrics) streamEnded(method string) {
	if m != nil {
		m.stream(method).Dec()
	}
}

func (m *metrics) stream(method string) prometheus.Gauge {
	g, ok := m.streamsBy.Load(method)
	if !ok {
		g, _ = m.streamsBy.LoadOrStore(method, m.streams.WithLabelValues(method))
	}
	return g.(prometheus.Gauge)
}
