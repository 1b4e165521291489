package bench

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunEndToEnd runs a tiny bench of every mechanism and target.
func TestRunEndToEnd(t *testing.T) {
	tiny := testbin.MustBuild(t, testbin.Tiny)
	cbench := testbin.MustBuild(t, testbin.CBench)
	targets := []Target{{TargetTiny, tiny}, {TargetTrue, "/bin/true"}}
	var progress bytes.Buffer
	rows, err := Run(Config{
		RSS: []int{16}, N: 6, Rounds: 3, Warmup: 1,
		Targets: targets, Engines: Catalog, CBench: cbench, Progress: &progress,
	})
	require.NoError(t, err)

	want := map[string]bool{}
	for _, tg := range targets {
		for _, s := range Catalog {
			want[fmt.Sprintf("%s %s 16", s, tg.Name)] = true
		}
	}
	require.Len(t, rows, len(want))
	for _, r := range rows {
		key := fmt.Sprintf("%s %s %d", r.Spec, r.Target, r.RSSMiB)
		assert.True(t, want[key], "unexpected cell %s", key)
		delete(want, key)
		assert.Equal(t, 6, r.N, key)
		assert.Greater(t, r.Min, 0.0, key)
		assert.LessOrEqual(t, r.Min, r.P10, key)
		assert.LessOrEqual(t, r.P10, r.P50, key)
		assert.LessOrEqual(t, r.P50, r.P90, key)
	}
	assert.Empty(t, want, "missing cells")
	assert.Contains(t, progress.String(), "round 3/3")
	assert.Contains(t, progress.String(), "100%")

	var out bytes.Buffer
	require.NoError(t, WriteTable(&out, rows, CollectMeta(6, 3)))
	assert.Contains(t, out.String(), "1.00x")
}

func TestCHostReportsFailedExec(t *testing.T) {
	cbench := testbin.MustBuild(t, testbin.CBench)
	h, err := StartCHost(cbench, 0)
	require.NoError(t, err)
	defer h.Close()
	for _, engine := range []string{EngineGlibcSpawn, EngineVforkExec, EngineForkExec} {
		_, err := h.Batch(engine, "/nonexistent/forkless-target", 2)
		assert.Error(t, err, engine)
	}
	d, err := h.Batch(EngineVforkExec, "/bin/true", 3)
	require.NoError(t, err, "the host goes on after an error")
	assert.Len(t, d, 3)
}

func TestGoMechanismsReportFailedExec(t *testing.T) {
	for _, engine := range []string{EngineForklessGo, EngineOsExec, EngineSyscallForkExec, EngineGlibcSpawn} {
		m, err := goMechanism(engine)
		require.NoError(t, err)
		_, err = m.Batch("/nonexistent/forkless-target", 1)
		assert.Error(t, err, engine)
		_, err = m.Batch("/bin/false", 1)
		assert.Error(t, err, engine+": a non-zero exit is a failure")
	}
}

func TestResident(t *testing.T) {
	r, err := MakeResident(8)
	require.NoError(t, err)
	assert.Equal(t, 8<<20, r.Size())
	require.NoError(t, r.Release())
	require.NoError(t, r.Release())
	z, err := MakeResident(0)
	require.NoError(t, err)
	assert.Equal(t, 0, z.Size())
}
