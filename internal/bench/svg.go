package bench

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Chart geometry, in SVG user units.
const (
	svgPlotLeft   = 84.0  // left edge of the first plot
	svgPlotTop    = 112.0 // top edge of the plots
	svgPlotW      = 400.0
	svgPlotH      = 360.0
	svgPanelGap   = 70.0  // between two plots
	svgLegendW    = 250.0 // legend column right of the plots
	svgBottomRoom = 84.0  // below the plots: tick labels, axis title
)

// engineColors gives each engine one colour on every host.
var engineColors = map[string]string{
	EngineForklessGo:      "#d62728",
	EngineForklessC:       "#ff7f0e",
	EngineOsExec:          "#1f77b4",
	EngineSyscallForkExec: "#2ca02c",
	EngineGlibcSpawn:      "#9467bd",
	EngineVforkExec:       "#8c564b",
	EngineForkExec:        "#525252",
}

// targetTitles describe the panels.
var targetTitles = map[string]string{
	TargetTiny:        "target: forkless-tiny (static, exits at once)",
	TargetTrue:        "target: /bin/true (dynamically linked)",
	TargetTruePreload: "target: /bin/true, LD_PRELOAD=libforkless.so",
}

// svgWriter accumulates the document.
type svgWriter struct{ b strings.Builder }

func (s *svgWriter) f(format string, args ...any) { fmt.Fprintf(&s.b, format, args...) }

// esc escapes text for XML content and attribute values.
func esc(text string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(text))
	return b.String()
}

// num formats a coordinate compactly.
func num(v float64) string { return fmt.Sprintf("%.1f", v) }

// WriteSVG draws the median latency against resident memory, log-log, one
// panel per target and one line per mechanism: solid lines with round
// markers for the Go host, dashed lines with square markers for the C host.
func WriteSVG(w io.Writer, rows []Row, meta Meta) error {
	if len(rows) == 0 {
		return errors.New("bench: no results to draw")
	}
	var targets []string
	var specs []Spec
	var rssVals, p50s []float64
	for _, r := range rows {
		if !slices.Contains(targets, r.Target) {
			targets = append(targets, r.Target)
		}
		if !slices.Contains(specs, r.Spec) {
			specs = append(specs, r.Spec)
		}
		rssVals = append(rssVals, float64(max(r.RSSMiB, 1)))
		p50s = append(p50s, r.P50)
	}
	slices.SortStableFunc(specs, func(a, b Spec) int { return a.order() - b.order() })

	xlo, xhi := LogDomain(rssVals, 1.6)
	ylo, yhi := LogDomain(p50s, 1.35)
	xticks := Pow2Ticks(xlo, xhi, 7)
	yticks := LogTicks(ylo, yhi, svgPlotH, 24)
	// With one memory level every point sits on one vertical: show only
	// that tick, and set the series a little apart so they do not hide
	// each other.
	var dodge map[Spec]float64
	if slices.Min(rssVals) == slices.Max(rssVals) {
		xticks = []float64{rssVals[0]}
		dodge = map[Spec]float64{}
		for i, spec := range specs {
			dodge[spec] = (float64(i) - float64(len(specs)-1)/2) * 12
		}
	}

	nPanels := float64(len(targets))
	width := svgPlotLeft + nPanels*svgPlotW + (nPanels-1)*svgPanelGap + 40 + svgLegendW
	height := svgPlotTop + svgPlotH + svgBottomRoom

	var s svgWriter
	s.f(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`+"\n",
		num(width), num(height), num(width), num(height))
	s.f(`<rect x="0" y="0" width="%s" height="%s" fill="#ffffff"/>`+"\n", num(width), num(height))
	s.f(`<text x="%s" y="36" font-size="21" font-weight="bold" fill="#222">Process creation latency vs. resident memory of the parent</text>`+"\n", num(svgPlotLeft))
	sub := fmt.Sprintf("median of %d create+exec+reap cycles per point, lower is better · %s", meta.N, meta)
	s.f(`<text x="%s" y="60" font-size="12.5" fill="#555">%s</text>`+"\n", num(svgPlotLeft), esc(sub))

	for i, target := range targets {
		left := svgPlotLeft + float64(i)*(svgPlotW+svgPanelGap)
		xs := LogScale{Lo: xlo, Hi: xhi, From: left, To: left + svgPlotW}
		ys := LogScale{Lo: ylo, Hi: yhi, From: svgPlotTop + svgPlotH, To: svgPlotTop}
		title := targetTitles[target]
		if title == "" {
			title = "target: " + target
		}
		s.f(`<text x="%s" y="%s" font-size="14" font-weight="bold" fill="#333">%s</text>`+"\n", num(left), num(svgPlotTop-12), esc(title))
		drawAxes(&s, xs, ys, xticks, yticks, i == 0)
		for _, spec := range specs {
			drawSeries(&s, rows, spec, target, xs, ys, dodge[spec])
		}
	}
	drawLegend(&s, specs, svgPlotLeft+nPanels*svgPlotW+(nPanels-1)*svgPanelGap+40)
	s.f("</svg>\n")
	_, err := io.WriteString(w, s.b.String())
	return err
}

// drawAxes draws the frame, grid, ticks and axis titles of one panel.
func drawAxes(s *svgWriter, xs, ys LogScale, xticks, yticks []float64, yTitle bool) {
	left, right := xs.From, xs.To
	top, bottom := ys.To, ys.From
	s.f(`<rect x="%s" y="%s" width="%s" height="%s" fill="#fafafa" stroke="#bbb"/>`+"\n",
		num(left), num(top), num(right-left), num(bottom-top))
	s.f(`<g font-size="12" fill="#444">` + "\n")
	for _, v := range yticks {
		y := ys.Map(v)
		s.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e2e2e2"/>`+"\n", num(left), num(y), num(right), num(y))
		s.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#888"/>`+"\n", num(left-5), num(y), num(left), num(y))
		s.f(`<text x="%s" y="%s" text-anchor="end">%s</text>`+"\n", num(left-8), num(y+4), esc(tickUS(v)))
	}
	lastX := math.Inf(-1)
	for _, v := range xticks {
		x := xs.Map(v)
		s.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e2e2e2"/>`+"\n", num(x), num(top), num(x), num(bottom))
		s.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#888"/>`+"\n", num(x), num(bottom), num(x), num(bottom+5))
		if x-lastX >= 44 {
			s.f(`<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", num(x), num(bottom+20), esc(formatMiB(int(math.Round(v)))))
			lastX = x
		}
	}
	s.f("</g>\n")
	s.f(`<text x="%s" y="%s" font-size="13" fill="#333" text-anchor="middle">resident memory of the parent (log scale)</text>`+"\n",
		num((left+right)/2), num(bottom+46))
	if yTitle {
		cx, cy := left-58, (top+bottom)/2
		s.f(`<text x="%s" y="%s" font-size="13" fill="#333" text-anchor="middle" transform="rotate(-90 %s %s)">median latency (log scale)</text>`+"\n",
			num(cx), num(cy), num(cx), num(cy))
	}
}

// tickUS labels a latency tick given in microseconds.
func tickUS(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%g s", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%g ms", v/1e3)
	}
	return fmt.Sprintf("%g µs", v)
}

// seriesStyle returns the colour, dash pattern and marker kind of a spec.
func seriesStyle(spec Spec) (color, dash string, square bool, width float64) {
	color = engineColors[spec.Engine]
	if color == "" {
		color = "#17becf"
	}
	width = 2.2
	if spec.Engine == EngineForklessGo || spec.Engine == EngineForklessC {
		width = 3.2
	}
	if spec.Host == HostC {
		return color, "7 4", true, width
	}
	return color, "", false, width
}

// marker draws one point marker.
func marker(s *svgWriter, x, y float64, color string, square bool, title string) {
	if square {
		s.f(`<rect x="%s" y="%s" width="9" height="9" fill="%s" stroke="#fff" stroke-width="1.2">`, num(x-4.5), num(y-4.5), color)
		if title != "" {
			s.f(`<title>%s</title>`, esc(title))
		}
		s.f("</rect>\n")
		return
	}
	s.f(`<circle cx="%s" cy="%s" r="5" fill="%s" stroke="#fff" stroke-width="1.2">`, num(x), num(y), color)
	if title != "" {
		s.f(`<title>%s</title>`, esc(title))
	}
	s.f("</circle>\n")
}

// drawSeries draws one mechanism's line and markers in one panel.
// dx shifts the series right by that many units.
func drawSeries(s *svgWriter, rows []Row, spec Spec, target string, xs, ys LogScale, dx float64) {
	var pts []Row
	for _, r := range rows {
		if r.Spec == spec && r.Target == target && r.P50 > 0 {
			pts = append(pts, r)
		}
	}
	if len(pts) == 0 {
		return
	}
	slices.SortFunc(pts, func(a, b Row) int { return a.RSSMiB - b.RSSMiB })
	color, dash, square, width := seriesStyle(spec)
	if len(pts) > 1 {
		var coords []string
		for _, p := range pts {
			coords = append(coords, num(xs.Map(float64(max(p.RSSMiB, 1)))+dx)+","+num(ys.Map(p.P50)))
		}
		dashAttr := ""
		if dash != "" {
			dashAttr = fmt.Sprintf(` stroke-dasharray="%s"`, dash)
		}
		s.f(`<polyline points="%s" fill="none" stroke="%s" stroke-width="%s" stroke-linejoin="round"%s/>`+"\n",
			strings.Join(coords, " "), color, num(width), dashAttr)
	}
	for _, p := range pts {
		title := fmt.Sprintf("%s (%s host), %s, %s: median %s µs, p10 %s, p90 %s, n=%d",
			spec.Engine, spec.Host, target, formatMiB(p.RSSMiB), formatUS(p.P50), formatUS(p.P10), formatUS(p.P90), p.N)
		marker(s, xs.Map(float64(max(p.RSSMiB, 1)))+dx, ys.Map(p.P50), color, square, title)
	}
}

// drawLegend lists the mechanisms and the line styles.
func drawLegend(s *svgWriter, specs []Spec, left float64) {
	y := svgPlotTop + 4
	s.f(`<text x="%s" y="%s" font-size="13" font-weight="bold" fill="#333">mechanism</text>`+"\n", num(left), num(y))
	y += 24
	for _, spec := range specs {
		color, dash, square, width := seriesStyle(spec)
		dashAttr := ""
		if dash != "" {
			dashAttr = fmt.Sprintf(` stroke-dasharray="%s"`, dash)
		}
		s.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="%s"%s/>`+"\n",
			num(left), num(y-4), num(left+34), num(y-4), color, num(width), dashAttr)
		marker(s, left+17, y-4, color, square, "")
		host := "Go host"
		if spec.Host == HostC {
			host = "C host"
		}
		s.f(`<text x="%s" y="%s" font-size="12.5" fill="#222">%s <tspan fill="#777">· %s</tspan></text>`+"\n",
			num(left+44), num(y), esc(spec.Engine), host)
		y += 22
	}
	y += 10
	for _, line := range []string{
		"solid, round: from a Go program",
		"dashed, square: from a C program",
		"(forkless-cbench, same memory)",
	} {
		s.f(`<text x="%s" y="%s" font-size="11.5" fill="#666">%s</text>`+"\n", num(left), num(y), esc(line))
		y += 17
	}
}
