package telemetry_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signet-id/signet/internal/agent"
	"github.com/signet-id/signet/internal/broker"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite docs/metrics.md from the registries")

const (
	catalogueFile = "../../docs/metrics.md"
	dashboardFile = "../../deploy/grafana/signet-dashboard.json"
)

// recorder is a Registerer that keeps every collector registered with it.
type recorder struct {
	reg        *prometheus.Registry
	collectors []prometheus.Collector
}

func newRecorder() *recorder { return &recorder{reg: prometheus.NewRegistry()} }

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

// metricInfo is one registered metric as the catalogue lists it.
type metricInfo struct {
	Name, Type, Help, Process string
	Labels                    []string
}

var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", help: "((?:[^"\\]|\\.)*)",(?: unit: "[^"]*",)? constLabels: \{[^}]*\}, variableLabels: \{([^}]*)\}\}$`)

// metrics lists what the recorder's collectors describe, with their type.
func (r *recorder) metrics(t *testing.T, process string) []metricInfo {
	t.Helper()
	var out []metricInfo
	for _, c := range r.collectors {
		typ := collectorType(c)
		if typ == "" {
			t.Fatalf("collector %T: unknown metric type; teach collectorType about it", c)
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := descRE.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read descriptor %s", d)
			}
			var labels []string
			if m[3] != "" {
				labels = strings.Split(m[3], ",")
			}
			out = append(out, metricInfo{Name: m[1], Type: typ, Help: strings.ReplaceAll(m[2], `\"`, `"`), Labels: labels, Process: process})
		}
	}
	return out
}

// collectorType is the Prometheus type of the collectors Signet registers.
// Gauge is checked before Counter: a Gauge has every Counter method. A
// plain Summary would read as a histogram (same methods); Signet registers
// none.
func collectorType(c prometheus.Collector) string {
	switch c.(type) {
	case *prometheus.CounterVec:
		return "counter"
	case *prometheus.GaugeVec:
		return "gauge"
	case *prometheus.HistogramVec:
		return "histogram"
	case *prometheus.SummaryVec:
		return "summary"
	case prometheus.Gauge:
		return "gauge"
	case prometheus.Counter:
		return "counter"
	case prometheus.Histogram: // a Summary has the same methods: none is registered
		return "histogram"
	}
	return ""
}

// registered starts a real server (with the broker's metrics, which a
// server with a broker section registers on the same registry) and a real
// agent with its Workload API, and returns every metric they registered.
func registered(t *testing.T) []metricInfo {
	t.Helper()
	srv, agt := newRecorder(), newRecorder()
	env := testenv.New(t, func(c *server.Config) { c.Registerer = srv })
	if _, err := broker.NewMetrics(srv); err != nil {
		t.Fatal(err)
	}
	a := env.StartAgent("spiffe://example.org/node/metrics", func(c *agent.Config) { c.Registerer = agt })
	a.AwaitReady()
	all := append(srv.metrics(t, "server"), agt.metrics(t, "agent")...)
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	for i := 1; i < len(all); i++ {
		if all[i].Name == all[i-1].Name {
			t.Fatalf("metric %s registered twice", all[i].Name)
		}
	}
	return all
}

// catalogue renders docs/metrics.md.
func catalogue(ms []metricInfo) []byte {
	var b bytes.Buffer
	b.WriteString(`# Metrics

Every Prometheus metric the server and the agent export on ` + "`/metrics`" + ` of their ` + "`health_address`" + `.
This page is generated from the registries of a real server and agent
(` + "`go test ./internal/telemetry -run TestMetricsCatalogue -update`" + `); the test fails when a registered
metric is missing here, or listed here and no longer registered. The Grafana dashboard
` + "`deploy/grafana/signet-dashboard.json`" + ` only queries metrics of this page (tested too).

Histograms also export ` + "`_bucket`" + `, ` + "`_sum`" + ` and ` + "`_count`" + ` series. Label values are bounded:
methods outside a listener's method table are counted under one label, OAuth codes and results are
fixed sets. The ` + "`signet_broker_*`" + ` metrics exist on a server with a ` + "`broker`" + ` section only.

| metric | type | labels | process | meaning |
|---|---|---|---|---|
`)
	for _, m := range ms {
		labels := "—"
		if len(m.Labels) > 0 {
			labels = "`" + strings.Join(m.Labels, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", m.Name, m.Type, labels, m.Process, strings.ReplaceAll(m.Help, "|", `\|`))
	}
	b.WriteString(`
Tracing (OpenTelemetry spans, configured by the ` + "`OTEL_*`" + ` environment) is described in
[architecture.md](architecture.md#tracing).
`)
	return b.Bytes()
}

func TestMetricsCatalogue(t *testing.T) {
	want := catalogue(registered(t))
	if *update {
		if err := os.WriteFile(catalogueFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(catalogueFile)
	if err != nil {
		t.Fatalf("read %s: %v (generate it with -update)", catalogueFile, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of date with the registered metrics; run go test ./internal/telemetry -run TestMetricsCatalogue -update\n--- want ---\n%s", catalogueFile, want)
	}
}

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"` // collapsed rows
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func TestDashboardQueriesExistingMetrics(t *testing.T) {
	known := map[string]string{}
	for _, m := range registered(t) {
		known[m.Name] = m.Type
	}
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title %q, uid %q: want both", d.Title, d.UID)
	}
	var panels []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			panels = append(panels, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	queried := map[string]bool{}
	for _, p := range panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names, err := promqlMetrics(tg.Expr)
			if err != nil {
				t.Errorf("panel %q: %v", p.Title, err)
				continue
			}
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				base, typ := n, known[n]
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if typ == "" && strings.HasSuffix(n, suf) {
						base = strings.TrimSuffix(n, suf)
						if typ = known[base]; typ != "histogram" && typ != "summary" || (suf == "_bucket" && typ != "histogram") {
							typ = ""
						}
					}
				}
				if typ == "" {
					t.Errorf("panel %q: query %q uses %s, which neither the server nor the agent registers", p.Title, tg.Expr, n)
				}
				queried[base] = true
			}
		}
	}
	if len(queried) == 0 {
		t.Fatal("the dashboard queries no metric")
	}
}

var (
	promString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promBraces = regexp.MustCompile(`\{[^{}]*\}`)
	promRange  = regexp.MustCompile(`\[[^\]]*\]`)
	promGroup  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent  = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
	promWords  = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true, "group_left": true, "group_right": true}
)

// promqlMetrics returns the metric names a PromQL expression selects: its
// identifiers that are not functions, keywords, label names or literals.
func promqlMetrics(expr string) ([]string, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, fmt.Errorf("empty query")
	}
	e := promString.ReplaceAllString(expr, `""`)
	e = promBraces.ReplaceAllString(e, "")
	e = promRange.ReplaceAllString(e, "")
	e = promGroup.ReplaceAllString(e, "")
	if strings.ContainsAny(e, "{}[]") {
		return nil, fmt.Errorf("query %q: unbalanced braces or brackets", expr)
	}
	var names []string
	for _, m := range promIdent.FindAllStringSubmatch(e, -1) {
		id := strings.TrimSpace(strings.TrimSuffix(m[0], "("))
		if m[1] != "" || promWords[strings.ToLower(id)] || strings.HasPrefix(id, "$") {
			continue // a function call, a keyword
		}
		names = append(names, id)
	}
	return names, nil
}

func TestPromQLMetrics(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`sum by (method, code) (rate(signet_server_rpcs_total{code!="OK"}[5m]))`, []string{"signet_server_rpcs_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(signet_agent_sync_duration_seconds_bucket[$__rate_interval])))`, []string{"signet_agent_sync_duration_seconds_bucket"}},
		{`signet_agent_agent_svid_expiry_timestamp_seconds - time()`, []string{"signet_agent_agent_svid_expiry_timestamp_seconds"}},
		{`rate(a_total[5m]) / on (instance) group_left rate(b_total{x="by (y)"}[5m]) > bool 0`, []string{"a_total", "b_total"}},
	}
	for _, tt := range tests {
		got, err := promqlMetrics(tt.expr)
		if err != nil || strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("promqlMetrics(%q) = %v, %v, want %v", tt.expr, got, err, tt.want)
		}
	}
}
