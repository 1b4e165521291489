package bench

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSelectEngines(t *testing.T) {
	all, err := SelectEngines(nil)
	require.NoError(t, err)
	assert.Equal(t, Catalog, all)

	all, err = SelectEngines([]string{"all"})
	require.NoError(t, err)
	assert.Equal(t, Catalog, all)

	got, err := SelectEngines([]string{"fork+exec", "glibc-posix_spawn", "os/exec"})
	require.NoError(t, err)
	assert.Equal(t, []Spec{
		{EngineOsExec, HostGo}, {EngineGlibcSpawn, HostGo}, {EngineGlibcSpawn, HostC}, {EngineForkExec, HostC},
	}, got, "an engine alone means every host; the result is in Catalog order")

	got, err = SelectEngines([]string{"glibc-posix_spawn/c", " forkless-go "})
	require.NoError(t, err)
	assert.Equal(t, []Spec{{EngineForklessGo, HostGo}, {EngineGlibcSpawn, HostC}}, got)

	got, err = SelectEngines([]string{"forkless-c", "glibc-posix_spawn/c"})
	require.NoError(t, err)
	assert.Equal(t, []Spec{{EngineGlibcSpawn, HostC}, {EngineForklessC, HostC}}, got,
		"forkless-c comes right after glibc-posix_spawn/c")
	got, err = SelectEngines([]string{"forkless-c/c"})
	require.NoError(t, err)
	assert.Equal(t, []Spec{{EngineForklessC, HostC}}, got)
	assert.True(t, got[0].NeedsLib())
	assert.Equal(t, Spec{EngineGlibcSpawn, HostC}, Baseline(got[0].Host))
	_, err = SelectEngines([]string{"forkless-c/go"})
	assert.ErrorContains(t, err, "unknown engine")
	assert.Contains(t, EngineNames(), "forkless-c")
	_, err = SelectEngines([]string{"posix_spawn"})
	assert.ErrorContains(t, err, "unknown engine")
	_, err = SelectEngines([]string{"vfork+exec/go"})
	assert.ErrorContains(t, err, "unknown engine")
}

func TestBatchSizes(t *testing.T) {
	for _, tc := range []struct{ n, rounds int }{{300, 10}, {7, 3}, {5, 5}, {101, 10}, {1, 1}} {
		total, lo, hi := 0, tc.n, 0
		for r := range tc.rounds {
			b := batchSize(tc.n, tc.rounds, r)
			total += b
			lo, hi = min(lo, b), max(hi, b)
		}
		assert.Equal(t, tc.n, total, "n=%d rounds=%d", tc.n, tc.rounds)
		assert.LessOrEqual(t, hi-lo, 1, "rounds are even")
	}
}

func TestRatios(t *testing.T) {
	rows := []Row{
		{Spec: Spec{EngineForklessGo, HostGo}, Target: "tiny", RSSMiB: 16, Stats: Stats{P50: 50}},
		{Spec: Spec{EngineGlibcSpawn, HostGo}, Target: "tiny", RSSMiB: 16, Stats: Stats{P50: 100}},
		{Spec: Spec{EngineGlibcSpawn, HostC}, Target: "tiny", RSSMiB: 16, Stats: Stats{P50: 80}},
		{Spec: Spec{EngineForklessC, HostC}, Target: "tiny", RSSMiB: 16, Stats: Stats{P50: 60}},
		{Spec: Spec{EngineForkExec, HostC}, Target: "tiny", RSSMiB: 16, Stats: Stats{P50: 800}},
		{Spec: Spec{EngineForkExec, HostC}, Target: "true", RSSMiB: 16, Stats: Stats{P50: 900}},
	}
	assert.Equal(t, []float64{0.5, 1, 1, 0.75, 10, 0}, Ratios(rows))
}
