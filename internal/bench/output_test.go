package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sampleRows is a small result set: two mechanisms, one target, two levels.
func sampleRows() []Row {
	return []Row{
		{Spec: Spec{EngineForklessGo, HostGo}, Target: TargetTiny, RSSMiB: 16, Stats: Stats{N: 10, P50: 50.1234, P10: 40, P90: 60, Min: 39}},
		{Spec: Spec{EngineGlibcSpawn, HostGo}, Target: TargetTiny, RSSMiB: 16, Stats: Stats{N: 10, P50: 100, P10: 90, P90: 110, Min: 88}},
		{Spec: Spec{EngineForkExec, HostC}, Target: TargetTiny, RSSMiB: 16, Stats: Stats{N: 10, P50: 700, P10: 650, P90: 800, Min: 640}},
		{Spec: Spec{EngineForklessGo, HostGo}, Target: TargetTiny, RSSMiB: 4096, Stats: Stats{N: 10, P50: 52, P10: 41, P90: 61, Min: 40}},
		{Spec: Spec{EngineGlibcSpawn, HostGo}, Target: TargetTiny, RSSMiB: 4096, Stats: Stats{N: 10, P50: 104, P10: 91, P90: 112, Min: 89}},
		{Spec: Spec{EngineForkExec, HostC}, Target: TargetTiny, RSSMiB: 4096, Stats: Stats{N: 10, P50: 120000, P10: 110000, P90: 130000, Min: 100000}},
		{Spec: Spec{EngineForkExec, HostC}, Target: TargetTrue, RSSMiB: 16, Stats: Stats{N: 10, P50: 1200, P10: 1100, P90: 1300, Min: 1000}},
		{Spec: Spec{EngineForkExec, HostC}, Target: TargetTrue, RSSMiB: 4096, Stats: Stats{N: 10, P50: 121000, P10: 111000, P90: 131000, Min: 101000}},
	}
}

func TestJSONFields(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteJSON(&buf, sampleRows()))
	var cells []map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &cells))
	require.Len(t, cells, len(sampleRows()))
	for _, c := range cells {
		var keys []string
		for k := range c {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		assert.Equal(t, []string{"engine", "host", "min_us", "n", "p10_us", "p50_us", "p90_us", "rss_mib", "target"}, keys)
	}
	first := cells[0]
	assert.Equal(t, "forkless-go", first["engine"])
	assert.Equal(t, "go", first["host"])
	assert.Equal(t, "tiny", first["target"])
	assert.Equal(t, 16.0, first["rss_mib"])
	assert.Equal(t, 10.0, first["n"])
	assert.Equal(t, 50.123, first["p50_us"], "rounded to the nanosecond")
}

// parseSVG checks that doc is well-formed XML with an <svg> root, and
// counts its elements by name.
func parseSVG(t *testing.T, doc []byte) map[string]int {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(doc))
	counts := map[string]int{}
	depth := 0
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		switch el := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				root = el.Name.Local
				assert.Equal(t, "http://www.w3.org/2000/svg", el.Name.Space)
			}
			counts[el.Name.Local]++
			depth++
		case xml.EndElement:
			depth--
		}
	}
	assert.Equal(t, "svg", root)
	assert.Equal(t, 0, depth)
	return counts
}

func TestSVGWellFormed(t *testing.T) {
	var buf bytes.Buffer
	meta := Meta{N: 10, Rounds: 2, OS: "linux", Arch: "amd64", Kernel: "6.1 <&>", CPUs: 2}
	require.NoError(t, WriteSVG(&buf, sampleRows(), meta))
	counts := parseSVG(t, buf.Bytes())
	// Lines: tiny has three mechanisms over two levels, true one.
	assert.Equal(t, 4, counts["polyline"])
	assert.Equal(t, 8, counts["title"], "one tooltip per point")
	assert.Contains(t, buf.String(), "6.1 &lt;&amp;&gt;", "text is escaped")
	assert.Contains(t, buf.String(), "4 GiB")
	assert.Contains(t, buf.String(), "forkless-tiny")
	assert.Contains(t, buf.String(), "/bin/true")
}

func TestSVGOneLevel(t *testing.T) {
	var rows []Row
	for _, r := range sampleRows() {
		if r.RSSMiB == 16 {
			rows = append(rows, r)
		}
	}
	var buf bytes.Buffer
	require.NoError(t, WriteSVG(&buf, rows, Meta{N: 10}))
	counts := parseSVG(t, buf.Bytes())
	assert.Equal(t, 0, counts["polyline"], "no lines through single points")
	assert.Equal(t, 4, counts["title"])
	assert.Equal(t, 2, strings.Count(buf.String(), ">16 MiB<"), "one x tick in each of the two panels")

	assert.Error(t, WriteSVG(io.Discard, nil, Meta{}))
}

func TestTable(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteTable(&buf, sampleRows(), Meta{N: 10, Rounds: 2, OS: "linux", Arch: "amd64", CPUs: 2}))
	out := buf.String()
	assert.Contains(t, out, "10 iterations per cell in 2 rounds")
	lines := strings.Split(out, "\n")
	var header string
	for _, l := range lines {
		if strings.Contains(l, "ENGINE") {
			header = l
		}
	}
	require.NotEmpty(t, header)
	for _, col := range []string{"RSS", "TARGET", "HOST", "ENGINE", "N", "P50 µs", "P10 µs", "P90 µs", "MIN µs", "VS GLIBC"} {
		assert.Contains(t, header, col)
	}
	assert.Contains(t, out, "0.50x")
	assert.Contains(t, out, "1.00x")
	assert.Contains(t, out, "4 GiB")
	// fork+exec runs on the C host, which has no glibc row here.
	for _, l := range lines {
		if strings.Contains(l, "fork+exec") {
			assert.True(t, strings.HasSuffix(strings.TrimSpace(l), "-"), l)
		}
	}
}

// preloadRows has true and true+preload cells on both hosts at two levels.
func preloadRows() []Row {
	row := func(s Spec, target string, rss int, p50 float64) Row {
		return Row{Spec: s, Target: target, RSSMiB: rss, Stats: Stats{N: 10, P50: p50, P10: p50, P90: p50, Min: p50}}
	}
	goGlibc, cGlibc := Spec{EngineGlibcSpawn, HostGo}, Spec{EngineGlibcSpawn, HostC}
	forklessC, forklessGo := Spec{EngineForklessC, HostC}, Spec{EngineForklessGo, HostGo}
	var rows []Row
	for _, rss := range []int{16, 1024} {
		rows = append(rows,
			row(forklessGo, TargetTrue, rss, 400), row(goGlibc, TargetTrue, rss, 500),
			row(cGlibc, TargetTrue, rss, 480), row(forklessC, TargetTrue, rss, 440),
			row(forklessGo, TargetTruePreload, rss, 440), row(goGlibc, TargetTruePreload, rss, 600),
			row(cGlibc, TargetTruePreload, rss, 600), row(forklessC, TargetTruePreload, rss, 550),
		)
	}
	return rows
}

func TestPreloadCosts(t *testing.T) {
	rows := preloadRows()
	costs := PreloadCosts(rows)
	require.Len(t, costs, 4)
	assert.Equal(t, PreloadCost{Host: HostGo, RSSMiB: 16, Spec: Spec{EngineGlibcSpawn, HostGo}, Ratio: 1.2}, costs[0])
	assert.Equal(t, PreloadCost{Host: HostC, RSSMiB: 16, Spec: Spec{EngineGlibcSpawn, HostC}, Ratio: 1.25}, costs[1])
	assert.Equal(t, 1024, costs[2].RSSMiB)
	assert.Equal(t, HostC, costs[3].Host)

	// Without glibc's rows a host falls back to its first mechanism in
	// Catalog order that has both cells.
	var noGlibc []Row
	for _, r := range rows {
		if r.Engine != EngineGlibcSpawn && r.RSSMiB == 16 {
			noGlibc = append(noGlibc, r)
		}
	}
	costs = PreloadCosts(noGlibc)
	require.Len(t, costs, 2)
	assert.Equal(t, Spec{EngineForklessGo, HostGo}, costs[0].Spec)
	assert.InDelta(t, 1.1, costs[0].Ratio, 1e-12)
	assert.Equal(t, Spec{EngineForklessC, HostC}, costs[1].Spec)
	assert.InDelta(t, 1.25, costs[1].Ratio, 1e-12)

	assert.Empty(t, PreloadCosts(sampleRows()), "no true+preload cells")
}

func TestTablePreloadCost(t *testing.T) {
	var one []Row
	for _, r := range preloadRows() {
		if r.RSSMiB == 16 {
			one = append(one, r)
		}
	}
	var buf bytes.Buffer
	require.NoError(t, WriteTable(&buf, one, Meta{N: 10, Rounds: 2}))
	out := buf.String()
	assert.Contains(t, out, "\npreload cost: true+preload / true = 1.20 (median, glibc-posix_spawn/go)\n")
	assert.Contains(t, out, "\npreload cost: true+preload / true = 1.25 (median, glibc-posix_spawn/c)\n")
	// true and true+preload are groups next to each other.
	iTrue := strings.Index(out, "16 MiB  true  ")
	iPre := strings.Index(out, "16 MiB  true+preload")
	require.GreaterOrEqual(t, iTrue, 0, out)
	assert.Greater(t, iPre, iTrue, out)
	// forkless-c divides by glibc-posix_spawn/c: 550 / 600.
	assert.Regexp(t, `true\+preload\s+c\s+forkless-c\s.*\s0\.92x\n`, out)

	buf.Reset()
	require.NoError(t, WriteTable(&buf, preloadRows(), Meta{N: 10, Rounds: 2}))
	assert.Contains(t, buf.String(), "preload cost: true+preload / true = 1.25 (median, glibc-posix_spawn/c, 1 GiB)\n",
		"with several levels each line names its level")

	buf.Reset()
	require.NoError(t, WriteJSON(&buf, one))
	var cells []map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &cells))
	assert.Equal(t, "true+preload", cells[len(cells)-1]["target"])
	assert.Equal(t, "forkless-c", cells[len(cells)-1]["engine"])
	assert.Equal(t, "c", cells[len(cells)-1]["host"])
}

func TestSVGPreloadPanel(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteSVG(&buf, preloadRows(), Meta{N: 10}))
	parseSVG(t, buf.Bytes())
	assert.Contains(t, buf.String(), "LD_PRELOAD=libforkless.so")
	assert.Contains(t, buf.String(), "forkless-c")
}
