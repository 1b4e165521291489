package ptrace

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/internal/trace"
	"github.com/forkless/forkless/libos"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// hostArg makes the test binary host a tracer (see hostMain).
const hostArg = "__ptrace-test-host"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == StubArg {
		os.Exit(StubMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == hostArg {
		os.Exit(hostMain(os.Args[2:]))
	}
	if len(os.Args) > 2 && os.Args[1] == extraFilesArg {
		os.Exit(extraFilesMain(os.Args[2:]))
	}
	// Descriptors inherited from whoever ran the tests would reach every
	// program under test and change what the descriptor tests see.
	unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	os.Exit(m.Run())
}

// hostMain runs argv traced, with the test binary as the stub, and
// prints nothing of its own: the tree's output goes to this process's
// stdout.
//
// With -untraced first, the program runs as an untraced root (the host,
// doorbell and reaping without tracing): a baseline for the overhead
// figures in docs/performance.md.
func hostMain(argv []string) int {
	traced := true
	if len(argv) > 0 && argv[0] == "-untraced" {
		traced, argv = false, argv[1:]
	}
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "usage: ptrace.test "+hostArg+" [-untraced] PROG [ARG...]")
		return 2
	}
	rec := newRecorder()
	tr := New(rec, libos.Policy{})
	exe, _ := os.Executable()
	ws, err := tr.Run(Spec{Path: argv[0], Argv: argv, Env: os.Environ(), Traced: traced, Stub: exe,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	tr.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 125
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.invalid) > 0 {
		fmt.Fprintln(os.Stderr, strings.Join(rec.invalid, "\n"))
		return 124
	}
	return ws.ExitStatus()
}

// extraFilesArg makes the test binary a Go program that spawns the way
// os/exec does: argv runs with /dev/null as ExtraFiles[0] (descriptor 3
// in the child, set up by Go's child code between clone and exec) and one
// descriptor opened without close-on-exec, which it leaks.
const extraFilesArg = "__ptrace-test-extrafiles"

func extraFilesMain(argv []string) int {
	null, err := os.Open(os.DevNull)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 125
	}
	if _, err := unix.Open(os.DevNull, unix.O_RDONLY, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 125
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = os.Stdout, os.Stderr, []*os.File{null}
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// staticProg is tests/static/static.c, built static.
var staticProg = testbin.Program{Dir: "static", Out: "forkless-static", Flags: []string{"-static", "-pthread"}}

// recorder is a libos.Reporter that validates and keeps every event.
type recorder struct {
	mu       sync.Mutex
	events   []trace.Event
	invalid  []string
	allow    int // admissions left; negative: unlimited
	admitted map[int]int
	settled  int
	admits   int
}

func newRecorder() *recorder { return &recorder{allow: -1, admitted: map[int]int{}} }

func (r *recorder) Record(ev trace.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := ev.Validate(); err != nil {
		r.invalid = append(r.invalid, fmt.Sprintf("%+v: %v", ev, err))
	}
	// Every line says ptrace, but the exit of an untraced root, which is
	// on the preload platform.
	untracedRootExit := ev.Event == trace.EventExit && ev.PPID == os.Getpid()
	if (ev.Platform != trace.PlatformPtrace && !untracedRootExit) || ev.TsNs <= 0 {
		r.invalid = append(r.invalid, fmt.Sprintf("%+v: platform or ts_ns", ev))
	}
	r.events = append(r.events, ev)
}

func (r *recorder) Admit(pid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.allow == 0 {
		return false
	}
	if r.allow > 0 {
		r.allow--
	}
	r.admitted[pid]++
	r.admits++
	return true
}

func (r *recorder) Settle(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.admitted[pid]--
	r.settled++
}

// snapshot returns the events so far.
func (r *recorder) snapshot() []trace.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]trace.Event(nil), r.events...)
}

// check fails t on invalid events and unbalanced admissions.
func (r *recorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Empty(t, r.invalid, "invalid events")
	for pid, n := range r.admitted {
		require.Zero(t, n, "pid %d: Admit without Settle (or Settle without Admit)", pid)
	}
}

// find returns the events matching f.
func find(evs []trace.Event, f func(e trace.Event) bool) []trace.Event {
	var out []trace.Event
	for _, e := range evs {
		if f(e) {
			out = append(out, e)
		}
	}
	return out
}

// result is one run of a tree.
type result struct {
	ws     unix.WaitStatus
	out    string
	errOut string
	events []trace.Event
}

func (r result) status() string {
	switch {
	case r.ws.Exited():
		return fmt.Sprintf("exit %d", r.ws.ExitStatus())
	case r.ws.Signaled():
		return fmt.Sprintf("signal %d", r.ws.Signal())
	}
	return fmt.Sprintf("status %#x", int(r.ws))
}

// runOpts configures runTraced.
type runOpts struct {
	pol     libos.Policy
	rec     *recorder
	env     []string
	dir     string
	untrace bool
}

// runTraced runs argv as the root of a traced tree and returns its status,
// output and events. It fails t on invalid events, unbalanced admissions
// and surviving processes.
func runTraced(t *testing.T, o runOpts, argv ...string) result {
	t.Helper()
	if o.rec == nil {
		o.rec = newRecorder()
	}
	if o.env == nil {
		o.env = os.Environ()
	}
	dir := t.TempDir()
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	require.NoError(t, err)
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	require.NoError(t, err)
	defer stdout.Close()
	defer stderr.Close()
	exe, err := os.Executable()
	require.NoError(t, err)
	tr := New(o.rec, o.pol)
	ws, err := tr.Run(Spec{Path: argv[0], Argv: argv, Env: o.env, Dir: o.dir, Stdout: stdout, Stderr: stderr,
		Traced: !o.untrace, Stub: exe})
	require.NoError(t, err)
	require.NoError(t, tr.Close())
	out, _ := os.ReadFile(stdout.Name())
	errOut, _ := os.ReadFile(stderr.Name())
	evs := o.rec.snapshot()
	o.rec.check(t)
	requireGone(t, evs)
	return result{ws: ws, out: string(out), errOut: string(errOut), events: evs}
}

// runNative runs argv without the tracer.
func runNative(t *testing.T, env []string, argv ...string) result {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); !ok {
		require.NoError(t, err)
	}
	return result{ws: unix.WaitStatus(cmd.ProcessState.Sys().(syscall.WaitStatus)), out: out.String(), errOut: errOut.String()}
}

// startNs returns when pid started (CLOCK_REALTIME, nanoseconds; the
// kernel keeps it in clock ticks of 10 ms), or false when it is gone or a
// zombie.
func startNs(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" {
		return 0, false
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64) // field 22, starttime
	if err != nil {
		return 0, false
	}
	var boot unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
		return 0, false
	}
	bootedAt := time.Now().UnixNano() - boot.Nano()
	return bootedAt + ticks*10_000_000, true
}

// requireGone fails t when a process named by the events still runs
// (after a grace period for reaping by init). pid_max may be small: a
// live process that started after the tree's first line naming its pid
// is another process that reuses the pid.
func requireGone(t *testing.T, evs []trace.Event) {
	t.Helper()
	first := map[int]int64{}
	note := func(pid int, ts int64) {
		if v, ok := first[pid]; !ok || ts < v {
			first[pid] = ts
		}
	}
	for _, e := range evs {
		note(e.PID, e.TsNs)
		if e.Child > 0 {
			note(e.Child, e.TsNs)
		}
	}
	survivor := func(pid int) bool {
		start, ok := startNs(pid)
		return ok && start <= first[pid]+int64(20*time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for pid := range first {
		for survivor(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		require.False(t, survivor(pid), "process %d survived", pid)
	}
}

// lines reads lines from a pipe into a channel.
func lines(f *os.File) <-chan string {
	c := make(chan string, 64)
	go func() {
		defer close(c)
		s := bufio.NewScanner(f)
		for s.Scan() {
			c <- s.Text()
		}
	}()
	return c
}
