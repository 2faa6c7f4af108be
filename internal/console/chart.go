package console

import (
	"fmt"
	"strings"
)

// Chart is the coverage trend drawn as inline SVG on the server: a line of
// the covered share over the saved reports, oldest left. Everything in it
// is numbers and short labels laid out here, so the page needs no script
// and the SVG no style attribute (CSP).
type Chart struct {
	Width, Height int
	// Line is the polyline's points attribute ("x,y x,y …").
	Line string
	Dots []ChartDot
	// YTicks are the horizontal grid lines at 0, 25, 50, 75 and 100 %.
	YTicks []ChartTick
	// First and Last label the time axis.
	First, Last ChartTick
}

// ChartDot is one report on the line.
type ChartDot struct {
	X, Y  int
	Label string // e.g. "2026-12-01 10:00: 62.5 %"
}

// ChartTick is an axis label at a position.
type ChartTick struct {
	X, Y  int
	Label string
}

// Chart geometry, in SVG user units.
const (
	chartWidth  = 640
	chartHeight = 220
	chartLeft   = 48 // room for the y labels
	chartRight  = 16
	chartTop    = 12
	chartBottom = 28 // room for the x labels
)

// trendChart lays out points (oldest first); nil when no report has a
// covered share to draw.
func trendChart(points []TrendPoint) *Chart {
	var drawn []TrendPoint
	for _, p := range points {
		if p.CoveredPercent != nil {
			drawn = append(drawn, p)
		}
	}
	if len(drawn) == 0 {
		return nil
	}
	c := &Chart{Width: chartWidth, Height: chartHeight}
	plotW := chartWidth - chartLeft - chartRight
	plotH := chartHeight - chartTop - chartBottom
	y := func(pct float64) int { return chartTop + int(float64(plotH)*(100-pct)/100+0.5) }
	for pct := 0; pct <= 100; pct += 25 {
		c.YTicks = append(c.YTicks, ChartTick{X: chartLeft - 6, Y: y(float64(pct)), Label: fmt.Sprintf("%d %%", pct)})
	}
	var line strings.Builder
	for i, p := range drawn {
		x := chartLeft + plotW/2
		if len(drawn) > 1 {
			x = chartLeft + i*plotW/(len(drawn)-1)
		}
		pct := min(max(*p.CoveredPercent, 0), 100)
		d := ChartDot{X: x, Y: y(pct), Label: fmt.Sprintf("%s: %.1f %%", p.At.UTC().Format("2006-01-02 15:04"), pct)}
		c.Dots = append(c.Dots, d)
		if i > 0 {
			line.WriteByte(' ')
		}
		fmt.Fprintf(&line, "%d,%d", d.X, d.Y)
	}
	c.Line = line.String()
	base := chartHeight - chartBottom + 18
	c.First = ChartTick{X: c.Dots[0].X, Y: base, Label: drawn[0].At.UTC().Format("2006-01-02")}
	c.Last = ChartTick{X: c.Dots[len(c.Dots)-1].X, Y: base, Label: drawn[len(drawn)-1].At.UTC().Format("2006-01-02")}
	return c
}
