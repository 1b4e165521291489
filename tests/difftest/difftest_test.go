package difftest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if IsRunner() {
		RunnerMain()
	}
	os.Exit(m.Run())
}

// libPath is lib/libforkless.so, built on first use.
var libPath string

// runOne runs sc with eng in a fresh runner process.
func runOne(t *testing.T, sc Scenario, eng Engine, probe string) (*Result, string) {
	t.Helper()
	for _, e := range eng.Env {
		if strings.Contains(e, "$LIB") && libPath == "" {
			// FORKLESS_TEST_LIB picks another build (the ASan one).
			if libPath = os.Getenv("FORKLESS_TEST_LIB"); libPath == "" {
				libPath = testbin.MustLib(t)
			}
		}
	}
	tmp, err := os.MkdirTemp("", "difftest-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(tmp) })
	require.NoError(t, os.Chmod(tmp, 0o777)) // runners with another euid write here
	data, err := json.Marshal(sc)
	require.NoError(t, err)
	scFile := filepath.Join(tmp, "scenario.json")
	resFile := filepath.Join(tmp, "result.json")
	require.NoError(t, os.WriteFile(scFile, data, 0o644))

	cmd := exec.Command(os.Args[0])
	var env []string
	for _, e := range os.Environ() {
		if sc.Setup.PATH != nil && strings.HasPrefix(e, "PATH=") {
			continue
		}
		env = append(env, e)
	}
	if sc.Setup.PATH != nil && *sc.Setup.PATH != "-" {
		env = append(env, "PATH="+strings.ReplaceAll(*sc.Setup.PATH, "$TMP", tmp))
	}
	// Race-detector builds of the runner would sleep a second at exit.
	env = append(env, "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	env = append(env, envRunner+"="+eng.Name, envScenario+"="+scFile, envTmp+"="+tmp,
		envProbe+"="+probe, envResult+"="+resFile)
	for _, e := range eng.Env {
		env = append(env, strings.ReplaceAll(e, "$LIB", libPath))
	}
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: sc.Setup.Session}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "runner %s: %s", eng.Name, out)
	data, err = os.ReadFile(resFile)
	require.NoError(t, err)
	var res Result
	require.NoError(t, json.Unmarshal(data, &res))
	require.Empty(t, res.Fatal, "runner %s failed", eng.Name)
	return &res, tmp
}

// checkInvariants holds for every engine, the oracle included.
func checkInvariants(t *testing.T, r *Result) {
	t.Helper()
	assert.Empty(t, r.LeakedFDs, "%s: descriptors leaked into the parent", r.Engine)
	assert.Zero(t, r.Zombies, "%s: children left unreaped", r.Engine)
	assert.False(t, r.PidWritten, "%s: pid written on failure", r.Engine)
	if r.Errno == 0 && r.AddErrno == 0 {
		assert.Positive(t, r.ChildPID, "%s: success without a child", r.Engine)
	}
}

func TestDifferential(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	for _, sc := range Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			if sc.Attr != nil && sc.Attr.Cgroup != "" {
				prepareCgroup(t, sc.Attr.Cgroup)
			}
			var want View
			if !sc.NoOracle {
				ref, tmp := runOne(t, sc, Glibc, probe)
				checkInvariants(t, ref)
				want = Normalize(ref, tmp)
			}
			for _, eng := range Engines {
				if sc.Only != nil && !slices.Contains(sc.Only, eng.Name) {
					continue
				}
				got, tmp := runOne(t, sc, eng, probe)
				checkInvariants(t, got)
				view := Normalize(got, tmp)
				if sc.NoOracle {
					checkWant(t, sc, eng, got, view)
					continue
				}
				assert.Equal(t, want, view, "engine %s differs from glibc", eng.Name)
			}
		})
	}
}

// checkWant checks an engine where glibc cannot be the oracle.
func checkWant(t *testing.T, sc Scenario, eng Engine, r *Result, v View) {
	t.Helper()
	w := sc.Want
	require.NotNil(t, w, "scenario without oracle needs Want")
	errno := w.Errno
	if e, ok := w.Errnos[eng.Name]; ok {
		errno = e
	}
	assert.Equal(t, errnoName(errno), v.Errno, eng.Name)
	if w.CGroup != "" && errno == 0 {
		require.NotNil(t, v.Obs, eng.Name)
		assert.Contains(t, v.Obs.CGroup, w.CGroup, eng.Name)
	}
}

// TestScenarioNamesUnique keeps failures attributable.
func TestScenarioNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, sc := range Scenarios() {
		assert.False(t, seen[sc.Name], "duplicate scenario %s", sc.Name)
		seen[sc.Name] = true
	}
}

// prepareCgroup makes a cgroup v2 folder for the SETCGROUP scenario.
func prepareCgroup(t *testing.T, dir string) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(dir), &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Skipf("no cgroup v2 hierarchy at %s", filepath.Dir(dir))
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		t.Skipf("cannot create a cgroup (%v): needs root", err)
	}
	t.Cleanup(func() { os.Remove(dir) })
}
