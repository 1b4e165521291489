package ptrace

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/internal/trace"
	"github.com/forkless/forkless/libos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestFilterBytes(t *testing.T) {
	b := New(newRecorder(), libos.Policy{})
	defer b.Close()
	f := b.Filter()
	require.NotEmpty(t, f)
	require.Zero(t, len(f)%8)
	require.Equal(t, filterBytes(), f)
}

// TestStaticCreation runs a static program that creates processes in each
// way natively and traced: same output and status, and the events each
// way must produce.
func TestStaticCreation(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	tiny := testbin.MustBuild(t, testbin.Tiny)
	for _, tc := range []struct {
		args  []string
		check func(t *testing.T, root int, evs []trace.Event)
	}{
		{[]string{"forkexec", tiny}, func(t *testing.T, root int, evs []trace.Event) {
			forks := find(evs, func(e trace.Event) bool { return e.Event == trace.EventFork && e.PID == root })
			require.Len(t, forks, 1)
			assert.Equal(t, trace.ViaFork, forks[0].Via)
			assert.Equal(t, 1, forks[0].Threads)
			child := forks[0].Child
			execs := find(evs, func(e trace.Event) bool { return e.Event == trace.EventExec && e.PID == child })
			require.Len(t, execs, 1)
			assert.Equal(t, tiny, execs[0].Path)
			assert.Equal(t, root, execs[0].PPID)
		}},
		{[]string{"vforkexec", tiny}, func(t *testing.T, root int, evs []trace.Event) {
			sp := find(evs, func(e trace.Event) bool { return e.Event == trace.EventSpawn && e.PID == root })
			require.Len(t, sp, 1)
			assert.Equal(t, trace.ViaVfork, sp[0].Via)
			assert.Equal(t, tiny, sp[0].Path)
			assert.Equal(t, []string{tiny}, sp[0].Argv)
			assert.NotZero(t, sp[0].Child)
		}},
		{[]string{"vforkexit"}, func(t *testing.T, root int, evs []trace.Event) {
			f := find(evs, func(e trace.Event) bool { return e.Event == trace.EventFork && e.PID == root })
			require.Len(t, f, 1)
			assert.Equal(t, trace.ViaVfork, f[0].Via)
			ex := find(evs, func(e trace.Event) bool { return e.Event == trace.EventExit && e.PID == f[0].Child })
			require.Len(t, ex, 1)
			assert.Equal(t, 3<<8, *ex[0].Status)
		}},
		{[]string{"spawn", tiny}, func(t *testing.T, root int, evs []trace.Event) {
			sp := find(evs, func(e trace.Event) bool { return e.Event == trace.EventSpawn && e.PID == root })
			require.Len(t, sp, 1)
			assert.Equal(t, trace.ViaVfork, sp[0].Via)
			assert.Equal(t, tiny, sp[0].Path)
			assert.Zero(t, sp[0].Errno)
		}},
		{[]string{"spawn", "/nonexistent/prog"}, func(t *testing.T, root int, evs []trace.Event) {
			// The attempt, then its failure; no fork line for the child
			// that never ran a program.
			sp := find(evs, func(e trace.Event) bool {
				return e.PID == root && e.Event != trace.EventExit && e.Event != trace.EventExec
			})
			require.Len(t, sp, 2, "%+v", sp)
			assert.Equal(t, trace.EventSpawn, sp[0].Event)
			assert.Equal(t, 0, sp[0].Errno)
			assert.Equal(t, trace.EventSpawn, sp[1].Event)
			assert.Equal(t, int(unix.ENOENT), sp[1].Errno)
			assert.Equal(t, "/nonexistent/prog", sp[1].Path)
			assert.Equal(t, sp[0].Child, sp[1].Child)
		}},
		{[]string{"forkexec", "/nonexistent/prog"}, func(t *testing.T, root int, evs []trace.Event) {
			ex := find(evs, func(e trace.Event) bool { return e.Event == trace.EventExec && e.Path == "/nonexistent/prog" })
			require.Len(t, ex, 2)
			assert.Equal(t, 0, ex[0].Errno)
			assert.NotEmpty(t, ex[0].FDs)
			assert.Equal(t, int(unix.ENOENT), ex[1].Errno)
		}},
		{[]string{"system", "echo sys; exit 4"}, func(t *testing.T, root int, evs []trace.Event) {
			sp := find(evs, func(e trace.Event) bool { return e.Event == trace.EventSpawn && e.PID == root })
			require.Len(t, sp, 1)
			assert.Equal(t, "/bin/sh", sp[0].Path)
			assert.Equal(t, []string{"sh", "-c", "echo sys; exit 4"}, sp[0].Argv)
		}},
		{[]string{"popen", "echo pop; /bin/echo two"}, func(t *testing.T, root int, evs []trace.Event) {
			sp := find(evs, func(e trace.Event) bool { return e.Event == trace.EventSpawn && e.PID == root })
			require.Len(t, sp, 1)
			assert.Equal(t, "/bin/sh", sp[0].Path)
			// The shell (traced too) starts /bin/echo.
			echo := find(evs, func(e trace.Event) bool { return e.Path == "/bin/echo" && e.Errno == 0 })
			require.NotEmpty(t, echo)
			require.NotEmpty(t, echo[0].FDs)
			assert.Equal(t, 1, echo[0].FDs[1].FD)
			assert.True(t, strings.HasPrefix(echo[0].FDs[1].Target, "pipe:"), echo[0].FDs[1].Target)
		}},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			argv := append([]string{static}, tc.args...)
			nat := runNative(t, os.Environ(), argv...)
			res := runTraced(t, runOpts{}, argv...)
			assert.Equal(t, nat.out, res.out)
			assert.Equal(t, nat.status(), res.status())
			assert.Empty(t, res.errOut)
			root := rootPID(t, res.events, static)
			tc.check(t, root, res.events)
			// Every process that was created also ended.
			for _, e := range res.events {
				if e.Child > 0 && e.Errno == 0 {
					assert.Len(t, find(res.events, func(x trace.Event) bool { return x.Event == trace.EventExit && x.PID == e.Child }), 1,
						"exit of %d", e.Child)
				}
			}
		})
	}
}

// rootPID returns the pid of the root, from its exec through the stub.
func rootPID(t *testing.T, evs []trace.Event, path string) int {
	t.Helper()
	for _, e := range evs {
		if e.Event == trace.EventExec && e.Path == path {
			return e.PID
		}
	}
	t.Fatalf("no exec of %s in %v", path, evs)
	return 0
}

func TestExitStatuses(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	for _, args := range [][]string{{"exit", "0"}, {"exit", "42"}, {"kill", "15"}, {"kill", "9"}, {"kill", "6"}, {"kill", "11"}} {
		t.Run(strings.Join(args, "-"), func(t *testing.T) {
			argv := append([]string{static}, args...)
			nat := runNative(t, os.Environ(), argv...)
			res := runTraced(t, runOpts{}, argv...)
			// The raw status, core-dump bit included, is the native one.
			assert.Equal(t, rawStatus(t, argv), int(res.ws))
			assert.Equal(t, nat.status(), res.status())
			root := rootPID(t, res.events, static)
			ex := find(res.events, func(e trace.Event) bool { return e.Event == trace.EventExit && e.PID == root })
			require.Len(t, ex, 1)
			assert.Equal(t, int(res.ws), *ex[0].Status)
		})
	}
}

// TestCoreDump: a signal death with a core dump keeps the core-dump bit.
// The core file goes to a temporary working directory (core_pattern
// permitting; the test skips when it names a pipe or an absolute path).
func TestCoreDump(t *testing.T) {
	pat, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	require.NoError(t, err)
	if p := strings.TrimSpace(string(pat)); p == "" || p[0] == '|' || p[0] == '/' {
		t.Skipf("core_pattern %q does not write into the working directory", p)
	}
	static := testbin.MustBuild(t, staticProg)
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	require.NoError(t, err)
	defer null.Close()
	p, err := os.StartProcess(static, []string{static, "core", "11"}, &os.ProcAttr{Dir: t.TempDir(), Files: []*os.File{null, null, null}})
	require.NoError(t, err)
	var nat unix.WaitStatus
	_, err = unix.Wait4(p.Pid, &nat, 0, nil)
	require.NoError(t, err)
	if !nat.CoreDump() {
		t.Skip("no core dump natively (RLIMIT_CORE or core_pattern)")
	}
	res := runTraced(t, runOpts{dir: t.TempDir()}, static, "core", "11")
	assert.Equal(t, int(nat), int(res.ws))
	assert.True(t, res.ws.CoreDump())
}

// rawStatus runs argv natively and returns its raw wait status.
func rawStatus(t *testing.T, argv []string) int {
	t.Helper()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	require.NoError(t, err)
	defer null.Close()
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Files: []*os.File{null, null, null}})
	require.NoError(t, err)
	var ws unix.WaitStatus
	_, err = unix.Wait4(p.Pid, &ws, 0, nil)
	require.NoError(t, err)
	return int(ws)
}

// TestThreadExec: a thread other than the leader execs; the process
// keeps its pid and the new program runs alone.
func TestThreadExec(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	res := runTraced(t, runOpts{}, static, "threadexec", static, "exit", "9")
	assert.Equal(t, "exit 9", res.status())
	root := rootPID(t, res.events, static)
	ex := find(res.events, func(e trace.Event) bool {
		return e.Event == trace.EventExec && e.PID == root && slices.Equal(e.Argv, []string{static, "exit", "9"})
	})
	require.Len(t, ex, 1)
	assert.NotEqual(t, root, ex[0].TID, "exec'd by the second thread")
	exits := find(res.events, func(e trace.Event) bool { return e.Event == trace.EventExit })
	require.Len(t, exits, 1)
	assert.Equal(t, 9<<8, *exits[0].Status)
}

// TestArgvBounds: argv is cut at trace.MaxArgv entries of trace.MaxArgLen
// bytes, non-UTF-8 bytes become U+FFFD.
func TestArgvBounds(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	argv := []string{static, "fds", "0", strings.Repeat("x", 300), "a\xffb"}
	for len(argv) < 40 {
		argv = append(argv, "more")
	}
	res := runTraced(t, runOpts{}, argv...)
	assert.Equal(t, "exit 0", res.status())
	ex := find(res.events, func(e trace.Event) bool { return e.Event == trace.EventExec })
	require.Len(t, ex, 1)
	assert.True(t, ex[0].ArgvTruncated)
	require.Len(t, ex[0].Argv, trace.MaxArgv)
	assert.Equal(t, strings.Repeat("x", trace.MaxArgLen), ex[0].Argv[3])
	assert.Equal(t, "a\uFFFDb", ex[0].Argv[4])
}

func TestUntracedRoot(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	res := runTraced(t, runOpts{untrace: true}, static, "exit", "5")
	assert.Equal(t, 5, res.ws.ExitStatus())
	require.Len(t, res.events, 1)
	assert.Equal(t, trace.EventExit, res.events[0].Event)
	assert.Equal(t, 5<<8, *res.events[0].Status)
}

func TestJobControl(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	res := runTraced(t, runOpts{}, static, "stopcont")
	assert.Equal(t, "stopcont: OK\n", res.out)
	assert.Equal(t, 0, res.ws.ExitStatus())
}

func TestSignalForwarded(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	exe, _ := os.Executable()
	rec := newRecorder()
	tr := New(rec, libos.Policy{})
	done := make(chan unix.WaitStatus, 1)
	go func() {
		ws, err := tr.Run(Spec{Path: static, Argv: []string{static, "waitsig"}, Stdout: w, Traced: true, Stub: exe})
		assert.NoError(t, err)
		done <- ws
	}()
	c := lines(r)
	require.Equal(t, "waitsig: ready", <-c)
	require.NoError(t, tr.Signal(unix.SIGUSR1))
	assert.Equal(t, "waitsig: got 10", <-c)
	ws := <-done
	w.Close()
	tr.mu.Lock()
	bell := tr.bell
	tr.mu.Unlock()
	bellStart, ok := startNs(bell)
	require.True(t, ok, "the doorbell runs until Close")
	require.NoError(t, tr.Close())
	if start, ok := startNs(bell); ok {
		assert.NotEqual(t, bellStart, start, "the doorbell is gone after Close")
	}
	assert.Equal(t, 0, ws.ExitStatus())
	rec.check(t)
	requireGone(t, rec.snapshot())
}

// TestSignalBeforeRoot: a signal forwarded before root is known (as when
// CMD runs before Run has published it) is held, not dropped; once root
// has ended, Signal says so.
func TestSignalBeforeRoot(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	exe, _ := os.Executable()
	for _, traced := range []bool{false, true} {
		tr := New(newRecorder(), libos.Policy{})
		require.NoError(t, tr.Signal(unix.SIGTERM))
		ws, err := tr.Run(Spec{Path: static, Argv: []string{static, "waitsig"}, Traced: traced, Stub: exe})
		require.NoError(t, err)
		assert.True(t, ws.Signaled() && ws.Signal() == unix.SIGTERM, "traced=%v: %v", traced, ws)
		assert.Error(t, tr.Signal(unix.SIGTERM), "root has ended")
		require.NoError(t, tr.Close())
	}
}

func TestPtraceRefused(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	res := runTraced(t, runOpts{}, static, "ptrace")
	assert.Equal(t, "ptrace: -1 EPERM\n", res.out)
	assert.Equal(t, 0, res.ws.ExitStatus())
	root := rootPID(t, res.events, static)
	assert.Equal(t, "forkless: pid "+strconv.Itoa(root)+" (forkless-static) called ptrace: processes on the ptrace platform cannot trace others\n", res.errOut)
}

func TestExecDenied(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	tiny := testbin.MustBuild(t, testbin.Tiny)
	res := runTraced(t, runOpts{pol: libos.Policy{ExecDeny: []string{"forkless-tiny"}}}, static, "spawn", tiny)
	assert.Equal(t, "spawn: errno 13\n", res.out)
	root := rootPID(t, res.events, static)
	sp := find(res.events, func(e trace.Event) bool { return e.Event == trace.EventSpawn && e.PID == root })
	require.Len(t, sp, 1)
	assert.Equal(t, int(unix.EACCES), sp[0].Errno)
	assert.Equal(t, trace.PolicyExecDeny, sp[0].Policy)
	assert.Equal(t, tiny, sp[0].Path)

	res = runTraced(t, runOpts{pol: libos.Policy{ExecDeny: []string{"forkless-tiny"}}}, static, "forkexec", tiny)
	assert.Contains(t, res.out, "forkexec: FAIL status")
	ex := find(res.events, func(e trace.Event) bool { return e.Event == trace.EventExec && e.Path == tiny })
	require.Len(t, ex, 1)
	assert.Equal(t, int(unix.EACCES), ex[0].Errno)
	assert.Equal(t, trace.PolicyExecDeny, ex[0].Policy)
}

func TestStrictInheritance(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	for _, tc := range []struct {
		keep   []int
		want   string
		closed int
	}{
		{nil, "0 1 2", 2},
		{[]int{7}, "0 1 2 7", 1},
		{[]int{3, 7}, "0 1 2 3 7", 0},
	} {
		for _, how := range []string{"keepfd", "dupspawn"} {
			t.Run(how+"-"+strconv.Itoa(len(tc.keep)), func(t *testing.T) {
				pol := libos.Policy{FDs: libos.FDsStrict, KeepFDs: tc.keep}
				// fd 3 (/dev/null) dup'd to 7, both inheritable, then an exec
				// (keepfd) or a posix_spawn (dupspawn) of "fds", which lists
				// what it got.
				res := runTraced(t, runOpts{pol: pol}, static, how, "7", static, "fds")
				got := strings.Fields(res.out)
				slices.SortFunc(got, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
				assert.Equal(t, tc.want, strings.Join(got, " "))
				ex := find(res.events, func(e trace.Event) bool {
					return (e.Event == trace.EventExec || e.Event == trace.EventSpawn) && e.Errno == 0 && slices.Equal(e.Argv, []string{static, "fds"})
				})
				require.Len(t, ex, 1)
				assert.Equal(t, tc.closed, ex[0].StrictClosed)
				var fds []string
				for _, f := range ex[0].FDs {
					fds = append(fds, strconv.Itoa(f.FD))
					assert.Zero(t, f.Flags&unix.O_CLOEXEC)
				}
				assert.Equal(t, tc.want, strings.Join(fds, " "))
			})
		}
	}
}

// TestStrictKeepsFileActions: a static program's posix_spawn under strict
// inheritance keeps what its file actions set up (as the library does
// for dynamic programs) and closes only the leak.
func TestStrictKeepsFileActions(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	sorted := func(out string) string {
		got := strings.Fields(out)
		slices.SortFunc(got, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
		return strings.Join(got, " ")
	}
	argv := []string{static, "actspawn", "7", static, "fds"}
	native := runNative(t, os.Environ(), argv...)
	require.Equal(t, "exit 0", native.status(), native.errOut)
	require.Equal(t, "0 1 2 7 8 9 10", sorted(native.out), "file actions at 7, 9, 10; 8 leaks")
	for _, tc := range []struct {
		pol    libos.Policy
		want   string
		closed int
	}{
		{libos.Policy{}, "0 1 2 7 8 9 10", 0},
		{libos.Policy{FDs: libos.FDsStrict}, "0 1 2 7 9 10", 1},
		{libos.Policy{FDs: libos.FDsStrict, KeepFDs: []int{8}}, "0 1 2 7 8 9 10", 0},
	} {
		res := runTraced(t, runOpts{pol: tc.pol}, argv...)
		assert.Equal(t, "exit 0", res.status(), res.errOut)
		assert.Equal(t, tc.want, sorted(res.out), "%+v", tc.pol)
		sp := find(res.events, func(e trace.Event) bool {
			return e.Event == trace.EventSpawn && slices.Equal(e.Argv, []string{static, "fds"})
		})
		require.Len(t, sp, 1)
		assert.Equal(t, tc.closed, sp[0].StrictClosed, "%+v", tc.pol)
		var fds []string
		for _, f := range sp[0].FDs {
			fds = append(fds, strconv.Itoa(f.FD))
		}
		assert.Equal(t, tc.want, strings.Join(fds, " "), "the spawn line lists what the program got")
	}
}

func TestMaxProcs(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	tiny := testbin.MustBuild(t, testbin.Tiny)
	rec := newRecorder()
	rec.allow = 0
	res := runTraced(t, runOpts{rec: rec}, static, "forkexec", tiny)
	assert.Equal(t, "forkexec: FAIL fork (Resource temporarily unavailable)\n", res.out)
	f := find(res.events, func(e trace.Event) bool { return e.Event == trace.EventFork })
	require.Len(t, f, 1)
	assert.Equal(t, int(unix.EAGAIN), f[0].Errno)
	assert.Equal(t, trace.PolicyMaxProcs, f[0].Policy)

	rec = newRecorder()
	rec.allow = 0
	res = runTraced(t, runOpts{rec: rec}, static, "spawn", tiny)
	assert.Equal(t, "spawn: errno 11\n", res.out)
	sp := find(res.events, func(e trace.Event) bool { return e.Event == trace.EventSpawn })
	require.Len(t, sp, 1)
	assert.Equal(t, trace.PolicyMaxProcs, sp[0].Policy)
}

// TestRaces forks while other threads change the descriptor table and the
// address space; the fork's snapshot must be exactly what the child got.
func TestRaces(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	n := "60"
	if testing.Short() {
		n = "20"
	}
	for _, kind := range []string{"close", "mmap", "mprotect", "thread", "sbrk"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			res := runTraced(t, runOpts{}, static, "race", kind, n, dir)
			require.Equal(t, "race "+kind+": OK "+n+" forks, 0 failures\n", res.out)
			forks := find(res.events, func(e trace.Event) bool { return e.Event == trace.EventFork && e.Via == trace.ViaFork })
			require.Len(t, forks, mustAtoi(t, n))
			multi := 0
			for _, f := range forks {
				if f.Threads > 1 {
					multi++
				}
				b, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(f.Child)))
				require.NoError(t, err)
				var snap []string
				for _, fd := range f.FDs {
					snap = append(snap, strconv.Itoa(fd.FD))
				}
				got := strings.Fields(string(b))
				slices.SortFunc(got, func(a, b string) int { return mustAtoi(t, a) - mustAtoi(t, b) })
				require.Equal(t, strings.Join(snap, " "), strings.Join(got, " "), "child %d", f.Child)
			}
			assert.Equal(t, len(forks), multi, "forks with other threads running")
		})
	}
}

func mustAtoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}
