// Package peer re-checks, in Go, what glibc's own posix_spawn conformance
// tests (posix/tst-spawn*.c, tst-posix_spawn-*.c) verify, against every
// engine: glibc's posix_spawn called through internal/glibc, the forkless
// engine (package spawn), and the forkless engine with the clone3 fallback
// forced.
//
// State that cannot be restored safely in the test process (signal
// dispositions, RLIMIT_NOFILE, a full descriptor table, a controlling
// terminal) is changed only in helper processes: the test binary
// re-executed with envHelper naming the helper. Tests run one at a time:
// some hold descriptors without FD_CLOEXEC, or set PATH or the working
// directory, while they spawn.
package peer

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/forkless/forkless/internal/glibc"
	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/spawn"
	"github.com/forkless/forkless/tests/difftest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const (
	// envHelper names the helper a re-executed test binary runs.
	envHelper = "FORKLESS_PEER_HELPER"
	// envEngine names the engine a helper spawns with.
	envEngine = "FORKLESS_PEER_ENGINE"
	// envCloneChild marks the test binary re-executed for forkless-clone.
	envCloneChild = "FORKLESS_PEER_CLONE_CHILD"
	// envNoClone3 is read by package spawn at init.
	envNoClone3 = "FORKLESS_NO_CLONE3"
	// envProbeOut tells the probe where to write its observation.
	envProbeOut = "FORKLESS_PROBE_OUT"
)

// probePath is bin/forkless-probe, built by TestMain.
var probePath string

func TestMain(m *testing.M) {
	var err error
	if probePath, err = testbin.Build(testbin.Probe); err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(1)
	}
	// Create the descriptors the runtime makes lazily (the netpoller's),
	// so that descriptor checks see only what tests leak.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	if name := os.Getenv(envHelper); name != "" {
		helperMain(name)
	}
	if err := glibc.Load(); err != nil {
		fmt.Fprintln(os.Stderr, "peer: the glibc engine needs glibc:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TB is what the shared helpers need of a test: *testing.T, or *H in a
// helper process.
type TB interface {
	require.TestingT
	Helper()
	Cleanup(func())
	TempDir() string
	Logf(format string, args ...any)
}

// forEachEngine runs body as one subtest per engine. Each subtest must
// leave no child process and no new descriptor behind.
//
// forkless-clone needs FORKLESS_NO_CLONE3=1 at package init, so its
// subtest re-executes the test binary with that variable and a -test.run
// selecting just this subtest; the re-executed binary runs body with the
// forkless engine. Helper processes it starts inherit the variable.
func forEachEngine(t *testing.T, body func(t *testing.T, e Engine)) {
	t.Helper()
	for _, name := range engineNames {
		t.Run(name, func(t *testing.T) {
			if name == engForklessClone && os.Getenv(envCloneChild) != "1" {
				runCloneChild(t)
				return
			}
			if name == engForklessClone {
				require.Equal(t, "1", os.Getenv(envNoClone3), "the clone variant runs without %s=1", envNoClone3)
			}
			e, err := engineByName(name)
			require.NoError(t, err)
			checkClean(t)
			body(t, e)
		})
	}
}

// runCloneChild runs the current subtest in a copy of the test binary
// started with FORKLESS_NO_CLONE3=1 and reports its result.
func runCloneChild(t *testing.T) {
	top, sub, ok := strings.Cut(t.Name(), "/")
	require.True(t, ok, "not a subtest: %s", t.Name())
	run := "^" + regexp.QuoteMeta(top) + "$/^" + regexp.QuoteMeta(sub) + "$"
	cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.v", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(childEnv(envNoClone3), envCloneChild+"=1", envNoClone3+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s with %s=1 failed:\n%s", t.Name(), envNoClone3, out)
	switch {
	case strings.Contains(string(out), "--- PASS: "+t.Name()+" "):
		t.Logf("passed with %s=1 (%d tests passed in that process)", envNoClone3,
			strings.Count(string(out), "--- PASS: "))
	case strings.Contains(string(out), "--- SKIP: "+t.Name()+" "):
		t.Skipf("skipped with %s=1:\n%s", envNoClone3, out)
	default:
		t.Fatalf("%s did not run with %s=1:\n%s", t.Name(), envNoClone3, out)
	}
}

// childEnv is the environment for a re-executed test binary: this one's
// without the named variables, and with the race detector's one-second
// sleep at exit turned off (GORACE matters only to -race builds).
func childEnv(drop ...string) []string {
	var out []string
	gorace := "atexit_sleep_ms=0"
	for _, kv := range os.Environ() {
		name, value, _ := strings.Cut(kv, "=")
		switch {
		case name == "GORACE":
			gorace = value + " " + gorace
		case !slices.Contains(drop, name):
			out = append(out, kv)
		}
	}
	return append(out, "GORACE="+gorace)
}

// checkClean makes the test fail if, once it and its cleanups are done,
// this process has a child left or a descriptor it did not have before.
func checkClean(t *testing.T) {
	before := fdTable()
	t.Cleanup(func() {
		assertNoChildren(t)
		assert.Equal(t, before, fdTable(), "descriptors opened and not closed")
	})
}

// assertNoChildren fails unless this process has no child at all, reaping
// any zombie it finds.
func assertNoChildren(t TB) {
	t.Helper()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WALL, nil)
		switch {
		case err == unix.EINTR:
			continue
		case errors.Is(err, unix.ECHILD):
			return
		case err != nil:
			assert.NoError(t, err, "wait4(-1)")
			return
		case pid == 0:
			assert.Fail(t, "a child process is still running")
			return
		}
		assert.Fail(t, "an unreaped child", "pid %d, status %#x", pid, int(ws))
	}
}

// fdTable maps this process's descriptors to their targets.
func fdTable() map[int]string {
	m := map[int]string{}
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// The directory's own descriptor is closed by now: no target.
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			m[fd] = target
		}
	}
	return m
}

// inheritable returns, ascending, the descriptors of this process a child
// inherits through exec: those without FD_CLOEXEC.
func inheritable() []int {
	var fds []int
	for fd := range fdTable() {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err == nil && flags&unix.FD_CLOEXEC == 0 {
			fds = append(fds, fd)
		}
	}
	sort.Ints(fds)
	return fds
}

// fdsBelow returns the members of fds below limit, plus extra, sorted.
func fdsBelow(fds []int, limit int, extra ...int) []int {
	var drop []int
	for _, fd := range fds {
		if fd >= limit {
			drop = append(drop, fd)
		}
	}
	return intSet(fds, drop, extra...)
}

// intSet returns the members of base not in drop, plus add, sorted.
func intSet(base []int, drop []int, add ...int) []int {
	set := map[int]bool{}
	for _, fd := range base {
		set[fd] = true
	}
	for _, fd := range drop {
		delete(set, fd)
	}
	for _, fd := range add {
		set[fd] = true
	}
	out := make([]int, 0, len(set))
	for fd := range set {
		out = append(out, fd)
	}
	sort.Ints(out)
	return out
}

// obsFDs lists the descriptors the probe found open.
func obsFDs(obs *difftest.Observation) []int {
	out := []int{}
	for _, fd := range obs.FDs {
		out = append(out, fd.FD)
	}
	return out
}

// obsFD returns what the probe saw of fd, failing the test if it was closed.
func obsFD(t TB, obs *difftest.Observation, fd int) difftest.FD {
	t.Helper()
	for _, f := range obs.FDs {
		if f.FD == fd {
			return f
		}
	}
	require.Failf(t, "descriptor not open in the child", "fd %d; open: %v", fd, obsFDs(obs))
	return difftest.FD{}
}

// realTempDir is t.TempDir with symbolic links resolved, so that it
// compares equal to /proc/self/fd targets and getcwd results.
func realTempDir(t TB) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	return dir
}

// ---------- spawning ----------

// newActions returns an empty FileActions of e, destroyed at cleanup.
func newActions(t TB, e Engine) FileActions {
	t.Helper()
	fa, err := e.NewFileActions()
	require.NoError(t, err)
	t.Cleanup(fa.Destroy)
	return fa
}

// newAttr returns an Attr of e with flags set, destroyed at cleanup.
func newAttr(t TB, e Engine, flags spawn.Flag) Attr {
	t.Helper()
	a, err := e.NewAttr()
	require.NoError(t, err)
	t.Cleanup(a.Destroy)
	require.NoError(t, a.SetFlags(flags))
	return a
}

// spawnT spawns (or, with search, spawnps) and makes sure a child that the
// test does not wait for is killed and reaped at cleanup.
func spawnT(t TB, e Engine, search bool, path string, fa FileActions, attr Attr, argv, envv []string) (*Child, error) {
	t.Helper()
	var c *Child
	var err error
	if search {
		c, err = e.SpawnP(path, fa, attr, argv, envv)
	} else {
		c, err = e.Spawn(path, fa, attr, argv, envv)
	}
	if err == nil {
		t.Cleanup(c.reap)
	}
	return c, err
}

// waitExit waits for c and requires a normal exit with status code.
func waitExit(t TB, c *Child, code int) {
	t.Helper()
	ws, err := c.Wait()
	require.NoError(t, err)
	require.True(t, ws.Exited(), "child %d did not exit: status %#x", c.Pid, int(ws))
	require.Equal(t, code, ws.ExitStatus(), "exit status of child %d", c.Pid)
}

// probeRun describes one spawn of the probe.
type probeRun struct {
	path   string // what to spawn; the probe binary when empty
	search bool   // posix_spawnp
	argv   []string
	env    []string // besides FORKLESS_PROBE_OUT
}

// runProbe spawns the probe, which must start and exit 0, and returns its
// observation and pid.
func runProbe(t TB, e Engine, fa FileActions, attr Attr) (*difftest.Observation, int) {
	t.Helper()
	return runProbeWith(t, e, fa, attr, probeRun{})
}

func runProbeWith(t TB, e Engine, fa FileActions, attr Attr, r probeRun) (*difftest.Observation, int) {
	t.Helper()
	if r.path == "" {
		r.path = probePath
	}
	if r.argv == nil {
		r.argv = []string{"forkless-probe"}
	}
	out := filepath.Join(t.TempDir(), "observation.json")
	env := append(append([]string{}, r.env...), envProbeOut+"="+out)
	c, err := spawnT(t, e, r.search, r.path, fa, attr, r.argv, env)
	require.NoError(t, err, "spawn %s", r.path)
	waitExit(t, c, 0)
	obs, err := difftest.ReadObservation(out)
	require.NoError(t, err)
	require.Equal(t, c.Pid, obs.PID, "the observation is not the spawned child's")
	return obs, c.Pid
}

// requireErrno requires err to carry exactly want.
func requireErrno(t TB, want unix.Errno, err error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	var got unix.Errno
	require.True(t, errors.As(err, &got), "error without errno: %v", err)
	require.Equal(t, unix.ErrnoName(want), unix.ErrnoName(got), msgAndArgs...)
}

// ---------- helper processes ----------

// helpers are the functions a re-executed test binary can run; test files
// register theirs in init.
var helpers = map[string]func(h *H, e Engine){}

// helperOpts are how runHelper starts a helper.
type helperOpts struct {
	setsid bool     // in a new session, without a controlling terminal
	env    []string // extra environment
}

// runHelper runs the named helper with engine e in a new process; the
// helper's assertions decide its exit status.
func runHelper(t *testing.T, e Engine, name string, opts helperOpts) {
	t.Helper()
	_, ok := helpers[name]
	require.True(t, ok, "no helper %q", name)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(childEnv(), envHelper+"="+name, envEngine+"="+e.Name())
	cmd.Env = append(cmd.Env, opts.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: opts.setsid}
	out, err := cmd.CombinedOutput()
	if len(out) > 0 {
		t.Logf("helper %s (%s):\n%s", name, e.Name(), out)
	}
	require.NoError(t, err, "helper %s with engine %s failed:\n%s", name, e.Name(), out)
	require.Contains(t, string(out), "peer helper ok: "+name, "helper %s did not finish", name)
}

// H is the test handle inside a helper process: a failed assertion prints
// to stderr; FailNow runs the cleanups and exits 1.
type H struct {
	failed   bool
	cleanups []func()
}

func (h *H) Errorf(format string, args ...any) {
	h.failed = true
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func (h *H) FailNow() {
	h.runCleanups()
	os.Exit(1)
}

func (h *H) Helper()                         {}
func (h *H) Cleanup(f func())                { h.cleanups = append(h.cleanups, f) }
func (h *H) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func (h *H) TempDir() string {
	dir, err := os.MkdirTemp("", "forkless-peer-")
	require.NoError(h, err)
	h.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (h *H) runCleanups() {
	for i := len(h.cleanups) - 1; i >= 0; i-- {
		h.cleanups[i]()
	}
	h.cleanups = nil
}

// helperMain runs a helper and exits.
func helperMain(name string) {
	h := &H{}
	fn, ok := helpers[name]
	if !ok {
		h.Errorf("no helper %q", name)
		h.FailNow()
	}
	e, err := engineByName(os.Getenv(envEngine))
	require.NoError(h, err)
	if e.Name() == engForklessClone {
		require.Equal(h, "1", os.Getenv(envNoClone3), "forkless-clone helper without %s=1", envNoClone3)
	}
	// Start from stdio only. Descriptors inherited beyond it belong to
	// whatever ran the tests (exec passes on all that lack FD_CLOEXEC);
	// the runtime's own all have FD_CLOEXEC.
	for _, fd := range inheritable() {
		if fd > 2 {
			unix.Close(fd)
		}
	}
	// Masks are per thread: spawn from one thread throughout.
	runtime.LockOSThread()
	fn(h, e)
	h.runCleanups()
	assertNoChildren(h)
	if h.failed {
		os.Exit(1)
	}
	fmt.Println("peer helper ok: " + name)
	os.Exit(0)
}
