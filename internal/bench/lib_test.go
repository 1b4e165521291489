package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	libOnce sync.Once
	libPath string
	libErr  error
)

// testLib returns the preload library: $FORKLESS_TEST_LIB when set, else
// lib/libforkless.so as `make` builds it. It skips the test when there is
// none.
func testLib(t *testing.T) string {
	t.Helper()
	libOnce.Do(func() {
		if p := os.Getenv("FORKLESS_TEST_LIB"); p != "" {
			libPath, libErr = CheckLib(p)
			return
		}
		libPath, libErr = testbin.Lib()
	})
	if libErr != nil {
		first, _, _ := strings.Cut(libErr.Error(), "\n")
		t.Skipf("preload library not available (build it with `make lib/libforkless.so` or set FORKLESS_TEST_LIB): %s", first)
	}
	return libPath
}

func TestCheckLib(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "libx.so")
	require.NoError(t, os.WriteFile(lib, []byte("x"), 0o644))
	got, err := CheckLib(lib)
	require.NoError(t, err)
	assert.Equal(t, lib, got)

	_, err = CheckLib("")
	assert.Error(t, err)
	_, err = CheckLib(filepath.Join(dir, "missing.so"))
	assert.ErrorContains(t, err, "no such file")
	_, err = CheckLib(dir)
	assert.ErrorContains(t, err, "not a regular file")
	for _, bad := range []string{"lib x.so", "lib:x.so"} {
		p := filepath.Join(dir, bad)
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o644))
		_, err = CheckLib(p)
		assert.ErrorContains(t, err, "space or colon", bad)
	}
}

func TestResolveTargetsPreload(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "libforkless.so")
	require.NoError(t, os.WriteFile(lib, []byte("x"), 0o644))

	got, err := ResolveTargets([]string{TargetTrue, TargetTruePreload}, dir, lib)
	require.NoError(t, err)
	assert.Equal(t, []Target{
		{Name: TargetTrue, Path: "/bin/true"},
		{Name: TargetTruePreload, Path: "/bin/true", Env: []string{"LD_PRELOAD=" + lib}},
	}, got)
	assert.False(t, got[0].NeedsLib())
	assert.True(t, got[1].NeedsLib())

	_, err = ResolveTargets([]string{TargetTruePreload}, dir, "")
	assert.ErrorContains(t, err, "true+preload")
	_, err = ResolveTargets([]string{"sleep"}, dir, lib)
	assert.ErrorContains(t, err, "tiny, true, true+preload")

	// The default leaves true+preload out: it needs the library.
	got, err = ResolveTargets(nil, dir, "")
	require.Error(t, err, "no forkless-tiny in dir")
	assert.Nil(t, got)
}

func TestCommandLine(t *testing.T) {
	tr := Target{Name: TargetTrue, Path: "/bin/true"}
	line, err := command(EngineGlibcSpawn, tr, 5)
	require.NoError(t, err)
	assert.Equal(t, "posix_spawn /bin/true 5\n", line)
	line, err = command(EngineForklessC, tr, 2)
	require.NoError(t, err)
	assert.Equal(t, "posix_spawn /bin/true 2\n", line, "forkless-c is posix_spawn in a preloading host")

	pre := Target{Name: TargetTruePreload, Path: "/bin/true", Env: []string{"LD_PRELOAD=/r/lib/libforkless.so"}}
	line, err = command(EngineVforkExec, pre, 3)
	require.NoError(t, err)
	assert.Equal(t, "vfork /bin/true 3 LD_PRELOAD=/r/lib/libforkless.so\n", line)

	for _, env := range [][]string{{"A=b c"}, {"=x"}, {"novalue"}, {"A=1", "B=2"}} {
		_, err := command(EngineForkExec, Target{Name: "t", Path: "/bin/true", Env: env}, 1)
		assert.Error(t, err, "%q", env)
	}
	_, err = command(EngineGlibcSpawn, Target{Name: "t", Path: "/bin/tr\nue"}, 1)
	assert.Error(t, err)
	_, err = command(EngineOsExec, tr, 1)
	assert.ErrorContains(t, err, "does not run on the C host")
}

// TestCBenchProtocol talks to forkless-cbench directly: old lines keep
// their meaning, a last word with '=' is the child's environment entry.
func TestCBenchProtocol(t *testing.T) {
	cbench := testbin.MustBuild(t, testbin.CBench)
	in := strings.Join([]string{
		"posix_spawn /bin/true 2",
		"fork /bin/true 1 A=b",
		"vfork /bin/true 1 =b",
		"posix_spawn /bin/true A=b",
		"posix_spawn /no such/target 1 A=b",
		"posix_spawn /bin/true 0",
	}, "\n") + "\n"
	cmd := exec.Command(cbench, "0")
	cmd.Stdin = strings.NewReader(in)
	out, err := cmd.Output()
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	require.Len(t, lines, 6)
	assert.Regexp(t, `^\d+ \d+$`, lines[0])
	assert.Regexp(t, `^\d+$`, lines[1])
	assert.Equal(t, "error environment entry without a name", lines[2])
	assert.Equal(t, `error want "MECH TARGET N [ENV=VALUE]"`, lines[3])
	assert.Contains(t, lines[4], "error posix_spawn /no such/target", "the target still runs from the first space to the space before N")
	assert.Equal(t, "error bad count or target", lines[5])
}

func TestCHostEnv(t *testing.T) {
	t.Setenv("LD_PRELOAD", "/elsewhere/libother.so")
	t.Setenv("FORKLESS_BENCH_TEST", "1")
	plain := cHostEnv("")
	assert.Contains(t, plain, "FORKLESS_BENCH_TEST=1")
	for _, kv := range plain {
		assert.False(t, strings.HasPrefix(kv, "LD_PRELOAD="), "the plain host runs glibc's functions: %s", kv)
	}
	withLib := cHostEnv("/r/lib/libforkless.so")
	assert.Contains(t, withLib, "LD_PRELOAD=/r/lib/libforkless.so")
	assert.NotContains(t, withLib, "LD_PRELOAD=/elsewhere/libother.so")
}

// TestCHostRejectsUnloadableLibrary: the dynamic loader only warns about
// an LD_PRELOAD entry it cannot load; the host must not then measure
// glibc under forkless-c's name.
func TestCHostRejectsUnloadableLibrary(t *testing.T) {
	cbench := testbin.MustBuild(t, testbin.CBench)
	bogus := filepath.Join(t.TempDir(), "libbogus.so")
	require.NoError(t, os.WriteFile(bogus, []byte("not an ELF file\n"), 0o644))
	h, err := StartCHost(cbench, 0, bogus)
	require.NoError(t, err)
	defer h.Close()
	_, err = h.Batch(EngineForklessC, Target{Name: TargetTrue, Path: "/bin/true"}, 1)
	assert.ErrorContains(t, err, "did not load the library")
	_, err = h.Batch(EngineGlibcSpawn, Target{Name: TargetTrue, Path: "/bin/true"}, 1)
	assert.ErrorContains(t, err, "started without the preload library")
}

// TestForklessCGoesThroughLibrary checks that forkless-c's spawns are the
// library's: the host's posix_spawn binds to the library, and (with
// strace) the children come from the library's clone3, the one with
// CLONE_CLEAR_SIGHAND. glibc 2.36 uses clone3 too, but without that flag:
// it resets the signal handlers in the child one by one.
func TestForklessCGoesThroughLibrary(t *testing.T) {
	lib := testLib(t)
	cbench := testbin.MustBuild(t, testbin.CBench)
	tr := Target{Name: TargetTrue, Path: "/bin/true"}

	t.Run("bindings", func(t *testing.T) {
		// The loader's log of symbol bindings, from hosts started the
		// way Run starts them.
		dir := t.TempDir()
		t.Setenv("LD_DEBUG", "bindings")
		binding := func(lib, engine string) string {
			t.Setenv("LD_DEBUG_OUTPUT", filepath.Join(dir, engine))
			h, err := StartCHost(cbench, 0, lib)
			require.NoError(t, err)
			_, err = h.Batch(engine, tr, 2)
			require.NoError(t, err)
			pid := h.cmd.Process.Pid
			require.NoError(t, h.Close())
			log, err := os.ReadFile(filepath.Join(dir, engine) + "." + strconv.Itoa(pid))
			require.NoError(t, err)
			m := regexp.MustCompile(`binding file \S*forkless-cbench \[0\] to (\S+) \[0\]: normal symbol .posix_spawn.`).FindSubmatch(log)
			require.NotNil(t, m, "no binding of posix_spawn in the log of %s", engine)
			return string(m[1])
		}
		assert.Equal(t, lib, binding(lib, EngineForklessC))
		assert.Contains(t, binding("", EngineGlibcSpawn), "libc.so")
	})

	t.Run("strace", func(t *testing.T) {
		strace, err := exec.LookPath("strace")
		if err != nil {
			t.Skip("strace is not installed")
		}
		clones := func(preload bool) string {
			out := filepath.Join(t.TempDir(), "strace")
			args := []string{"-f", "-qq", "-o", out, "-e", "trace=clone,clone3,vfork,fork"}
			if preload {
				// -E: the host gets the library, strace does not.
				args = append(args, "-E", "LD_PRELOAD="+lib)
			}
			cmd := exec.Command(strace, append(args, cbench, "0")...)
			cmd.Env = cHostEnv("")
			cmd.Stdin = strings.NewReader("posix_spawn /bin/true 3\n")
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Skipf("strace cannot run here: %v: %s", err, msg)
			}
			b, err := os.ReadFile(out)
			require.NoError(t, err)
			return string(b)
		}
		withLib := clones(true)
		assert.Equal(t, 3, strings.Count(withLib, "CLONE_CLEAR_SIGHAND"), withLib)
		assert.Equal(t, 3, strings.Count(withLib, "CLONE_VM|CLONE_VFORK"), withLib)
		glibc := clones(false)
		assert.NotContains(t, glibc, "CLONE_CLEAR_SIGHAND", glibc)
		assert.Equal(t, 3, strings.Count(glibc, "CLONE_VM|CLONE_VFORK"), glibc)
	})
}
