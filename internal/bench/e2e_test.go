package bench

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withoutLib is the Catalog without the mechanisms that need the preload
// library.
func withoutLib() []Spec {
	var out []Spec
	for _, s := range Catalog {
		if !s.NeedsLib() {
			out = append(out, s)
		}
	}
	return out
}

// TestRunEndToEnd runs a tiny bench of every mechanism and target that
// does without the preload library.
func TestRunEndToEnd(t *testing.T) {
	tiny := testbin.MustBuild(t, testbin.Tiny)
	cbench := testbin.MustBuild(t, testbin.CBench)
	targets := []Target{{Name: TargetTiny, Path: tiny}, {Name: TargetTrue, Path: "/bin/true"}}
	engines := withoutLib()
	var progress bytes.Buffer
	rows, err := Run(Config{
		RSS: []int{16}, N: 6, Rounds: 3, Warmup: 1,
		Targets: targets, Engines: engines, CBench: cbench, Progress: &progress,
	})
	require.NoError(t, err)

	want := map[string]bool{}
	for _, tg := range targets {
		for _, s := range engines {
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
	assert.NotContains(t, out.String(), "preload cost", "no true+preload target")
}

// TestRunWithLibrary runs forkless-c and the true+preload target, with
// every other mechanism, when the preload library is available.
func TestRunWithLibrary(t *testing.T) {
	lib := testLib(t)
	tiny := testbin.MustBuild(t, testbin.Tiny)
	cbench := testbin.MustBuild(t, testbin.CBench)
	targets, err := ResolveTargets([]string{TargetTiny, TargetTrue, TargetTruePreload}, filepath.Dir(tiny), lib)
	require.NoError(t, err)
	rows, err := Run(Config{
		RSS: []int{8}, N: 4, Rounds: 2, Warmup: 1,
		Targets: targets, Engines: Catalog, CBench: cbench, Lib: lib,
	})
	require.NoError(t, err)

	n := map[string]int{}
	for _, r := range rows {
		n[fmt.Sprintf("%s %s", r.Spec, r.Target)] = r.N
	}
	assert.Len(t, n, len(Catalog)*len(targets))
	for _, tg := range targets {
		assert.Equal(t, 4, n["forkless-c/c "+tg.Name], "forkless-c, %s", tg.Name)
		for _, s := range Catalog {
			if tg.Name == TargetTruePreload {
				assert.Equal(t, 4, n[s.String()+" true+preload"], "%s, true+preload", s)
			}
		}
	}

	var out bytes.Buffer
	require.NoError(t, WriteTable(&out, rows, CollectMeta(4, 2)))
	table := out.String()
	assert.Regexp(t, `(?m)^\s*8 MiB\s+tiny\s+c\s+forkless-c\s+4\s.*x$`, table, "forkless-c has a ratio to glibc-posix_spawn/c")
	assert.Regexp(t, `(?m)^preload cost: true\+preload / true = \d+\.\d\d \(median, glibc-posix_spawn/go\)$`, table)
	assert.Regexp(t, `(?m)^preload cost: true\+preload / true = \d+\.\d\d \(median, glibc-posix_spawn/c\)$`, table)
}

func TestRunNeedsLibraryForForklessC(t *testing.T) {
	_, err := Run(Config{
		RSS: []int{0}, N: 1, Targets: []Target{{Name: TargetTrue, Path: "/bin/true"}},
		Engines: []Spec{{EngineForklessC, HostC}}, CBench: "/nonexistent/forkless-cbench",
	})
	assert.ErrorContains(t, err, "forkless-c/c")
	assert.ErrorContains(t, err, "no preload library")
}

func TestCHostReportsFailedExec(t *testing.T) {
	cbench := testbin.MustBuild(t, testbin.CBench)
	h, err := StartCHost(cbench, 0, "")
	require.NoError(t, err)
	defer h.Close()
	for _, engine := range []string{EngineGlibcSpawn, EngineVforkExec, EngineForkExec} {
		_, err := h.Batch(engine, Target{Name: "none", Path: "/nonexistent/forkless-target"}, 2)
		assert.Error(t, err, engine)
	}
	d, err := h.Batch(EngineVforkExec, Target{Name: TargetTrue, Path: "/bin/true"}, 3)
	require.NoError(t, err, "the host goes on after an error")
	assert.Len(t, d, 3)
	_, err = h.Batch(EngineForklessC, Target{Name: TargetTrue, Path: "/bin/true"}, 1)
	assert.ErrorContains(t, err, "started with the preload library")
}

// TestCHostPassesEnvEntry runs the probe, which writes its report to the
// file FORKLESS_PROBE_OUT names, from every C-host engine: the file
// appears only if the child got the target's one environment entry.
func TestCHostPassesEnvEntry(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	cbench := testbin.MustBuild(t, testbin.CBench)
	h, err := StartCHost(cbench, 0, "")
	require.NoError(t, err)
	defer h.Close()
	dir := t.TempDir()
	for i, engine := range []string{EngineGlibcSpawn, EngineVforkExec, EngineForkExec} {
		out := filepath.Join(dir, fmt.Sprintf("probe%d.json", i))
		d, err := h.Batch(engine, Target{Name: "probe", Path: probe, Env: []string{"FORKLESS_PROBE_OUT=" + out}}, 1)
		require.NoError(t, err, engine)
		assert.Len(t, d, 1)
		assert.FileExists(t, out, engine)
	}
}

func TestGoMechanismsPassEnv(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	dir := t.TempDir()
	for i, engine := range []string{EngineForklessGo, EngineOsExec, EngineSyscallForkExec, EngineGlibcSpawn} {
		m, err := goMechanism(engine)
		require.NoError(t, err)
		out := filepath.Join(dir, fmt.Sprintf("probe%d.json", i))
		_, err = m.Batch(Target{Name: "probe", Path: probe, Env: []string{"FORKLESS_PROBE_OUT=" + out}}, 1)
		require.NoError(t, err, engine)
		assert.FileExists(t, out, engine)
	}
}

func TestGoMechanismsReportFailedExec(t *testing.T) {
	for _, engine := range []string{EngineForklessGo, EngineOsExec, EngineSyscallForkExec, EngineGlibcSpawn} {
		m, err := goMechanism(engine)
		require.NoError(t, err)
		_, err = m.Batch(Target{Name: "none", Path: "/nonexistent/forkless-target"}, 1)
		assert.Error(t, err, engine)
		_, err = m.Batch(Target{Name: "false", Path: "/bin/false"}, 1)
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
