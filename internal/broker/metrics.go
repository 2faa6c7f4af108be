package broker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signet-id/signet/internal/store"
)

// Metrics are the broker's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	leases    *prometheus.GaugeVec
	oldest    *prometheus.GaugeVec
	requests  *prometheus.CounterVec
	issueTime *prometheus.HistogramVec
}

// NewMetrics registers the broker's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		leases: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signet_broker_leases", Help: "Open leases (pending or active) per credential and state, as of the last sweep.",
		}, []string{"credential", "state"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signet_broker_lease_oldest_age_seconds", Help: "Age of the oldest open lease per credential and state, as of the last sweep.",
		}, []string{"credential", "state"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_broker_requests_total", Help: "Credential requests decided, by credential and decision (allow, deny).",
		}, []string{"credential", "decision"}),
		issueTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "signet_broker_issue_seconds", Help: "Time providers took to issue a credential, by credential and outcome.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"credential", "outcome"}),
	}
	for _, c := range []prometheus.Collector{m.leases, m.oldest, m.requests, m.issueTime} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) request(credential, decision string) {
	if m != nil {
		m.requests.WithLabelValues(credential, decision).Inc()
	}
}

func (m *Metrics) issued(credential string, d time.Duration, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.issueTime.WithLabelValues(credential, outcome).Observe(d.Seconds())
}

func (m *Metrics) setCounts(counts []store.LeaseCount, now time.Time) {
	m.leases.Reset()
	m.oldest.Reset()
	for _, c := range counts {
		m.leases.WithLabelValues(c.Credential, string(c.State)).Set(float64(c.Count))
		m.oldest.WithLabelValues(c.Credential, string(c.State)).Set(now.Sub(c.OldestIssued).Seconds())
	}
}
