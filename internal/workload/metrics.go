package workload

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// metrics are the server's Prometheus metrics. A nil *metrics records
// nothing.
type metrics struct {
	rpcs    *prometheus.CounterVec
	streams *prometheus.GaugeVec

	// byMethod holds each method's children of rpcs and streams, looked up
	// once per RPC (method) instead of hashing label values on every
	// update as WithLabelValues does.
	byMethod sync.Map // method → *methodMetrics
}

// methodMetrics are one method's metric children. A nil *methodMetrics
// records nothing.
type methodMetrics struct {
	m      *metrics
	method string
	stream prometheus.Gauge
	// byCode holds the rpcs counter of each status code seen so far:
	// children are created on first use, so that /metrics shows only the
	// codes that occurred, as WithLabelValues did.
	byCode [maxCode + 1]atomic.Pointer[prometheus.Counter]
}

// maxCode is the largest gRPC status code (Unauthenticated).
const maxCode = codes.Unauthenticated

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

// forMethod returns method's metric children; nil when m is nil.
func (m *metrics) forMethod(method string) *methodMetrics {
	if m == nil {
		return nil
	}
	if mm, ok := m.byMethod.Load(method); ok {
		return mm.(*methodMetrics)
	}
	mm, _ := m.byMethod.LoadOrStore(method, &methodMetrics{m: m, method: method, stream: m.streams.WithLabelValues(method)})
	return mm.(*methodMetrics)
}

// rpcDone counts a finished RPC with its status code.
func (mm *methodMetrics) rpcDone(code codes.Code) {
	if mm == nil {
		return
	}
	if code > maxCode { // not a code gRPC defines: not kept per code
		mm.m.rpcs.WithLabelValues(mm.method, code.String()).Inc()
		return
	}
	c := mm.byCode[code].Load()
	if c == nil {
		child := mm.m.rpcs.WithLabelValues(mm.method, code.String())
		mm.byCode[code].CompareAndSwap(nil, &child)
		c = mm.byCode[code].Load()
	}
	(*c).Inc()
}

func (mm *methodMetrics) streamStarted() {
	if mm != nil {
		mm.stream.Inc()
	}
}

func (mm *methodMetrics) streamEnded() {
	if mm != nil {
		mm.stream.Dec()
	}
}
