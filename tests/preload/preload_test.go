// Package preload_test runs small C programs (c/*.c beside this file) under
// lib/libforkless.so and checks what they print and the trace the library
// writes (FORKLESS_TRACE): system, popen/pclose, the exec family, fork,
// _Fork and vfork, the strict descriptor policy, stickiness and the trace
// descriptor's robustness. Where glibc's behaviour is the reference, the
// same program also runs without the preload and the outputs are compared.
//
// The library is built with `make lib/libforkless.so` (a no-op when it is
// up to date); FORKLESS_TEST_ASAN=1 uses lib/libforkless-asan.so with
// libasan preloaded first. Without gcc the tests skip.
package preload_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/internal/trace"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// programs are built from <name>.c in this folder.
var programs = []string{"show", "system", "popen", "exec", "fork"}

type fixture struct {
	preload string            // the LD_PRELOAD value
	lib     string            // the library's absolute path
	bin     map[string]string // program name -> executable
}

var (
	setupOnce sync.Once
	fix       *fixture
	setupSkip string
	setupErr  error
	tmpRoot   string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if tmpRoot != "" {
		os.RemoveAll(tmpRoot)
	}
	os.Exit(code)
}

func repoRoot() (string, error) { return testbin.Root() }

func build() (*fixture, string, error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return nil, "gcc not found: the preload tests need it", nil
	}
	root, err := repoRoot()
	if err != nil {
		return nil, "", err
	}
	target := "lib/libforkless.so"
	asan := os.Getenv("FORKLESS_TEST_ASAN") == "1"
	if asan {
		target = "lib/libforkless-asan.so"
	}
	mk := exec.Command("make", "-s", target)
	mk.Dir = root
	if out, err := mk.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("make %s: %v\n%s", target, err, out)
	}
	f := &fixture{lib: filepath.Join(root, target), bin: map[string]string{}}
	f.preload = f.lib
	if asan {
		out, err := exec.Command(gcc, "-print-file-name=libasan.so").Output()
		if err != nil {
			return nil, "", fmt.Errorf("locating libasan: %v", err)
		}
		// The sanitizer runtime must come first in the initial library list.
		f.preload = strings.TrimSpace(string(out)) + ":" + f.lib
	}
	if tmpRoot, err = os.MkdirTemp("", "forkless-preload-"); err != nil {
		return nil, "", err
	}
	src := filepath.Join(root, "tests", "preload", "c")
	for _, p := range programs {
		out := filepath.Join(tmpRoot, p)
		cmd := exec.Command(gcc, "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", "-o", out,
			filepath.Join(src, p+".c"))
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, "", fmt.Errorf("gcc %s.c: %v\n%s", p, err, b)
		}
		f.bin[p] = out
	}
	return f, "", nil
}

func setup(t *testing.T) *fixture {
	t.Helper()
	setupOnce.Do(func() { fix, setupSkip, setupErr = build() })
	if setupSkip != "" {
		t.Skip(setupSkip)
	}
	require.NoError(t, setupErr)
	return fix
}

// event is one trace line (schema v1), with the names of the fields the
// line holds (a zero value and an absent field differ to the library).
type event struct {
	line
	keys map[string]bool
}

type line = trace.Event

func (e *event) has(key string) bool { return e.keys[key] }

func (e *event) fdNumbers() []int {
	var n []int
	for _, f := range e.FDs {
		n = append(n, f.FD)
	}
	return n
}

// parseTrace decodes every line with internal/trace's strict reader
// (required fields, nothing unknown, known names, bounds) and notes which
// fields each holds.
func parseTrace(t *testing.T, data []byte) []event {
	t.Helper()
	var out []event
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		require.LessOrEqual(t, len(line), 8192, "line %d longer than the library's buffer", n)
		ev, err := trace.ParseLine(line)
		require.NoError(t, err, "line %d: %s", n, line)
		require.Positive(t, ev.TsNs, "line %d", n)
		var raw map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(line, &raw), "line %d: %s", n, line)
		keys := map[string]bool{}
		for k := range raw {
			keys[k] = true
		}
		out = append(out, event{ev, keys})
	}
	require.NoError(t, sc.Err())
	return out
}

type runOpts struct {
	glibc bool     // without the preload
	env   []string // extra variables
	code  int      // expected exit status
	dir   string   // where the trace goes (a new temporary folder if empty)
}

type result struct {
	pid      int
	out      string
	trace    []event
	tracePth string
}

// mine returns the trace lines written by process pid.
func (r *result) mine(pid int) []event {
	var out []event
	for _, e := range r.trace {
		if e.PID == pid {
			out = append(out, e)
		}
	}
	return out
}

func (r *result) own() []event { return r.mine(r.pid) }

// value returns the text after "key=" on the first line that has it.
func (r *result) value(t *testing.T, key string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)(?:^| )` + regexp.QuoteMeta(key) + `=(\S*)`)
	m := re.FindStringSubmatch(r.out)
	require.NotNil(t, m, "no %s= in output:\n%s", key, r.out)
	return m[1]
}

func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LD_PRELOAD=") || strings.HasPrefix(kv, "FORKLESS_") ||
			strings.HasPrefix(kv, "SHOW=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (f *fixture) run(t *testing.T, o runOpts, prog string, args ...string) *result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := o.dir
	if dir == "" {
		dir = t.TempDir()
	}
	r := &result{tracePth: filepath.Join(dir, "trace.jsonl")}
	cmd := exec.CommandContext(ctx, f.bin[prog], args...)
	cmd.Env = append(baseEnv(), "SHOW="+f.bin["show"],
		// The sanitizer's own handlers would show in children's SigCgt.
		"ASAN_OPTIONS=detect_leaks=0:handle_segv=0:handle_sigbus=0:handle_sigfpe=0",
		"UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
	if !o.glibc {
		cmd.Env = append(cmd.Env, "LD_PRELOAD="+f.preload, "FORKLESS_TRACE="+r.tracePth)
	}
	cmd.Env = append(cmd.Env, o.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		r.pid = cmd.Process.Pid
	}
	r.out = stdout.String()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "%s %v: %v\nstderr:\n%s", prog, args, err, stderr.String())
		code = ee.ExitCode()
	}
	require.Equal(t, o.code, code, "%s %v exit status\nstdout:\n%s\nstderr:\n%s", prog, args, r.out, stderr.String())
	if !o.glibc {
		data, err := os.ReadFile(r.tracePth)
		if !os.IsNotExist(err) {
			require.NoError(t, err)
		}
		r.trace = parseTrace(t, data)
	}
	return r
}

func filter(evs []event, kind, via string) []event {
	var out []event
	for _, e := range evs {
		if e.Event == kind && e.Via == via {
			out = append(out, e)
		}
	}
	return out
}

// ---- system ----

func TestSystemStatus(t *testing.T) {
	f := setup(t)
	r := f.run(t, runOpts{}, "system", "status")
	assert.Equal(t, "1", r.value(t, "null"), "system(NULL): a shell is there")
	assert.Equal(t, "768", r.value(t, "exit3"))
	assert.Equal(t, "15", r.value(t, "term"))
	assert.Equal(t, "32512", r.value(t, "missing"))
	assert.Equal(t, "shell-says-hi", r.value(t, "output"))

	sys := filter(r.own(), "spawn", "system")
	require.Len(t, sys, 5, "one spawn per system() call")
	cmds := []string{"exit 0", "exit 3", "kill -TERM $$", "exec /nonexistent/prog 2>/dev/null", "echo shell-says-hi"}
	for i, e := range sys {
		assert.Equal(t, "/bin/sh", e.Path)
		assert.Equal(t, []string{"sh", "-c", cmds[i]}, e.Argv, "glibc 2.36 passes no --")
		assert.Zero(t, e.Errno)
		assert.Positive(t, e.Child)
		assert.True(t, e.has("dur_us"))
		assert.Equal(t, r.pid, e.TID)
		assert.Equal(t, os.Getpid(), e.PPID)
		assert.Subset(t, e.fdNumbers(), []int{0, 1, 2}, "the shell inherits our stdio")
	}
}

// sigBits parses a "SigBlk:\t0000000000000200"-style line.
func sigBits(t *testing.T, r *result, key string) uint64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `:\s+([0-9a-f]+)$`).FindStringSubmatch(r.out)
	require.NotNil(t, m, "no %s line in output:\n%s", key, r.out)
	v, err := strconv.ParseUint(m[1], 16, 64)
	require.NoError(t, err)
	return v
}

func bit(sig int) uint64 { return 1 << (sig - 1) }

func TestSystemSignals(t *testing.T) {
	f := setup(t)
	r := f.run(t, runOpts{}, "system", "signals")
	g := f.run(t, runOpts{glibc: true}, "system", "signals")
	assert.Equal(t, g.out, r.out, "the same observations as under glibc")

	const sigint, sigquit, sigusr1, sigterm, sigchld = 2, 3, 10, 15, 17
	assert.Equal(t, "1280", r.value(t, "int-parent"), "SIGINT/SIGQUIT to the caller are ignored during the call")
	assert.Equal(t, "2", r.value(t, "int-child"), "the shell has SIGINT at default")
	blk, ign := sigBits(t, r, "SigBlk"), sigBits(t, r, "SigIgn")
	assert.NotZero(t, blk&bit(sigusr1), "the shell gets the caller's mask")
	assert.Zero(t, blk&bit(sigchld), "SIGCHLD is blocked only in the caller")
	assert.Zero(t, ign&(bit(sigint)|bit(sigquit)), "INT/QUIT at default in the shell")
	assert.NotZero(t, ign&bit(sigterm), "an ignored signal stays ignored")
	pblk, pign := sigBits(t, r, "parent-SigBlk"), sigBits(t, r, "parent-SigIgn")
	assert.NotZero(t, pblk&bit(sigchld), "SIGCHLD blocked in the caller during the call")
	assert.NotZero(t, pign&bit(sigint))
	assert.NotZero(t, pign&bit(sigquit))
	for _, k := range []string{"int-restored", "quit-restored", "mask-restored"} {
		assert.Equal(t, "1", r.value(t, k), k)
	}
	assert.Len(t, filter(r.own(), "spawn", "system"), 4)
}

func TestSystemConcurrent(t *testing.T) {
	f := setup(t)
	r := f.run(t, runOpts{}, "system", "threads")
	assert.Equal(t, "256", r.value(t, "short"))
	assert.Equal(t, "512", r.value(t, "long"))
	assert.Equal(t, "0", r.value(t, "handled-during"), "SIGINT stays ignored until the last system() returns")
	assert.Equal(t, "1", r.value(t, "handler-restored"))
	assert.Equal(t, "1", r.value(t, "handled-after"))
	assert.Equal(t, "0", r.value(t, "many-bad"))
	sys := filter(r.own(), "spawn", "system")
	require.Len(t, sys, 18)
	tids := map[int]bool{}
	for _, e := range sys {
		tids[e.TID] = true
	}
	assert.Len(t, tids, 18, "each call from its own thread")
	assert.False(t, tids[r.pid], "none from the main thread")
}

func TestSystemCancel(t *testing.T) {
	f := setup(t)
	r := f.run(t, runOpts{}, "system", "cancel")
	for _, k := range []string{"cancelled", "fast", "no-child", "int-restored"} {
		assert.Equal(t, "1", r.value(t, k), k)
	}
	assert.Len(t, filter(r.own(), "spawn", "system"), 1)
}

// ---- popen ----

func TestPopenReadWrite(t *testing.T) {
	f := setup(t)
	file := filepath.Join(t.TempDir(), "w.txt")
	r := f.run(t, runOpts{}, "popen", "rw", file)
	assert.Equal(t, "hello", r.value(t, "read"))
	assert.Equal(t, "1792", r.value(t, "read-status"))
	assert.Equal(t, "0", r.value(t, "write-status"))
	assert.Contains(t, r.out, "file=written through popen\n")
	assert.Contains(t, r.out, "closed0=via-fd0 status=0\n", "the child's end lands on 1 even when our 0 is free")
	assert.Contains(t, r.out, "w-end-was-fd0\nclosed0-w status=0\n", "a child end created as 0 still reaches the child")
	pop := filter(r.own(), "spawn", "popen")
	require.Len(t, pop, 4)
	assert.Equal(t, []string{"sh", "-c", "echo hello; exit 7"}, pop[0].Argv)
	assert.Equal(t, "/bin/sh", pop[0].Path)
	for _, e := range pop {
		assert.Zero(t, e.Errno)
		assert.Positive(t, e.Child)
	}
	assert.True(t, strings.HasPrefix(targetOf(pop[0], 1), "pipe:"), "stdout of a read stream's child is the pipe")
	assert.True(t, strings.HasPrefix(targetOf(pop[1], 0), "pipe:"), "stdin of a write stream's child is the pipe")
}

func targetOf(e event, fd int) string {
	for _, f := range e.FDs {
		if f.FD == fd {
			return f.Target
		}
	}
	return ""
}

func TestPopenModes(t *testing.T) {
	f := setup(t)
	r := f.run(t, runOpts{}, "popen", "modes")
	g := f.run(t, runOpts{glibc: true}, "popen", "modes")
	want := "r=0 re=1 we=1 ew=1\nclose=0 0 0 0\n" +
		"mode[rw]=null errno=22\nmode[x]=null errno=22\nmode[]=null errno=22\n" +
		"mode[re+]=null errno=22\nmode[wr]=null errno=22\n"
	assert.Equal(t, want, g.out, "glibc's behaviour")
	assert.Equal(t, want, r.out)
	assert.Len(t, filter(r.own(), "spawn", "popen"), 4, "invalid modes spawn nothing")
}

func TestPopenClosesEarlierStreams(t *testing.T) {
	f := setup(t)
	for _, glibc := range []bool{true, false} {
		r := f.run(t, runOpts{glibc: glibc}, "popen", "others")
		var ours []int
		for _, k := range []string{"a", "b", "c"} {
			n, err := strconv.Atoi(r.value(t, k))
			require.NoError(t, err)
			ours = append(ours, n)
		}
		var child []int
		for _, m := range regexp.MustCompile(`(?m)^child-fd (\d+) (.*)$`).FindAllStringSubmatch(r.out, -1) {
			if m[2] == r.tracePth {
				continue // the helper's own trace descriptor
			}
			n, _ := strconv.Atoi(m[1])
			child = append(child, n)
		}
		require.Subset(t, child, []int{0, 1, 2}, "glibc=%v\n%s", glibc, r.out)
		for _, fd := range ours {
			assert.NotContains(t, child, fd, "glibc=%v: earlier popen stream %d reached the child\n%s", glibc, fd, r.out)
		}
		assert.Contains(t, r.out, "status=0 0 0 0\n")
		if !glibc {
			pop := filter(r.own(), "spawn", "popen")
			require.Len(t, pop, 4)
			for _, fd := range ours {
				assert.NotContains(t, pop[3].fdNumbers(), fd, "the trace shows what the child kept")
			}
		}
	}
}

func TestPcloseWaitsForItsOwnChild(t *testing.T) {
	f := setup(t)
	r := f.run(t, runOpts{}, "popen", "order")
	assert.Equal(t, "512", r.value(t, "fast"))
	assert.Equal(t, "1", r.value(t, "fast-did-not-wait-for-slow"))
	assert.Contains(t, r.out, "other-still-ours=1 status=9\n", "pclose reaped a child that was not its own")
	assert.Equal(t, "256", r.value(t, "slow"))
	assert.Len(t, filter(r.own(), "spawn", "popen"), 2)
	assert.Len(t, filter(r.own(), "fork", "fork"), 1)
}

func TestPcloseUnknownStream(t *testing.T) {
	f := setup(t)
	r := f.run(t, runOpts{}, "popen", "unknown")
	g := f.run(t, runOpts{glibc: true}, "popen", "unknown")
	assert.Equal(t, g.out, r.out, "glibc's pclose is fclose for other streams")
	assert.Equal(t, "unknown=0 errno=0\n", r.out)
}

// ---- exec ----

// scripts writes an executable #! script and one without #! into a new
// PATH folder.
func scripts(t *testing.T) string {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fl-hello"), []byte("#!/bin/sh\necho hello-script \"$@\"\n"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fl-nosb"), []byte("echo noshebang-script \"$@\"\n"), 0o755))
	return dir
}

func TestExecvpPathAndShellFallback(t *testing.T) {
	f := setup(t)
	dir := scripts(t)
	env := []string{"PATH=/nonexistent-dir:" + dir + ":" + os.Getenv("PATH")}
	for _, c := range []struct{ file, want string }{
		{"fl-hello", "hello-script a b\n"},
		{"fl-nosb", "noshebang-script a b\n"}, // ENOEXEC: glibc runs it with /bin/sh
	} {
		g := f.run(t, runOpts{glibc: true, env: env}, "exec", "execvp", c.file, "a", "b")
		r := f.run(t, runOpts{env: env}, "exec", "execvp", c.file, "a", "b")
		assert.Equal(t, c.want, g.out)
		assert.Equal(t, c.want, r.out)
		ex := filter(r.own(), "exec", "exec")
		require.Len(t, ex, 1, "one line before the exec, none after a success")
		assert.Equal(t, c.file, ex[0].Path)
		assert.Equal(t, []string{c.file, "a", "b"}, ex[0].Argv)
		assert.Zero(t, ex[0].Errno)
		assert.False(t, ex[0].has("child"))
		assert.Subset(t, ex[0].fdNumbers(), []int{0, 1, 2})
	}
}

func TestExecVariants(t *testing.T) {
	f := setup(t)
	echo, err := filepath.EvalSymlinks("/bin/echo")
	require.NoError(t, err)
	for _, c := range []struct{ mode, path string }{
		{"execl", "/bin/echo"},
		{"execlp", "echo"},
		{"execv", "/bin/echo"},
		{"fexecve", echo},
		{"execveat", "echo"},
		{"execveat-empty", echo},
	} {
		t.Run(c.mode, func(t *testing.T) {
			r := f.run(t, runOpts{}, "exec", c.mode)
			assert.Equal(t, c.mode+" ok\n", r.out)
			ex := filter(r.own(), "exec", "exec")
			require.Len(t, ex, 1)
			assert.Equal(t, c.path, ex[0].Path)
			assert.Equal(t, []string{"echo", c.mode, "ok"}, ex[0].Argv[len(ex[0].Argv)-3:])
		})
	}
	t.Run("execle", func(t *testing.T) {
		r := f.run(t, runOpts{}, "exec", "execle")
		assert.Contains(t, r.out, "A=1\n")
		assert.Contains(t, r.out, "LD_PRELOAD="+f.preload+"\n", "the explicit envp got our LD_PRELOAD")
		assert.Contains(t, r.out, "FORKLESS_TRACE="+r.tracePth+"\n")
		g := f.run(t, runOpts{glibc: true}, "exec", "execle")
		assert.Equal(t, "A=1\nLD_PRELOAD unset\nFORKLESS_TRACE unset\n", g.out)
	})
	t.Run("fexecve-script-strict", func(t *testing.T) {
		// The descriptor that is the script must survive strict mode.
		dir := scripts(t)
		r := f.run(t, runOpts{env: []string{"FORKLESS_FDS=strict"}}, "exec", "fexecve-script", filepath.Join(dir, "fl-hello"))
		assert.Equal(t, "hello-script fexecve-script ok\n", r.out)
	})
}

type execPair struct {
	path  string
	errno int
}

func TestExecFailureLeavesProgramUnchanged(t *testing.T) {
	f := setup(t)
	g := f.run(t, runOpts{glibc: true}, "exec", "fail")
	require.Equal(t, "execve=-1 errno=2\nexecvp=-1 errno=2\nexecl=-1 errno=13\nflags 5=0 6=1\nsurvived=1\n", g.out)
	for _, strict := range []bool{false, true} {
		var env []string
		if strict {
			env = []string{"FORKLESS_FDS=strict"}
		}
		r := f.run(t, runOpts{env: env}, "exec", "fail")
		assert.Equal(t, g.out, r.out, "strict=%v: errno and descriptor flags as without the library", strict)
		ex := filter(r.own(), "exec", "exec")
		want := []execPair{{"/nonexistent/x", 0}, {"/nonexistent/x", 2}, {"no-such-program-forkless", 0},
			{"no-such-program-forkless", 2}, {"/etc/passwd", 0}, {"/etc/passwd", 13}}
		var got []execPair
		for _, e := range ex {
			got = append(got, execPair{e.Path, e.Errno})
		}
		assert.Equal(t, want, got, "a line before each exec and one with the errno after it")
		if strict {
			require.NotEmpty(t, ex)
			// fd 5, and whatever plain descriptors the test runner leaked
			assert.GreaterOrEqual(t, ex[0].StrictClosed, 1, "fd 5 would be kept from the program")
			assert.NotContains(t, ex[0].fdNumbers(), 5)
		}
	}
}

func showFDs(r *result) []int {
	var fds []int
	for _, m := range regexp.MustCompile(`(?m)^(\d+) (.*)$`).FindAllStringSubmatch(r.out, -1) {
		if m[2] == r.tracePth {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		fds = append(fds, n)
	}
	return fds
}

func TestStrictFds(t *testing.T) {
	f := setup(t)
	r := f.run(t, runOpts{env: []string{"FORKLESS_FDS=strict", "FORKLESS_KEEP_FDS=6"}}, "exec", "strict")
	assert.Contains(t, r.out, "failed=-1 errno=2 flags 5=0 6=0 7=1\n", "a failed exec leaves the flags as they were")
	fds := showFDs(r)
	assert.Equal(t, []int{0, 1, 2, 6}, fds, "only stdio and the kept descriptor reach the program\n%s", r.out)
	ex := filter(r.own(), "exec", "exec")
	require.Len(t, ex, 3)
	last := ex[2]
	assert.Equal(t, []int{0, 1, 2, 6}, last.fdNumbers())
	assert.Positive(t, last.StrictClosed)

	p := f.run(t, runOpts{}, "exec", "strict")
	assert.Contains(t, showFDs(p), 5, "POSIX mode passes plain descriptors on\n%s", p.out)
	assert.Contains(t, showFDs(p), 6)
}

func TestStickyPreload(t *testing.T) {
	f := setup(t)
	r := f.run(t, runOpts{}, "exec", "emptyenv")
	assert.Equal(t, f.preload, r.value(t, "LD_PRELOAD"), "an empty envp still gets the library")
	assert.Equal(t, r.tracePth, r.value(t, "FORKLESS_TRACE"))
	assert.Equal(t, strconv.Itoa(r.pid), r.value(t, "pid"))
	assert.Equal(t, "1024", r.value(t, "system"))
	own := r.own()
	ex := filter(own, "exec", "exec")
	require.Len(t, ex, 1)
	assert.Equal(t, "/proc/self/exe", ex[0].Path)
	sys := filter(own, "spawn", "system")
	require.Len(t, sys, 1, "the re-executed program still traces")
	assert.Equal(t, []string{"sh", "-c", "exit 4"}, sys[0].Argv)

	g := f.run(t, runOpts{glibc: true}, "exec", "emptyenv")
	assert.Equal(t, "(unset)", g.value(t, "LD_PRELOAD"))
}

func TestTraceEscaping(t *testing.T) {
	f := setup(t)
	args := []string{"echo", "q\"uote", `back\slash`, "new\nline", "tab\tctl\x01", "bad\xffutf8", "ünï€😀"}
	long := strings.Repeat("x", 300)
	args = append(args, long)
	for i := len(args); i < 40; i++ {
		args = append(args, fmt.Sprint("arg", i))
	}
	r := f.run(t, runOpts{}, "exec", append([]string{"execvp"}, args...)...)
	ex := filter(r.own(), "exec", "exec")
	require.Len(t, ex, 1)
	want := append([]string{}, args[:32]...)
	want[5] = "bad\ufffdutf8"
	want[7] = long[:256]
	assert.Equal(t, want, ex[0].Argv)
	assert.True(t, ex[0].ArgvTruncated)
}

// ---- fork, _Fork, vfork ----

func TestForkThreads(t *testing.T) {
	f := setup(t)
	r := f.run(t, runOpts{}, "fork", "threads")
	child, err := strconv.Atoi(r.value(t, "child"))
	require.NoError(t, err)
	assert.Equal(t, "3", r.value(t, "status"))
	fk := filter(r.own(), "fork", "fork")
	require.Len(t, fk, 1)
	assert.Equal(t, child, fk[0].Child)
	assert.Equal(t, 4, fk[0].Threads, "threads at the fork")
	assert.Zero(t, fk[0].Errno)
	assert.True(t, fk[0].has("dur_us"))
	assert.False(t, fk[0].has("fds"), "a fork line lists descriptors only under a host")
}

func TestForkChildUsesLibraryAgain(t *testing.T) {
	f := setup(t)
	// Under glibc 2.36 itself this can deadlock (its popen lock is not
	// taken around fork); the library must not.
	r := f.run(t, runOpts{}, "fork", "nested")
	assert.Equal(t, "0", r.value(t, "nested-bad"), r.out)
	assert.Equal(t, "1", r.value(t, "popen-loop-ran"))
	fk := filter(r.own(), "fork", "fork")
	require.Len(t, fk, 20)
	children := 0
	for _, e := range fk {
		children += len(filter(r.mine(e.Child), "fork", "fork"))
		assert.Len(t, filter(r.mine(e.Child), "spawn", "popen"), 1)
		assert.Len(t, filter(r.mine(e.Child), "spawn", "system"), 1)
	}
	assert.Equal(t, 20, children, "each fork child forked once more")
}

func Test_Fork(t *testing.T) {
	f := setup(t)
	r := f.run(t, runOpts{}, "fork", "_Fork")
	child, err := strconv.Atoi(r.value(t, "child"))
	require.NoError(t, err)
	assert.Equal(t, "4", r.value(t, "status"))
	fk := filter(r.own(), "fork", "fork")
	require.Len(t, fk, 1)
	assert.Equal(t, child, fk[0].Child)
	assert.Equal(t, 1, fk[0].Threads)
}

func TestVforkExec(t *testing.T) {
	f := setup(t)
	r := f.run(t, runOpts{}, "exec", "vfork")
	g := f.run(t, runOpts{glibc: true}, "exec", "vfork")
	m := regexp.MustCompile(`(?m)^true pid=(\d+) intact=1 status=0$`).FindStringSubmatch(r.out)
	require.NotNil(t, m, "the parent resumed with its frame intact:\n%s", r.out)
	ok, _ := strconv.Atoi(m[1])
	m = regexp.MustCompile(`(?m)^missing pid=(\d+) intact=1 status=42$`).FindStringSubmatch(r.out)
	require.NotNil(t, m, r.out)
	bad, _ := strconv.Atoi(m[1])
	assert.Contains(t, r.out, "exit status=7\n")
	assert.Equal(t, strconv.Itoa(r.pid), r.value(t, "self"))
	norm := regexp.MustCompile(`\d{2,}`)
	assert.Equal(t, norm.ReplaceAllString(g.out, "N"), norm.ReplaceAllString(r.out, "N"))

	vf := filter(r.trace, "spawn", "vfork")
	require.Len(t, vf, 3, "one line for the exec, two for the failed one")
	for _, e := range vf {
		assert.Equal(t, r.pid, e.PID, "reported for the caller of vfork")
		assert.Equal(t, r.pid, e.TID)
		assert.Equal(t, os.Getpid(), e.PPID)
		assert.True(t, e.has("dur_us"))
	}
	assert.Equal(t, ok, vf[0].Child)
	assert.Equal(t, "/bin/true", vf[0].Path)
	assert.Zero(t, vf[0].Errno)
	assert.Equal(t, bad, vf[1].Child)
	assert.Zero(t, vf[1].Errno)
	assert.Equal(t, bad, vf[2].Child)
	assert.Equal(t, 2, vf[2].Errno)
	assert.Empty(t, r.mine(ok), "the vfork child does not report as itself")
	assert.Empty(t, filter(r.trace, "exec", "exec"))
}

func TestTraceSurvivesClosefrom(t *testing.T) {
	f := setup(t)
	victim := filepath.Join(t.TempDir(), "victim")
	r := f.run(t, runOpts{}, "exec", "closefrom", victim)
	assert.Equal(t, "1", r.value(t, "trace-fd-high"), "the trace descriptor sits high")
	assert.Equal(t, "0", r.value(t, "system"))
	assert.Equal(t, "1", r.value(t, "tfd-still-victim"))
	data, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Empty(t, string(data), "nothing written into a descriptor that is no longer ours")
	own := r.own()
	var kinds []string
	for _, e := range own {
		kinds = append(kinds, e.Event+"/"+e.Via)
	}
	assert.Equal(t, []string{"spawn/vfork", "spawn/system", "fork/fork", "exec/exec"}, kinds)
}

func TestDisabled(t *testing.T) {
	f := setup(t)
	r := f.run(t, runOpts{env: []string{"FORKLESS_DISABLE=1"}}, "system", "status")
	g := f.run(t, runOpts{glibc: true}, "system", "status")
	assert.Equal(t, g.out, r.out)
	assert.Empty(t, r.trace, "disabled: glibc does everything, nothing is traced")
	_, err := os.Stat(r.tracePth)
	assert.True(t, os.IsNotExist(err), "the trace file is not even created")
}
