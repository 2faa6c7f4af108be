// Package htmlreport renders a coverage report as one self-contained HTML
// file a security team can send around: inline CSS, the chart as inline
// SVG, no scripts and no external requests. It shows only what `signet
// coverage` and `signet scan` print — counts, rule names, redacted
// previews and paths — never a secret. Text is escaped by html/template.
package htmlreport

import (
	"fmt"
	"html/template"
	"io"
	"strconv"
)

// Group is one row of the report: an environment or owner.
type Group struct {
	Key                                                     string
	Workloads, SPIFFEActive, Brokered, StaticOpen, Replaced int64
	// Percentages; nil when undefined.
	CoveredPercent, SPIFFEPercent, ReplacedPercent *float64
	// Change since the previous report; nil when there is none.
	DeltaCovered    *float64
	DeltaStaticOpen *int64
}

// PlanItem is one step of the migration plan.
type PlanItem struct {
	ID, RuleID, Kind, Preview, Path string
	MoreLocations                   int
	Environment, Owner              string
	Risk                            int
	Suggestion                      string
	// Linked names the credential linked to the finding, when one is.
	Linked string
}

// Report is what Render draws.
type Report struct {
	Title             string // default "Signet coverage report"
	By                string // environment, owner, path
	CreatedAt         string
	ActiveWithin      string
	PreviousCreatedAt string // empty for a first report
	Groups            []Group
	Total             Group
	Plan              []PlanItem
}

// Chart geometry, in SVG user units.
const (
	chartWidth  = 720
	labelWidth  = 160
	barHeight   = 22
	barGap      = 10
	chartMargin = 30
)

// bar is one stacked bar of the chart: short-lived (SPIFFE + brokered),
// static open and static replaced, each as a width.
type bar struct {
	Label                    string
	Y                        int
	ShortW, OpenW, ReplacedW float64
	OpenX, ReplacedX         float64
	Short, Open, Replaced    int64
	TextY                    int
}

func bars(groups []Group) ([]bar, int) {
	var maxTotal int64
	for _, g := range groups {
		maxTotal = max(maxTotal, g.SPIFFEActive+g.Brokered+g.StaticOpen+g.Replaced)
	}
	scale := 0.0
	if maxTotal > 0 {
		scale = float64(chartWidth-labelWidth-chartMargin) / float64(maxTotal)
	}
	out := make([]bar, len(groups))
	for i, g := range groups {
		b := bar{Label: g.Key, Y: chartMargin + i*(barHeight+barGap), Short: g.SPIFFEActive + g.Brokered, Open: g.StaticOpen, Replaced: g.Replaced}
		b.ShortW, b.OpenW, b.ReplacedW = float64(b.Short)*scale, float64(b.Open)*scale, float64(b.Replaced)*scale
		b.OpenX = labelWidth + b.ShortW
		b.ReplacedX = b.OpenX + b.OpenW
		b.TextY = b.Y + barHeight/2 + 5
		out[i] = b
	}
	return out, chartMargin*2 + len(groups)*(barHeight+barGap)
}

var funcs = template.FuncMap{
	"pct": func(p *float64) string {
		if p == nil {
			return "–"
		}
		return strconv.FormatFloat(*p, 'f', 1, 64) + "%"
	},
	"points": func(p *float64) string {
		if p == nil {
			return "–"
		}
		return fmt.Sprintf("%+.1f pt", *p)
	},
	"signed": func(n *int64) string {
		if n == nil {
			return "–"
		}
		return fmt.Sprintf("%+d", *n)
	},
	"num": func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"inc": func(i int) int { return i + 1 },
}

var page = template.Must(template.New("report").Funcs(funcs).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; color: #1d2430; margin: 2em auto; max-width: 980px; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 2em; }
.meta { color: #5b6575; }
table { border-collapse: collapse; width: 100%; margin-top: .5em; }
th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid #dde2ea; vertical-align: top; }
th { background: #f2f4f8; font-weight: 600; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; border-top: 2px solid #1d2430; }
.risk { font-weight: 600; } code { font-size: .92em; background: #f2f4f8; padding: 0 .25em; }
.legend span { display: inline-block; margin-right: 1.2em; } .sw { width: .9em; height: .9em; display: inline-block; vertical-align: -1px; margin-right: .3em; }
.short { fill: #2f8f5b; background: #2f8f5b; } .open { fill: #c8463d; background: #c8463d; } .replaced { fill: #6b8fd6; background: #6b8fd6; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="meta">By {{.By}} · {{.CreatedAt}} · covered: SVID issued within {{.ActiveWithin}}, or a brokered credential in use{{if .PreviousCreatedAt}} · change since the report of {{.PreviousCreatedAt}}{{else}} · first report of this view{{end}}</p>

<h2>Short-lived and static credentials per {{.By}}</h2>
<p class="legend"><span><i class="sw short"></i>short-lived (SPIFFE identities and brokered credentials)</span><span><i class="sw open"></i>static, open</span><span><i class="sw replaced"></i>static, replaced</span></p>
<svg id="coverage-chart" width="{{.ChartWidth}}" height="{{.ChartHeight}}" viewBox="0 0 {{.ChartWidth}} {{.ChartHeight}}" role="img" aria-label="coverage per {{.By}}">
{{- range .Bars}}
<g class="bar">
<text x="0" y="{{.TextY}}" font-size="13">{{.Label}}</text>
<rect class="short" x="{{$.LabelWidth}}" y="{{.Y}}" width="{{num .ShortW}}" height="{{$.BarHeight}}"><title>{{.Label}}: {{.Short}} short-lived</title></rect>
<rect class="open" x="{{num .OpenX}}" y="{{.Y}}" width="{{num .OpenW}}" height="{{$.BarHeight}}"><title>{{.Label}}: {{.Open}} static open</title></rect>
<rect class="replaced" x="{{num .ReplacedX}}" y="{{.Y}}" width="{{num .ReplacedW}}" height="{{$.BarHeight}}"><title>{{.Label}}: {{.Replaced}} static replaced</title></rect>
</g>
{{- end}}
</svg>

<h2>Coverage</h2>
<table>
<tr><th>{{.By}}</th><th>Workloads</th><th>On SPIFFE</th><th>Brokered</th><th>Static open</th><th>Static replaced</th><th>Covered</th><th>Δ covered</th><th>Δ static open</th></tr>
{{- range .Groups}}
<tr><td>{{.Key}}</td><td class="n">{{.Workloads}}</td><td class="n">{{.SPIFFEActive}} ({{pct .SPIFFEPercent}})</td><td class="n">{{.Brokered}}</td><td class="n">{{.StaticOpen}}</td><td class="n">{{.Replaced}} ({{pct .ReplacedPercent}})</td><td class="n">{{pct .CoveredPercent}}</td><td class="n">{{points .DeltaCovered}}</td><td class="n">{{signed .DeltaStaticOpen}}</td></tr>
{{- end}}
{{with .Total}}<tr class="total"><td>total</td><td class="n">{{.Workloads}}</td><td class="n">{{.SPIFFEActive}} ({{pct .SPIFFEPercent}})</td><td class="n">{{.Brokered}}</td><td class="n">{{.StaticOpen}}</td><td class="n">{{.Replaced}} ({{pct .ReplacedPercent}})</td><td class="n">{{pct .CoveredPercent}}</td><td class="n">{{points .DeltaCovered}}</td><td class="n">{{signed .DeltaStaticOpen}}</td></tr>{{end}}
</table>

<h2>Migration plan: the open static credentials with the highest risk</h2>
{{- if .Plan}}
<table>
<tr><th>#</th><th>Risk</th><th>Finding</th><th>Where</th><th>Environment / owner</th><th>Replace with</th></tr>
{{- range $i, $p := .Plan}}
<tr><td>{{inc $i}}</td><td class="risk">{{.Risk}}</td><td><code>{{.RuleID}}</code> {{.Kind}}{{if .Preview}} <code>{{.Preview}}</code>{{end}}<br><small>{{.ID}}</small></td><td>{{.Path}}{{if .MoreLocations}} (+{{.MoreLocations}}){{end}}</td><td>{{.Environment}} / {{.Owner}}</td><td>{{.Suggestion}}{{if .Linked}}<br><small>linked to {{.Linked}}, not yet proven replaced</small>{{end}}</td></tr>
{{- end}}
</table>
{{- else}}
<p>No open static credentials: nothing left to replace.</p>
{{- end}}
<p class="meta">Generated by <code>signet coverage --format html</code>. Findings carry only the scanner's redacted previews and fingerprints; no secret is in this file.</p>
</body>
</html>
`))

// Render writes r as a self-contained HTML document to w.
func Render(w io.Writer, r Report) error {
	if r.Title == "" {
		r.Title = "Signet coverage report"
	}
	bs, h := bars(r.Groups)
	data := struct {
		Report
		Bars                                           []bar
		ChartWidth, ChartHeight, LabelWidth, BarHeight int
	}{r, bs, chartWidth, h, labelWidth, barHeight}
	if err := page.Execute(w, data); err != nil {
		return fmt.Errorf("render coverage report: %w", err)
	}
	return nil
}
