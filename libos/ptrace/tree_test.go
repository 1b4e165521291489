package ptrace

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/internal/trace"
	"github.com/forkless/forkless/libos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// busyboxScript exercises a shell's process creation: pipelines,
// subshells, command substitution, redirections, background jobs, and
// programs the shell runs (busybox applets or the system's).
const busyboxScript = `
echo start
echo a b c | tr a-z A-Z | cat
(cd /; pwd)
x=$(echo inner | sed s/inner/outer/)
echo "$x"
echo redirect > "$DIR/f"; cat < "$DIR/f"; echo more >> "$DIR/f"; wc -l < "$DIR/f"
sleep 0.05 & bg=$!
( echo in background; exit 5 ) & bg2=$!
wait $bg; echo bg $?
wait $bg2; echo bg2 $?
( exit 3 ); echo status $?
for i in 1 2 3; do echo $i; done | sort -r
{ echo to stderr >&2; } 2>/dev/null
false || echo or
sh -c 'echo nested $0' arg
exec 3>"$DIR/g"; echo via3 >&3; exec 3>&-; cat "$DIR/g"
echo end
`

func TestBusybox(t *testing.T) {
	bb := testbin.Need(t, "busybox", "apt-get install busybox-static")
	dir := t.TempDir()
	script := filepath.Join(dir, "script.sh")
	require.NoError(t, os.WriteFile(script, []byte(busyboxScript), 0o644))
	natDir, trDir := filepath.Join(dir, "native"), filepath.Join(dir, "traced")
	require.NoError(t, os.Mkdir(natDir, 0o755))
	require.NoError(t, os.Mkdir(trDir, 0o755))
	nat := runNative(t, append(os.Environ(), "DIR="+natDir), bb, "sh", script)
	res := runTraced(t, runOpts{env: append(os.Environ(), "DIR="+trDir)}, bb, "sh", script)
	require.Contains(t, nat.out, "end\n")
	assert.Equal(t, nat.out, res.out)
	assert.Equal(t, nat.errOut, res.errOut)
	assert.Equal(t, nat.status(), res.status())
	created := find(res.events, func(e trace.Event) bool {
		return (e.Event == trace.EventFork || e.Event == trace.EventSpawn) && e.Errno == 0
	})
	assert.GreaterOrEqual(t, len(created), 10)
	exits := find(res.events, func(e trace.Event) bool { return e.Event == trace.EventExit })
	assert.Len(t, exits, len(created)+1, "every process ended, the root included")
}

// TestGoExecSuite runs the Go toolchain's os/exec tests (a Go program
// creating processes with raw clone) natively and traced.
func TestGoExecSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds os/exec's tests")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "exec.test")
	out, err := exec.Command(goBin, "test", "-c", "-o", bin, "os/exec").CombinedOutput()
	require.NoError(t, err, "%s", out)
	src := filepath.Join(runtime.GOROOT(), "src", "os", "exec")
	args := []string{bin, "-test.short", "-test.v", "-test.count=1"}
	// PWD as os/exec sets it for a Dir: TestImplicitPWD checks it.
	env := []string{"PWD=" + src}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PWD=") {
			env = append(env, kv)
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir, cmd.Env = src, env
	natOut, natErr := cmd.CombinedOutput()
	comb := filepath.Join(dir, "traced.out")
	f, err := os.Create(comb)
	require.NoError(t, err)
	defer f.Close()
	exe, _ := os.Executable()
	rec := newRecorder()
	tr := New(rec, libos.Policy{})
	ws, err := tr.Run(Spec{Path: bin, Argv: args, Env: env, Dir: src, Stdout: f, Stderr: f, Traced: true, Stub: exe})
	require.NoError(t, err)
	require.NoError(t, tr.Close())
	trOut, _ := os.ReadFile(comb)
	rec.check(t)
	requireGone(t, rec.snapshot())
	verdicts := func(b []byte) map[string]string {
		m := map[string]string{}
		re := regexp.MustCompile(`(?m)^\s*--- (PASS|FAIL|SKIP): (\S+)`)
		for _, x := range re.FindAllStringSubmatch(string(b), -1) {
			m[x[2]] = x[1]
		}
		return m
	}
	nv, tv := verdicts(natOut), verdicts(trOut)
	require.NotEmpty(t, nv)
	assert.Equal(t, nv, tv)
	assert.Equal(t, natErr == nil, ws.Exited() && ws.ExitStatus() == 0, "traced:\n%s", trOut)
	spawns := find(rec.snapshot(), func(e trace.Event) bool { return e.Event == trace.EventSpawn && e.Errno == 0 })
	assert.NotEmpty(t, spawns)
	t.Logf("%d tests, %d spawns traced", len(tv), len(spawns))
}

// TestGoStrictExtraFiles: under strict inheritance a Go program's child
// keeps what os/exec set up for it (ExtraFiles) and loses the leak, as
// with posix_spawn file actions.
func TestGoStrictExtraFiles(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	exe, err := os.Executable()
	require.NoError(t, err)
	argv := []string{exe, extraFilesArg, static, "fds"}
	lines := func(out string) []string { return strings.Fields(out) }
	native := runNative(t, os.Environ(), argv...)
	require.Equal(t, "exit 0", native.status(), native.errOut)
	got := lines(native.out)
	require.Len(t, got, 5, "0-2, ExtraFiles[0] and the leak: %v", got)
	require.Equal(t, []string{"0", "1", "2", "3"}, got[:4])
	for _, tc := range []struct {
		pol  libos.Policy
		want []string
	}{
		{libos.Policy{}, got},
		{libos.Policy{FDs: libos.FDsStrict}, got[:4]},
	} {
		res := runTraced(t, runOpts{pol: tc.pol}, argv...)
		assert.Equal(t, "exit 0", res.status(), res.errOut)
		assert.Equal(t, tc.want, lines(res.out), "%+v", tc.pol)
	}
}

// TestKillHostKillsTree kills a process hosting a tracer: PTRACE_O_EXITKILL
// takes the whole tree with it.
func TestKillHostKillsTree(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, hostArg, static, "tree", "3")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	s := bufio.NewScanner(out)
	var pids []int
	for len(pids) < 4 && s.Scan() {
		pid, err := strconv.Atoi(strings.TrimSpace(s.Text()))
		require.NoError(t, err)
		pids = append(pids, pid)
	}
	require.Len(t, pids, 4)
	seen := time.Now().UnixNano()
	// A live process that started after the pids were printed reuses a
	// pid (pid_max may be small).
	survivor := func(pid int) bool {
		start, ok := startNs(pid)
		return ok && start <= seen+int64(20*time.Millisecond)
	}
	for _, pid := range pids {
		require.True(t, survivor(pid))
	}
	require.NoError(t, cmd.Process.Kill())
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for survivor(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		assert.False(t, survivor(pid), "process %d survived its tracer", pid)
	}
}

// runAdopting runs argv as an untraced root that prints "MODE: PID ready"
// and waits for SIGUSR1; it calls adopt with PID, sends the signal and
// returns PID, the next line the tree prints and root's status, with the
// tracer closed.
func runAdopting(t *testing.T, tr *Tracer, argv []string, adopt func(pid int)) (int, string, unix.WaitStatus) {
	t.Helper()
	exe, _ := os.Executable()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	done := make(chan unix.WaitStatus, 1)
	go func() {
		ws, err := tr.Run(Spec{Path: argv[0], Argv: argv, Stdout: w, Stub: exe})
		assert.NoError(t, err)
		done <- ws
	}()
	c := lines(r)
	var pid int
	_, err = fmt.Sscanf(<-c, argv[1]+": %d ready", &pid)
	require.NoError(t, err)
	adopt(pid)
	require.NoError(t, tr.Signal(unix.SIGUSR1))
	next := <-c
	ws := <-done
	w.Close()
	require.NoError(t, tr.Close())
	return pid, next, ws
}

// TestAdopt adopts a process while the tracer waits for its tree (the
// doorbell wakes it): an untraced root, as the host starts a
// preload-platform program, that then forks and execs.
func TestAdopt(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	tiny := testbin.MustBuild(t, testbin.Tiny)
	rec := newRecorder()
	tr := New(rec, libos.Policy{})
	pid, next, ws := runAdopting(t, tr, []string{static, "waitfork", tiny}, func(pid int) {
		require.NoError(t, tr.Adopt(pid))
		require.NoError(t, tr.Adopt(pid), "adopting twice")
	})
	assert.Equal(t, "waitfork: OK", next)
	assert.Equal(t, 0, ws.ExitStatus())
	rec.check(t)
	evs := rec.snapshot()
	forks := find(evs, func(e trace.Event) bool { return e.Event == trace.EventFork && e.PID == pid })
	require.Len(t, forks, 1, "%+v", evs)
	ex := find(evs, func(e trace.Event) bool { return e.Event == trace.EventExec && e.PID == forks[0].Child })
	require.Len(t, ex, 1)
	assert.Equal(t, tiny, ex[0].Path)
	assert.Len(t, find(evs, func(e trace.Event) bool { return e.Event == trace.EventExit && e.PID == pid }), 1)
	assert.Len(t, find(evs, func(e trace.Event) bool { return e.Event == trace.EventExit && e.PID == forks[0].Child }), 1)
	requireGone(t, evs)
}

// TestAdoptFilterExec plays lib/libforkless.so's part after an adoption:
// the process installs Filter() itself and execs a static program, whose
// process creation then stops in the tracer like the stub's programs'. The
// exec itself the library traces and puts under the policy: the tracer
// records nothing for it.
func TestAdoptFilterExec(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	tiny := testbin.MustBuild(t, testbin.Tiny)
	rec := newRecorder()
	tr := New(rec, libos.Policy{})
	filter := filepath.Join(t.TempDir(), "filter")
	require.NoError(t, os.WriteFile(filter, tr.Filter(), 0o644))
	pid, next, ws := runAdopting(t, tr, []string{static, "adoptexec", filter, static, "forkexec", tiny}, func(pid int) {
		require.NoError(t, tr.Adopt(pid))
	})
	assert.Equal(t, "forkexec: OK", next)
	assert.Equal(t, 0, ws.ExitStatus())
	rec.check(t)
	evs := rec.snapshot()
	ex := find(evs, func(e trace.Event) bool { return e.Event == trace.EventExec && e.PID == pid })
	assert.Empty(t, ex, "the exec after the filter is the library's to trace (it asked for the adoption)")
	forks := find(evs, func(e trace.Event) bool { return e.Event == trace.EventFork && e.PID == pid })
	require.Len(t, forks, 1)
	assert.Equal(t, trace.ViaFork, forks[0].Via)
	assert.Equal(t, 1, forks[0].Threads)
	assert.NotEmpty(t, forks[0].FDs, "the snapshot taken at the seccomp stop")
	childExec := find(evs, func(e trace.Event) bool { return e.Event == trace.EventExec && e.PID == forks[0].Child })
	require.NotEmpty(t, childExec, "the fork child's exec is the tracer's again")
	assert.Equal(t, tiny, childExec[0].Path)
	rec.mu.Lock()
	assert.Equal(t, 1, rec.admits, "the fork was admitted")
	rec.mu.Unlock()
	requireGone(t, evs)
}
