// Package gramine runs reimplementations of Gramine's process-creation
// regression programs (fork_and_exec, exec, exec_fork, double_fork,
// pipe_ocloexec, fdleak, sighandler_reset, fork_and_access_file,
// vfork_and_exec) natively and under lib/libforkless.so. Each program
// checks its own semantics and prints "NAME: OK". The test requires the
// same exit status and output with the library as without it, and with
// FORKLESS_TRACE set it checks that the trace holds the events each
// program must produce.
package gramine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/internal/trace"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fdleakIterations is how many nested fork+exec rounds fdleak runs.
const fdleakIterations = 300

// runLimit only stops a hung program; no result depends on it.
const runLimit = 5 * time.Minute

// event is one trace line (schema v1).
type event trace.Event

func (e event) String() string {
	return fmt.Sprintf("{pid %d %s via %s errno %d child %d path %q argv %q}",
		e.PID, e.Event, e.Via, e.Errno, e.Child, e.Path, e.Argv)
}

func (e event) arg(i int) string {
	if i < len(e.Argv) {
		return e.Argv[i]
	}
	return ""
}

// hasFD reports whether the event lists a descriptor whose target
// satisfies match.
func (e event) hasFD(match func(fd int, target string) bool) bool {
	for _, f := range e.FDs {
		if match(f.FD, f.Target) {
			return true
		}
	}
	return false
}

// readTrace decodes a trace file; internal/trace checks every line against
// the schema (required fields, names, bounds) first.
func readTrace(t *testing.T, path string) []event {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err, "trace file")
	decoded, errs := trace.Decode(bytes.NewReader(data))
	require.Empty(t, errs, "trace lines off the schema")
	evs := make([]event, len(decoded))
	for i, e := range decoded {
		evs[i] = event(e)
	}
	return evs
}

// filter returns the events satisfying keep.
func filter(evs []event, keep func(e event) bool) []event {
	var out []event
	for _, e := range evs {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// one requires exactly one event satisfying keep and returns it.
func one(t *testing.T, evs []event, what string, keep func(e event) bool) event {
	t.Helper()
	got := filter(evs, keep)
	require.Len(t, got, 1, "want exactly one %s in the trace:\n%s", what, dump(evs))
	return got[0]
}

func dump(evs []event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// forkOf matches a successful fork event made by pid.
func forkOf(pid int) func(e event) bool {
	return func(e event) bool { return e.Event == "fork" && e.Via == "fork" && e.PID == pid && e.Errno == 0 }
}

// execBy matches a successful exec line written by pid whose argv[1] is mode.
func execBy(pid int, mode string) func(e event) bool {
	return func(e event) bool {
		return e.Event == "exec" && e.Via == "exec" && e.PID == pid && e.Errno == 0 && e.arg(1) == mode
	}
}

// failedExecs returns exec lines reporting a failure.
func failedExecs(evs []event) []event {
	return filter(evs, func(e event) bool { return e.Event == "exec" && e.Errno != 0 })
}

// program is one regression program and the trace it must produce. root
// is the pid of the process the test started; bin the program's path.
type program struct {
	name  string
	args  []string
	check func(t *testing.T, evs []event, root int, bin string)
}

var programs = []program{
	{name: "fork_and_exec", check: func(t *testing.T, evs []event, root int, bin string) {
		f := one(t, evs, "fork by the program", forkOf(root))
		require.Positive(t, f.Child)
		x := one(t, evs, "exec by the fork child", execBy(f.Child, "child"))
		assert.Equal(t, bin, x.Path)
		assert.Equal(t, root, x.PPID, "exec'd child's parent")
		assert.Equal(t, "last-arg", x.arg(3))
		assert.Empty(t, failedExecs(evs))
		assert.Len(t, evs, 2, "events:\n%s", dump(evs))
	}},
	{name: "exec", check: func(t *testing.T, evs []event, root int, bin string) {
		x := one(t, evs, "exec", execBy(root, "second"))
		assert.Equal(t, bin, x.Path)
		require.Len(t, x.Argv, 6)
		fd, _ := strconv.Atoi(x.Argv[2])
		c1, _ := strconv.Atoi(x.Argv[3])
		c2, _ := strconv.Atoi(x.Argv[4])
		file := x.Argv[5]
		assert.True(t, x.hasFD(func(n int, target string) bool { return n == fd && target == file }),
			"exec event does not list the inherited fd %d -> %s: %+v", fd, file, x.FDs)
		assert.False(t, x.hasFD(func(n int, _ string) bool { return n == c1 || n == c2 }),
			"exec event lists a close-on-exec fd (%d or %d): %+v", c1, c2, x.FDs)
		assert.Empty(t, failedExecs(evs))
		assert.Len(t, evs, 1, "events:\n%s", dump(evs))
	}},
	{name: "exec_fork", check: func(t *testing.T, evs []event, root int, bin string) {
		x := one(t, evs, "exec", execBy(root, "second"))
		assert.Equal(t, bin, x.Path)
		one(t, evs, "fork by the exec'd image", forkOf(root))
		assert.Less(t, slices.IndexFunc(evs, execBy(root, "second")), slices.IndexFunc(evs, forkOf(root)),
			"the fork must follow the exec")
		assert.Len(t, evs, 2, "events:\n%s", dump(evs))
	}},
	{name: "double_fork", check: func(t *testing.T, evs []event, root int, bin string) {
		c := one(t, evs, "fork by the program", forkOf(root))
		g := one(t, evs, "fork by the child", forkOf(c.Child))
		assert.Equal(t, root, g.PPID)
		assert.NotEqual(t, c.Child, g.Child)
		assert.Len(t, evs, 2, "events:\n%s", dump(evs))
	}},
	{name: "pipe_ocloexec", check: func(t *testing.T, evs []event, root int, bin string) {
		f := one(t, evs, "fork by the program", forkOf(root))
		x := one(t, evs, "exec by the fork child", execBy(f.Child, "child"))
		require.Len(t, x.Argv, 5)
		watch := "pipe:[" + x.Argv[4] + "]"
		ready, hold := atoi(x.Argv[2]), atoi(x.Argv[3])
		assert.False(t, x.hasFD(func(_ int, target string) bool { return target == watch }),
			"exec event lists the O_CLOEXEC pipe %s: %+v", watch, x.FDs)
		assert.True(t, x.hasFD(func(n int, target string) bool { return n == ready && strings.HasPrefix(target, "pipe:") }),
			"exec event lacks the inherited ready pipe %d: %+v", ready, x.FDs)
		assert.True(t, x.hasFD(func(n int, target string) bool { return n == hold && strings.HasPrefix(target, "pipe:") }),
			"exec event lacks the inherited hold pipe %d: %+v", hold, x.FDs)
	}},
	{name: "fdleak", args: []string{strconv.Itoa(fdleakIterations)}, check: func(t *testing.T, evs []event, root int, bin string) {
		forks := filter(evs, forkOf(root))
		assert.Len(t, forks, fdleakIterations, "forks by the top process")
		var middles, leaves int
		for _, f := range forks {
			x := filter(evs, execBy(f.Child, "middle"))
			if !assert.Len(t, x, 1, "exec of middle by %d", f.Child) {
				continue
			}
			middles++
			g := filter(evs, forkOf(f.Child))
			if !assert.Len(t, g, 1, "fork by middle %d", f.Child) {
				continue
			}
			if assert.Len(t, filter(evs, execBy(g[0].Child, "leaf")), 1, "exec of leaf by %d", g[0].Child) {
				leaves++
			}
		}
		assert.Equal(t, fdleakIterations, middles)
		assert.Equal(t, fdleakIterations, leaves)
		for _, e := range evs {
			assert.False(t, e.hasFD(func(_ int, target string) bool { return strings.Contains(target, "fdleak-cloexec") }),
				"an exec'd program would inherit a close-on-exec file: %s %+v", e, e.FDs)
		}
		assert.Empty(t, failedExecs(evs))
		assert.Len(t, evs, 4*fdleakIterations, "events")
	}},
	{name: "sighandler_reset", check: func(t *testing.T, evs []event, root int, bin string) {
		assert.Len(t, filter(evs, forkOf(root)), 2, "forks:\n%s", dump(evs))
		assert.Len(t, evs, 2, "events:\n%s", dump(evs))
	}},
	{name: "fork_and_access_file", check: func(t *testing.T, evs []event, root int, bin string) {
		assert.Len(t, filter(evs, forkOf(root)), 2, "forks:\n%s", dump(evs))
		assert.Len(t, evs, 2, "events:\n%s", dump(evs))
	}},
	{name: "vfork_and_exec", check: checkVforkAndExec},
}

// checkVforkAndExec: the vfork child's exec of the program is recorded as
// a spawn with via "vfork" on behalf of the caller of vfork (the library
// writes it from the vfork child with the caller's pid), listing fd 77;
// the failing execve of the second child is recorded once more with
// ENOENT.
func checkVforkAndExec(t *testing.T, evs []event, root int, bin string) {
	x := one(t, evs, "vfork exec of the program", func(e event) bool {
		return e.Event == "spawn" && e.Via == "vfork" && e.Path == bin && e.Errno == 0
	})
	assert.Equal(t, root, x.PID, "the vfork caller")
	assert.Positive(t, x.Child)
	assert.NotEqual(t, root, x.Child)
	assert.Equal(t, "child", x.arg(1))
	assert.True(t, x.hasFD(func(n int, target string) bool { return n == 77 && strings.HasPrefix(target, "pipe:") }),
		"vfork exec does not list the dup'd fd 77: %+v", x.FDs)
	bad := filter(evs, func(e event) bool { return e.Path == "/nonexistent/forkless-gramine" })
	require.NotEmpty(t, bad, "no event for the failing execve:\n%s", dump(evs))
	failed := filter(bad, func(e event) bool { return e.Errno != 0 })
	require.Len(t, failed, 1, "the failing execve must be reported once with its errno:\n%s", dump(bad))
	assert.Equal(t, int(syscall.ENOENT), failed[0].Errno)
	assert.Equal(t, root, failed[0].PID, "the vfork caller")
	assert.Equal(t, "vfork", failed[0].Via)
	assert.Len(t, evs, 3, "events:\n%s", dump(evs))
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// ---- locating and building ----

// build compiles every program into dir in parallel.
func build(t *testing.T, dir string) map[string]string {
	t.Helper()
	src, err := os.Getwd()
	require.NoError(t, err)
	bins := map[string]string{}
	errs := make([]error, len(programs))
	var wg sync.WaitGroup
	for i, p := range programs {
		out := filepath.Join(dir, p.name)
		bins[p.name] = out
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out,
				filepath.Join(src, "c", p.name+".c"))
			if msg, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("gcc %s.c: %v\n%s", p.name, err, msg)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	return bins
}

// ---- running ----

type result struct {
	pid    int
	code   int // exit code, or -signal
	stdout string
	stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// baseEnv is the test's environment without the library's variables.
func baseEnv(tmp string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LD_PRELOAD=") || strings.HasPrefix(kv, "FORKLESS_") ||
			strings.HasPrefix(kv, "TMPDIR=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "TMPDIR="+tmp)
}

func run(t *testing.T, bin string, args []string, extra ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runLimit)
	defer cancel()
	tmp := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = tmp
	cmd.Env = append(baseEnv(tmp), extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "%s did not finish within %v; stderr:\n%s", bin, runLimit, stderr.String())
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if cmd.Process != nil {
		r.pid = cmd.Process.Pid
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			r.code = -int(ws.Signal())
		} else {
			r.code = ws.ExitStatus()
		}
	default:
		require.NoError(t, err, "start %s", bin)
	}
	return r
}

func TestGramine(t *testing.T) {
	lib := testbin.Preload(t)
	bins := build(t, t.TempDir())
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			bin := bins[p.name]
			native := run(t, bin, p.args)
			require.Equal(t, 0, native.code, "native run failed (the program is wrong, not the library):\n%s", native)
			require.Contains(t, native.stdout, p.name+": OK\n", "native run:\n%s", native)

			pre := run(t, bin, p.args, "LD_PRELOAD="+lib)
			assert.Equal(t, native.code, pre.code, "exit status under the library:\n%s", pre)
			assert.Equal(t, native.stdout, pre.stdout, "output under the library:\n%s", pre)

			trace := filepath.Join(t.TempDir(), "trace.jsonl")
			tr := run(t, bin, p.args, "LD_PRELOAD="+lib, "FORKLESS_TRACE="+trace)
			assert.Equal(t, native.code, tr.code, "exit status under the library with a trace:\n%s", tr)
			assert.Equal(t, native.stdout, tr.stdout, "output under the library with a trace:\n%s", tr)
			p.check(t, readTrace(t, trace), tr.pid, bin)
		})
	}
}
