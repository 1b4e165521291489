// Package host runs small dynamic C programs (tests/hostprog) under
// lib/libforkless.so with a libos.Host in the test process, and checks
// what the host learns over its socket: events with the right fields
// (spawn, exec, fork, exit with its status), descriptors with their
// flags, the connection kept from programs (not inherited, not closable),
// reconnection after fork and exec, the exec policy, the strict policy,
// the process limit and adoption requests.
package host

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/internal/trace"
	"github.com/forkless/forkless/libos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var hostProg = testbin.Program{Dir: "hostprog", Out: "forkless-hostprog", Flags: []string{"-pthread"}}

// events decodes out, which must hold only good lines.
func events(t *testing.T, out *trace.Buffer) []trace.Event {
	t.Helper()
	evs, errs := out.Decode()
	require.Empty(t, errs)
	return evs
}

type env struct {
	h    *libos.Host
	out  *trace.Buffer
	prog string
	pre  string
}

func setup(t *testing.T, p libos.Policy) *env {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	e := &env{out: &trace.Buffer{}}
	e.prog = testbin.MustBuild(t, hostProg)
	e.pre = testbin.Preload(t)
	h, err := libos.NewHost(libos.Config{Policy: p, Trace: e.out, NoGuard: true, NoCgroup: true, Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	e.h = h
	return e
}

// run runs the test program with args under the library and the host;
// stdin, when not "", is written after the host knows the root.
func (e *env) run(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.prog, args...)
	cmd.Env = append(append(os.Environ(), e.h.Env()...), "LD_PRELOAD="+e.pre)
	var out, stderr bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	defer func() {
		if stderr.Len() > 0 {
			t.Logf("stderr of %v:\n%s", args, stderr.String())
		}
	}()
	w, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	e.h.Root(cmd.Process.Pid, e.prog, append([]string{e.prog}, args...), "")
	w.Write([]byte(stdin))
	w.Close()
	err = cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !assert.ErrorAs(t, err, &ee) {
		t.FailNow()
	}
	return out.String(), cmd.Process.Pid
}

// wait waits until the host has an event cond accepts, then returns all.
func (e *env) wait(t *testing.T, what string, cond func(ev trace.Event) bool) []trace.Event {
	t.Helper()
	var evs []trace.Event
	ok := assert.Eventually(t, func() bool {
		evs = events(t, e.out)
		for _, ev := range evs {
			if cond(ev) {
				return true
			}
		}
		return false
	}, 20*time.Second, 5*time.Millisecond, "no event: %s", what)
	if !ok {
		for _, ev := range evs {
			t.Logf("%+v", ev)
		}
		t.FailNow()
	}
	return evs
}

func find(evs []trace.Event, cond func(ev trace.Event) bool) []trace.Event {
	var r []trace.Event
	for _, ev := range evs {
		if cond(ev) {
			r = append(r, ev)
		}
	}
	return r
}

func outInt(t *testing.T, out, prefix string) []int {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, prefix+" "); ok {
			var vals []int
			for _, f := range strings.Fields(rest) {
				v, err := strconv.Atoi(f)
				require.NoError(t, err, l)
				vals = append(vals, v)
			}
			return vals
		}
	}
	t.Fatalf("no %q line in:\n%s", prefix, out)
	return nil
}

func argvIs(want ...string) func(ev trace.Event) bool {
	return func(ev trace.Event) bool {
		return ev.Event == trace.EventSpawn && ev.Errno == 0 && strings.Join(ev.Argv, " ") == strings.Join(want, " ")
	}
}

func TestEventsAndExitStatuses(t *testing.T) {
	e := setup(t, libos.Policy{})
	out, root := e.run(t, "", "spawn")
	forked := outInt(t, out, "fork")
	killed := outInt(t, out, "killed")[0]
	w4 := outInt(t, out, "wait4")
	assert.Equal(t, []int{0}, outInt(t, out, "spawn"))
	exitOf := func(pid int) func(ev trace.Event) bool {
		return func(ev trace.Event) bool { return ev.Event == trace.EventExit && ev.PID == pid }
	}
	evs := e.wait(t, "wait4's exit", exitOf(w4[0]))

	sp := find(evs, func(ev trace.Event) bool { return ev.Event == trace.EventSpawn && ev.PID == root })
	require.Len(t, sp, 1)
	assert.Equal(t, trace.ViaPosixSpawn, sp[0].Via)
	assert.Equal(t, "/bin/true", sp[0].Path)
	assert.Positive(t, sp[0].Child)
	require.NotEmpty(t, sp[0].FDs)
	flagged := 0
	for _, fd := range sp[0].FDs {
		if fd.Flags != 0 {
			flagged++
		}
	}
	assert.Positive(t, flagged, "descriptor flags from fdinfo: %+v", sp[0].FDs)
	ex := find(evs, exitOf(sp[0].Child))
	require.Len(t, ex, 1)
	assert.Equal(t, 0, *ex[0].Status)
	assert.Equal(t, root, ex[0].PPID, "the reaper")

	fk := find(evs, func(ev trace.Event) bool { return ev.Event == trace.EventFork && ev.Child == forked[0] })
	require.Len(t, fk, 1)
	assert.Equal(t, root, fk[0].PID)
	assert.NotEmpty(t, fk[0].FDs, "a fork carries the descriptors the child holds")
	for _, fd := range fk[0].FDs {
		assert.NotContains(t, fd.Target, "socket:", "the host connection is not listed")
	}
	ex = find(evs, exitOf(forked[0]))
	require.Len(t, ex, 1)
	assert.Equal(t, forked[1], *ex[0].Status)
	assert.Equal(t, 3<<8, *ex[0].Status)

	ex = find(evs, exitOf(killed))
	require.Len(t, ex, 1, "waitid reports")
	assert.Equal(t, 9, *ex[0].Status)
	ex = find(evs, exitOf(w4[0]))
	require.Len(t, ex, 1)
	assert.Equal(t, 5<<8, *ex[0].Status)
	assert.Equal(t, w4[1], *ex[0].Status)

	// The table has them, with their statuses.
	byPID := map[int]libos.Process{}
	for _, p := range e.h.Table() {
		byPID[p.PID] = p
	}
	require.Contains(t, byPID, forked[0])
	assert.Equal(t, root, byPID[forked[0]].PPID)
	assert.Equal(t, trace.ViaFork, byPID[forked[0]].Via)
	require.NotNil(t, byPID[forked[0]].Status)
	assert.Equal(t, 3<<8, *byPID[forked[0]].Status)
	assert.Zero(t, e.h.BadLines())
}

// Threads racing to connect: every line arrives, on one connection or
// another, and none is garbled.
func TestThreads(t *testing.T) {
	e := setup(t, libos.Policy{})
	out, root := e.run(t, "", "threads")
	assert.NotContains(t, out, "failed")
	spawnsAndExits := func(evs []trace.Event) (int, int) {
		s := find(evs, func(ev trace.Event) bool { return ev.Event == trace.EventSpawn && ev.PID == root })
		x := find(evs, func(ev trace.Event) bool { return ev.Event == trace.EventExit && ev.PPID == root })
		return len(s), len(x)
	}
	assert.Eventually(t, func() bool {
		s, x := spawnsAndExits(events(t, e.out))
		return s == 160 && x == 160
	}, 20*time.Second, 10*time.Millisecond)
	s, x := spawnsAndExits(events(t, e.out))
	assert.Equal(t, 160, s)
	assert.Equal(t, 160, x)
	assert.Zero(t, e.h.BadLines())
}

func TestHostFDNotInherited(t *testing.T) {
	e := setup(t, libos.Policy{})
	out, _ := e.run(t, "", "inherit")
	assert.Contains(t, out, "fd 0 ")
	assert.Contains(t, out, "sh ")
	for _, l := range strings.Split(out, "\n") {
		assert.NotContains(t, l, "socket:", "a child holds a socket: %s", l)
	}
	e.wait(t, "the system spawn", func(ev trace.Event) bool { return ev.Via == trace.ViaSystem })
}

func TestProgramCannotCloseTheConnection(t *testing.T) {
	e := setup(t, libos.Policy{})
	out, _ := e.run(t, "", "clobber")
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, "closed "); ok {
			n, _ := strconv.Atoi(rest)
			assert.Less(t, n, 1000, "closed the library's descriptor %d", n) // (the test may leak a few low ones)
		}
	}
	assert.Equal(t, []int{7}, outInt(t, out, "after dup2"))
	assert.Equal(t, []int{8}, outInt(t, out, "after dup3"))
	assert.Equal(t, []int{9}, outInt(t, out, "after close_range"))
	assert.Equal(t, []int{10}, outInt(t, out, "after closefrom"))
	for _, code := range []string{"7", "8", "9", "10"} {
		e.wait(t, "spawn after clobbering, exit "+code, argvIs("exit", "exit", code))
	}
	assert.Zero(t, e.h.BadLines())
}

func TestReconnectAfterForkAndExec(t *testing.T) {
	e := setup(t, libos.Policy{})
	out, root := e.run(t, "", "forkexec")
	child := outInt(t, out, "forked")
	require.Equal(t, 12, child[1], "the exec'd image's spawn exited 12")
	// Lines of different connections may be handled in any order.
	e.wait(t, "the spawn after exec", argvIs("exit", "exit", "12"))
	e.wait(t, "the fork", func(ev trace.Event) bool { return ev.Event == trace.EventFork && ev.Child == child[0] })
	evs := e.wait(t, "the fork child's spawn", argvIs("exit", "exit", "11"))
	s11 := find(evs, argvIs("exit", "exit", "11"))
	if !assert.Len(t, s11, 1) {
		for _, ev := range evs {
			t.Logf("%+v", ev)
		}
	}
	assert.Equal(t, child[0], s11[0].PID, "the fork child reports as itself")
	assert.Equal(t, root, s11[0].PPID)
	s12 := find(evs, argvIs("exit", "exit", "12"))
	assert.Equal(t, child[0], s12[0].PID, "the exec'd image reports")
	// The exec line comes on the connection the exec ends; it may be
	// handled after the new image's lines.
	isExec := func(ev trace.Event) bool { return ev.Event == trace.EventExec && ev.PID == child[0] }
	exe := find(e.wait(t, "the fork child's exec", isExec), isExec)
	assert.Equal(t, []string{e.prog, "spawn1"}, exe[0].Argv)
	e.wait(t, "the fork child's exit", func(ev trace.Event) bool {
		return ev.Event == trace.EventExit && ev.PID == child[0] && *ev.Status == 12<<8
	})
}

func TestExecDeny(t *testing.T) {
	e := setup(t, libos.Policy{ExecDeny: []string{"true", "/bin/sh"}})
	out, _ := e.run(t, "", "deny", "/bin/true")
	assert.Equal(t, []int{13}, outInt(t, out, "posix_spawn"))
	assert.Equal(t, []int{13}, outInt(t, out, "posix_spawnp"))
	assert.Equal(t, []int{127 << 8}, outInt(t, out, "system"))
	assert.Equal(t, []int{13}, outInt(t, out, "execv errno"))
	assert.Equal(t, []int{13}, outInt(t, out, "vfork exec errno"))
	assert.Equal(t, []int{4}, outInt(t, out, "allowed"))
	e.wait(t, "the allowed spawn", argvIs("exit", "exit", "4"))
	// (The fork child's line comes on its own connection.)
	evs := e.wait(t, "the fork child's denied exec", func(ev trace.Event) bool {
		return ev.Event == trace.EventExec && ev.Policy == trace.PolicyExecDeny
	})
	denied := find(evs, func(ev trace.Event) bool { return ev.Policy == trace.PolicyExecDeny })
	vias := map[string]bool{}
	for _, ev := range denied {
		assert.Equal(t, 13, ev.Errno)
		vias[ev.Via] = true
	}
	for _, v := range []string{trace.ViaPosixSpawn, trace.ViaPosixSpawnp, trace.ViaSystem, trace.ViaExec} {
		assert.True(t, vias[v], "a denied %s is recorded: %v", v, vias)
	}
}

func TestStrictStillWorks(t *testing.T) {
	e := setup(t, libos.Policy{FDs: libos.FDsStrict})
	out, _ := e.run(t, "", "strict")
	assert.Contains(t, out, "fd 2 ")
	assert.NotContains(t, out, "fd 9 ")
	evs := e.wait(t, "the strict spawn", func(ev trace.Event) bool { return ev.Event == trace.EventSpawn && ev.StrictClosed > 0 })
	assert.NotEmpty(t, evs)
}

func TestMaxProcs(t *testing.T) {
	e := setup(t, libos.Policy{MaxProcs: 4})
	out, _ := e.run(t, "go", "maxprocs")
	got := outInt(t, out, "maxprocs")
	// The root and 3 children fill the limit: 7 forks and the spawn are
	// refused with EAGAIN; once the children are reaped there is room.
	assert.Equal(t, []int{3, 7, 11}, got)
	assert.Equal(t, []int{11}, outInt(t, out, "vfork"), "lazy vfork's spawn is limited too")
	assert.Equal(t, []int{0}, outInt(t, out, "after"))
	evs := e.wait(t, "the spawn after", func(ev trace.Event) bool {
		return ev.Event == trace.EventSpawn && ev.Errno == 0 && ev.Path == "/bin/true"
	})
	refused := find(evs, func(ev trace.Event) bool { return ev.Policy == trace.PolicyMaxProcs })
	assert.Len(t, refused, 9)
	for _, ev := range refused {
		assert.Equal(t, 11, ev.Errno)
	}
}

type fakeAdopter struct {
	mu   sync.Mutex
	pids []int
	fail bool
}

func (f *fakeAdopter) Adopt(pid int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pids = append(f.pids, pid)
	if f.fail {
		return os.ErrPermission
	}
	return nil
}

func (f *fakeAdopter) got() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.pids...)
}

// Filter allows every system call: BPF_RET|BPF_K SECCOMP_RET_ALLOW.
func (f *fakeAdopter) Filter() []byte {
	return []byte{0x06, 0, 0, 0, 0, 0, 0xff, 0x7f}
}

func TestAdoption(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(map[bool]string{false: "adopted", true: "refused"}[fail], func(t *testing.T) {
			e := setup(t, libos.Policy{})
			a := &fakeAdopter{fail: fail}
			e.h.SetAdopter(a)
			tiny := testbin.MustBuild(t, testbin.Tiny)
			// A static program, spawned then exec'd: both ask, each
			// with the pid that execs it; the exec happens either way.
			out, root := e.run(t, "", "spawnexec", tiny)
			assert.Equal(t, []int{0}, outInt(t, out, "spawned"))
			assert.NotContains(t, out, "exec errno")
			evs := e.wait(t, "the spawn of tiny", func(ev trace.Event) bool {
				return ev.Event == trace.EventSpawn && ev.Path == tiny
			})
			sp := find(evs, func(ev trace.Event) bool { return ev.Event == trace.EventSpawn && ev.Path == tiny })
			require.Len(t, sp, 1)
			assert.Equal(t, []int{sp[0].Child, root}, a.got())
		})
	}
}

// A vfork child's exec asks too, with the pid of the process that execs:
// the real child (FORKLESS_VFORK=real) or lazy vfork's spawned child.
func TestAdoptionVfork(t *testing.T) {
	for _, mode := range []string{"real", "lazy"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "real" {
				t.Setenv("FORKLESS_VFORK", "real")
			}
			e := setup(t, libos.Policy{})
			a := &fakeAdopter{}
			e.h.SetAdopter(a)
			tiny := testbin.MustBuild(t, testbin.Tiny)
			out, _ := e.run(t, "", "vforkexec", tiny)
			got := outInt(t, out, "vforked")
			assert.Equal(t, 0, got[1], "tiny ran and exited 0")
			assert.Equal(t, []int{got[0]}, a.got())
		})
	}
}

func TestAdoptionGoProgram(t *testing.T) {
	e := setup(t, libos.Policy{})
	a := &fakeAdopter{}
	e.h.SetAdopter(a)
	self, err := os.Executable()
	require.NoError(t, err)
	// This test binary is a Go program: the exec asks for adoption.
	_, root := e.run(t, "", "exec", self, "-test.run=^$")
	assert.Equal(t, []int{root}, a.got())
	// A dynamic C program does not.
	a.pids = nil
	e.run(t, "", "spawn")
	assert.Empty(t, a.got())
}

// The C matcher of the exec policy agrees with glibc's fnmatch on every
// pattern, and with libos.MatchExec on every pattern libos accepts
// (CheckPattern refuses the classes where the two would differ: one
// holding '/', one starting with ']').
func TestMatcherAgreesWithGo(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	bin := filepath.Join(t.TempDir(), "match")
	msg, err := exec.Command("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", bin, "c/match.c").CombinedOutput()
	require.NoError(t, err, "%s", msg)
	pats := []string{"sh", "*sh", "/bin/*", "/usr/*/sh", "/usr/*", "py?hon3", "[bd]ash", "[!bd]ash", "[^bd]ash",
		"[a-c]at", "*", "?", "/*/*", "/usr[!a]bin/sh", "/t[!/]a/x", "*.py", "[]]x", "[!]]x", "a*b*c", "*/sh", "/bin/s?", "[a-]x", "x[", "*[", "[/]x",
		"/usr/bin/python3*", "te*st", "**", "/*", ".*", "[.]x", "[z-a]x", "/bin/[a-z]*", "*a*", "[!a-c]*"}
	progs := []string{"/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/python3", "/bin/dash", "/bin/rash",
		"/bin/cat", "/x", "/a/b", "/t/a.py", "/t/]x", "/t/ax", "/t/abxbc", "/t/-x", "/t/x[", "/t/ab[",
		"/usr/bin/python3.11", "/t/test", "/t/teest", "/t/.hidden", "/t/.x", "/t/a/x"}
	type pair struct{ pat, prog, name string }
	var pairs []pair
	var args []string
	for _, p := range pats {
		for _, prog := range progs {
			name := prog
			if !strings.Contains(p, "/") {
				name = filepath.Base(prog)
			}
			pairs = append(pairs, pair{p, prog, name})
			args = append(args, p, name)
		}
	}
	out, err := exec.Command(bin, args...).Output()
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, len(pairs))
	compared := 0
	for i, p := range pairs {
		f := strings.Fields(lines[i])
		require.Len(t, f, 2)
		assert.Equal(t, f[1], f[0], "C matcher vs fnmatch: %q vs %q", p.pat, p.name)
		if libos.CheckPattern(p.pat) != nil {
			continue
		}
		compared++
		want := "0"
		if libos.MatchExec(p.pat, p.prog) {
			want = "1"
		}
		assert.Equal(t, want, f[0], "C matcher vs libos.MatchExec: %q vs %q", p.pat, p.prog)
	}
	assert.Greater(t, compared, 500)
}

// A process traced by the host (TracerPid = FORKLESS_HOST_PID) is on the
// ptrace platform: the library reports nothing there. This test process
// is the host and traces the program (PTRACE_TRACEME at its exec, as Go's
// SysProcAttr.Ptrace does), passing every stop on.
func TestInertWhenTraced(t *testing.T) {
	e := setup(t, libos.Policy{ExecDeny: []string{"true"}})
	runtime.LockOSThread() // ptrace requests come from the tracing thread
	defer runtime.UnlockOSThread()
	cmd := exec.Command(e.prog, "spawn")
	cmd.Env = append(append(os.Environ(), e.h.Env()...), "LD_PRELOAD="+e.pre)
	outFile, err := os.Create(filepath.Join(t.TempDir(), "out"))
	require.NoError(t, err)
	defer outFile.Close()
	cmd.Stdout = outFile // a file: this test reaps the program itself
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		require.NoError(t, err)
		if ws.Exited() || ws.Signaled() {
			break
		}
		sig := 0
		if ws.Stopped() && ws.StopSignal() != syscall.SIGTRAP {
			sig = int(ws.StopSignal())
		}
		require.NoError(t, syscall.PtraceCont(pid, sig))
	}
	outb, err := os.ReadFile(outFile.Name())
	require.NoError(t, err)
	out := string(outb)
	require.True(t, ws.Exited(), "%v", ws)
	require.Zero(t, ws.ExitStatus(), "output: %s", out)
	// The deny list did not apply (the tracer enforces), and the spawn
	// of /bin/true worked.
	assert.Equal(t, []int{0}, outInt(t, out, "spawn"))
	// Lines would have been sent before the exit; give the server a
	// moment to handle any.
	assert.Never(t, func() bool { return len(events(t, e.out)) > 0 }, 300*time.Millisecond, 10*time.Millisecond,
		"nothing reported by the traced process: %v", events(t, e.out))
	// Its untraced children (fork) are not on the ptrace platform: they
	// report. (Nothing to check here: they only _exit.)
}
