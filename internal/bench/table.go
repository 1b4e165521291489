package bench

import (
	"fmt"
	"io"
	"strings"
)

// Ratios returns, for each row, its median divided by the median of the
// baseline (glibc-posix_spawn on the same host) for the same target and
// RSS; 0 where there is no baseline row.
func Ratios(rows []Row) []float64 {
	type key struct {
		spec   Spec
		target string
		rss    int
	}
	p50 := make(map[key]float64, len(rows))
	for _, r := range rows {
		p50[key{r.Spec, r.Target, r.RSSMiB}] = r.P50
	}
	out := make([]float64, len(rows))
	for i, r := range rows {
		base := p50[key{Baseline(r.Host), r.Target, r.RSSMiB}]
		if base > 0 {
			out[i] = r.P50 / base
		}
	}
	return out
}

// WriteTable writes rows as an aligned text table: a header naming the
// run, then one line per row, with a blank line between groups of RSS and
// target.
func WriteTable(w io.Writer, rows []Row, meta Meta) error {
	header := []string{"RSS", "TARGET", "HOST", "ENGINE", "N", "P50 µs", "P10 µs", "P90 µs", "MIN µs", "VS GLIBC"}
	rightAligned := []bool{true, false, false, false, true, true, true, true, true, true}
	ratios := Ratios(rows)
	cells := [][]string{header}
	for i, r := range rows {
		ratio := "-"
		if ratios[i] > 0 {
			ratio = fmt.Sprintf("%.2fx", ratios[i])
		}
		cells = append(cells, []string{
			formatMiB(r.RSSMiB), r.Target, r.Host, r.Engine, fmt.Sprint(r.N),
			formatUS(r.P50), formatUS(r.P10), formatUS(r.P90), formatUS(r.Min), ratio,
		})
	}
	widths := make([]int, len(header))
	for _, line := range cells {
		for c, s := range line {
			widths[c] = max(widths[c], len([]rune(s)))
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "forkless bench: %d iterations per cell in %d rounds; %s\n", meta.N, meta.Rounds, meta)
	b.WriteString("times are create+exec+reap of one child; VS GLIBC = P50 / P50 of glibc-posix_spawn on the same host\n\n")
	for i, line := range cells {
		if i > 1 && (rows[i-1].RSSMiB != rows[i-2].RSSMiB || rows[i-1].Target != rows[i-2].Target) {
			b.WriteString("\n")
		}
		for c, s := range line {
			pad := strings.Repeat(" ", widths[c]-len([]rune(s)))
			if c > 0 {
				b.WriteString("  ")
			}
			if rightAligned[c] {
				b.WriteString(pad + s)
			} else if c == len(line)-1 {
				b.WriteString(s)
			} else {
				b.WriteString(s + pad)
			}
		}
		b.WriteString("\n")
	}
	costs := PreloadCosts(rows)
	if len(costs) > 0 {
		b.WriteString("\n")
	}
	levels := map[int]bool{}
	for _, r := range rows {
		levels[r.RSSMiB] = true
	}
	for _, c := range costs {
		at := ""
		if len(levels) > 1 {
			at = ", " + formatMiB(c.RSSMiB)
		}
		fmt.Fprintf(&b, "preload cost: %s / %s = %.2f (median, %s%s)\n", TargetTruePreload, TargetTrue, c.Ratio, c.Spec, at)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// PreloadCost is what loading the preload library costs an exec'd
// program, seen from one host at one resident size: the median of
// true+preload over the median of true, by the same mechanism.
type PreloadCost struct {
	Host   string
	RSSMiB int
	Spec   Spec // the mechanism both medians come from
	Ratio  float64
}

// PreloadCosts returns one PreloadCost per host and resident size that has
// both a true and a true+preload cell of one mechanism: glibc's
// posix_spawn on that host when it has both, else the first such
// mechanism in Catalog order. The result is in the order the rows first
// show each resident size and host.
func PreloadCosts(rows []Row) []PreloadCost {
	type key struct {
		spec   Spec
		target string
		rss    int
	}
	p50 := map[key]float64{}
	type level struct {
		rss  int
		host string
	}
	var levels []level
	seen := map[level]bool{}
	for _, r := range rows {
		p50[key{r.Spec, r.Target, r.RSSMiB}] = r.P50
		if l := (level{r.RSSMiB, r.Host}); !seen[l] {
			seen[l] = true
			levels = append(levels, l)
		}
	}
	var out []PreloadCost
	for _, l := range levels {
		candidates := []Spec{Baseline(l.host)}
		for _, s := range Catalog {
			if s.Host == l.host {
				candidates = append(candidates, s)
			}
		}
		for _, s := range candidates {
			plain, pre := p50[key{s, TargetTrue, l.rss}], p50[key{s, TargetTruePreload, l.rss}]
			if plain > 0 && pre > 0 {
				out = append(out, PreloadCost{Host: l.host, RSSMiB: l.rss, Spec: s, Ratio: pre / plain})
				break
			}
		}
	}
	return out
}

// formatUS prints microseconds with about four significant digits.
func formatUS(us float64) string {
	switch {
	case us >= 1000:
		return fmt.Sprintf("%.0f", us)
	case us >= 100:
		return fmt.Sprintf("%.1f", us)
	default:
		return fmt.Sprintf("%.2f", us)
	}
}
