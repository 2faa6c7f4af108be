package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's Prometheus collectors.
type metrics struct {
	syncDuration    prometheus.Histogram
	syncErrors      prometheus.Counter
	cachedSVIDs     prometheus.Gauge
	svidsSigned     *prometheus.CounterVec
	agentSVIDExpiry prometheus.Gauge
	watchEvents     prometheus.Counter
	gomaxprocs      prometheus.Gauge
}

// newMetrics creates the collectors and registers them with reg, unless reg
// is nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "signet", Subsystem: "agent", Name: "sync_duration_seconds",
			Help:    "Duration of a sync with the server, including signing the SVIDs it made due.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "signet", Subsystem: "agent", Name: "sync_errors_total",
			Help: "Syncs with the server that failed.",
		}),
		cachedSVIDs: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "signet", Subsystem: "agent", Name: "cached_x509_svids",
			Help: "Workload X509-SVIDs the agent holds.",
		}),
		svidsSigned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "signet", Subsystem: "agent", Name: "svids_signed_total",
			Help: "Workload SVIDs the server signed for this agent, by type (x509, jwt).",
		}, []string{"type"}),
		agentSVIDExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "signet", Subsystem: "agent", Name: "agent_svid_expiry_timestamp_seconds",
			Help: "When the agent's own SVID expires, in Unix seconds.",
		}),
		watchEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "signet", Subsystem: "agent", Name: "watch_events_total",
			Help: "Events the server pushed over the agent's Watch stream.",
		}),
		gomaxprocs: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "signet", Subsystem: "agent", Name: "gomaxprocs",
			Help: "The GOMAXPROCS the agent runs with now: the Go runtime's default while it signs SVIDs, 1 once it has not signed for a while; 0 while keep_gomaxprocs or a GOMAXPROCS environment variable keeps the runtime's setting.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.syncDuration, m.syncErrors, m.cachedSVIDs, m.svidsSigned, m.agentSVIDExpiry, m.watchEvents, m.gomaxprocs} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register agent metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) setCachedSVIDs(n int) { m.cachedSVIDs.Set(float64(n)) }

func (m *metrics) setGOMAXPROCS(n int) { m.gomaxprocs.Set(float64(n)) }

func (m *metrics) setAgentSVIDExpiry(t time.Time) {
	m.agentSVIDExpiry.Set(float64(t.Unix()))
}
