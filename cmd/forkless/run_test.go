package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
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
	"golang.org/x/sys/unix"
)

// cliEnv makes this test binary act as the forkless command (TestMain), so
// tests can run it as a separate process: for signals and help output.
const cliEnv = "FORKLESS_TEST_AS_CLI"

func TestMain(m *testing.M) {
	// forkless run starts its guard and its stub from its own executable:
	// here, this test binary.
	if len(os.Args) > 1 && hidden[os.Args[1]] != nil {
		os.Exit(dispatch(os.Args[1:], os.Stderr))
	}
	if os.Getenv(cliEnv) == "1" {
		os.Unsetenv(cliEnv)
		os.Exit(dispatch(os.Args[1:], os.Stderr))
	}
	status := m.Run()
	if dummyLib != "" {
		os.RemoveAll(filepath.Dir(dummyLib))
	}
	os.Exit(status)
}

// cli returns a command running forkless with args in another process.
func cli(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	c := exec.Command(self, args...)
	c.Env = append(os.Environ(), cliEnv+"=1")
	return c
}

var (
	dummyOnce sync.Once
	dummyLib  string
	dummyErr  error
)

// dummyLibrary returns an empty shared library, compiled once, to preload
// instead of lib/libforkless.so: the tests of forkless run do not depend on
// the real library.
func dummyLibrary(t *testing.T) string {
	t.Helper()
	dummyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "forkless-run-test-")
		if err != nil {
			dummyErr = err
			return
		}
		src := filepath.Join(dir, "empty.c")
		dummyLib = filepath.Join(dir, "libempty.so")
		if dummyErr = os.WriteFile(src, []byte("/* nothing */\n"), 0o644); dummyErr != nil {
			return
		}
		if msg, err := exec.Command("gcc", "-shared", "-fPIC", "-o", dummyLib, src).CombinedOutput(); err != nil {
			dummyErr = errors.New(string(msg))
		}
	})
	require.NoError(t, dummyErr)
	return dummyLib
}

func TestParseRunFlags(t *testing.T) {
	var out bytes.Buffer
	f, err := parseRunFlags([]string{"--", "make", "-j2"}, &out)
	require.NoError(t, err)
	assert.Equal(t, &runFlags{platform: "auto", argv: []string{"make", "-j2"}}, f)

	f, err = parseRunFlags(strings.Fields("--trace t.jsonl --summary --json --procs p.json --fds strict --keep-fds 5,6 --lib /l.so "+
		"--exec-allow /bin/* --exec-deny curl --exec-deny /tmp/* --max-procs 7 --platform ptrace -- ls --summary"), &out)
	require.NoError(t, err)
	assert.Equal(t, &runFlags{
		trace: "t.jsonl", summary: true, json: true, procs: "p.json",
		policy: libos.Policy{FDs: "strict", KeepFDs: []int{5, 6}, ExecAllow: []string{"/bin/*"}, ExecDeny: []string{"curl", "/tmp/*"}, MaxProcs: 7},
		lib:    "/l.so", platform: "ptrace", argv: []string{"ls", "--summary"},
	}, f)

	// Without "--", flags end at CMD.
	f, err = parseRunFlags(strings.Fields("-fds posix make -j2 --trace x"), &out)
	require.NoError(t, err)
	assert.Equal(t, "posix", f.policy.FDs)
	assert.Equal(t, []string{"make", "-j2", "--trace", "x"}, f.argv)

	for _, c := range []struct{ args, want string }{
		{"", "no command given"},
		{"--summary --", "no command given"},
		{"--fds loose ls", `--fds: "loose" is not a policy: want posix or strict`},
		{"--keep-fds 5 ls", "--keep-fds applies to --fds strict"},
		{"--fds strict --keep-fds 5,x ls", `--keep-fds: "x" is not a descriptor number`},
		{"--fds strict --keep-fds -1 ls", `--keep-fds: "-1" is not a descriptor number`},
		{"--fds strict --keep-fds 3,,4 ls", `--keep-fds: "" is not a descriptor number`},
		{"--fds strict --keep-fds " + strings.Repeat("9,", 32) + "9 ls", "--keep-fds: 33 descriptors, at most 32"},
		{"--json ls", "--json applies to --summary"},
		{"--exec-deny a:b ls", `exec pattern "a:b": holds ':' or NUL`},
		{"--exec-allow [x ls", `exec pattern "[x": syntax error in pattern`},
		{"--max-procs -2 ls", "--max-procs: -2 is negative"},
		{"--platform docker ls", `--platform: "docker": want auto, preload or ptrace`},
		{"--trace - ls", "--trace: give a file name"},
		{"--bogus ls", "flag provided but not defined: -bogus"},
	} {
		_, err := parseRunFlags(strings.Fields(c.args), &out)
		if assert.Error(t, err, c.args) {
			assert.Contains(t, err.Error(), c.want, c.args)
		}
	}

	out.Reset()
	_, err = parseRunFlags([]string{"-h"}, &out)
	assert.True(t, errors.Is(err, flag.ErrHelp))
	assert.Contains(t, out.String(), "Usage: forkless run [flags] [--] CMD [ARGS...]")
	assert.Contains(t, out.String(), "--keep-fds LIST")
	assert.Contains(t, out.String(), "Examples:")
}

func TestRunEnv(t *testing.T) {
	base := []string{"PATH=/bin", "LD_PRELOAD=/a.so:/lib.so /b.so", "FORKLESS_FDS=strict", "FORKLESS_DISABLE=1", "HOME=/h"}
	env := runEnv(base, "/lib.so", "", nil)
	assert.Equal(t, []string{"PATH=/bin", "FORKLESS_FDS=strict", "FORKLESS_DISABLE=1", "HOME=/h", "LD_PRELOAD=/lib.so:/a.so:/b.so"}, env)

	pol := libos.Policy{FDs: "strict", KeepFDs: []int{7, 9}}
	env = runEnv(base, "/lib.so", "/t/trace.jsonl", append([]string{"FORKLESS_HOST=/s"}, pol.Env()...))
	assert.Equal(t, []string{
		"PATH=/bin", "FORKLESS_DISABLE=1", "HOME=/h", "LD_PRELOAD=/lib.so:/a.so:/b.so",
		"FORKLESS_TRACE=/t/trace.jsonl", "FORKLESS_HOST=/s", "FORKLESS_FDS=strict", "FORKLESS_KEEP_FDS=7,9",
	}, env)

	env = runEnv([]string{"LD_PRELOAD="}, "/lib.so", "", nil)
	assert.Equal(t, []string{"LD_PRELOAD=/lib.so"}, env)
}

func TestCheckRunLib(t *testing.T) {
	dir := t.TempDir()
	_, err := checkRunLib(filepath.Join(dir, "lib", "libforkless.so"), false)
	assert.ErrorContains(t, err, "library "+dir+"/lib/libforkless.so not found: run `make` in the forkless repository to build it, or pass --lib PATH")
	_, err = checkRunLib(filepath.Join(dir, "x.so"), true)
	assert.EqualError(t, err, "library "+dir+"/x.so not found")
	_, err = checkRunLib(dir, true)
	assert.EqualError(t, err, "library "+dir+" is not a regular file")

	odd := filepath.Join(dir, "a:b.so")
	require.NoError(t, os.WriteFile(odd, nil, 0o644))
	_, err = checkRunLib(odd, true)
	assert.ErrorContains(t, err, "holds a colon or a space")

	t.Chdir(dir)
	require.NoError(t, os.WriteFile("rel.so", nil, 0o644))
	abs, err := checkRunLib("rel.so", true)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "rel.so"), abs)
}

// run runs forkless run in this process with args and returns the status
// and what went to stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	f, err := parseRunFlags(args, nil)
	require.NoError(t, err)
	var stdout, stderr bytes.Buffer
	status := doRun(f, runIO{strings.NewReader(""), &stdout, &stderr})
	return status, stdout.String(), stderr.String()
}

func TestRunExitStatus(t *testing.T) {
	lib := dummyLibrary(t)
	status, stdout, stderr := run(t, "--lib", lib, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
	assert.Equal(t, 7, status)
	assert.Equal(t, "out\n", stdout)
	assert.Equal(t, "err\n", stderr)

	status, _, stderr = run(t, "--lib", lib, "true")
	assert.Equal(t, 0, status)
	assert.Empty(t, stderr)
}

func TestRunSignalDeath(t *testing.T) {
	lib := dummyLibrary(t)
	status, stdout, stderr := run(t, "--lib", lib, "--", "sh", "-c", "kill -KILL $$")
	assert.Equal(t, 128+int(syscall.SIGKILL), status)
	assert.Empty(t, stdout)
	assert.Empty(t, stderr, "nothing extra on a death by signal")

	status, _, _ = run(t, "--lib", lib, "--", "sh", "-c", "kill -TERM $$")
	assert.Equal(t, 128+int(syscall.SIGTERM), status)
}

func TestRunSetsEnvironment(t *testing.T) {
	lib := dummyLibrary(t)
	dir := t.TempDir()
	t.Chdir(dir)
	require.NoError(t, os.WriteFile("t.jsonl", []byte("old run\n"), 0o644))
	t.Setenv("LD_PRELOAD", "/other.so")
	status, stdout, stderr := run(t, "--lib", lib, "--trace", "t.jsonl", "--fds", "strict", "--keep-fds", "5,6", "--",
		"sh", "-c", `printf '%s|%s|%s|%s' "$LD_PRELOAD" "$FORKLESS_TRACE" "$FORKLESS_FDS" "$FORKLESS_KEEP_FDS"`)
	require.Equal(t, 0, status, stderr)
	assert.Equal(t, lib+":/other.so|"+filepath.Join(dir, "t.jsonl")+"|strict|5,6", stdout)
	data, err := os.ReadFile("t.jsonl")
	require.NoError(t, err)
	assert.NotContains(t, string(data), "old run", "the trace file is truncated first")
}

func TestRunErrors(t *testing.T) {
	lib := dummyLibrary(t)
	tiny := testbin.MustBuild(t, testbin.Tiny)
	self, err := os.Executable()
	require.NoError(t, err)
	dir := t.TempDir()
	noExec := filepath.Join(dir, "noexec")
	require.NoError(t, os.WriteFile(noExec, []byte("#!/bin/sh\n"), 0o644))
	noInterp := filepath.Join(dir, "nointerp")
	require.NoError(t, os.WriteFile(noInterp, []byte("#!/nonexistent/sh\n"), 0o755))
	garbage := filepath.Join(dir, "garbage")
	require.NoError(t, os.WriteFile(garbage, []byte("\x00\x01\x02"), 0o755))

	for _, c := range []struct {
		args   []string
		status int
		stderr string
	}{
		{[]string{"--lib", filepath.Join(dir, "none.so"), "true"}, 125,
			"forkless run: library " + dir + "/none.so not found\n"},
		{[]string{"--lib", lib, "forkless-no-such-command"}, 127,
			"forkless run: forkless-no-such-command: command not found\n"},
		{[]string{"--lib", lib, filepath.Join(dir, "missing")}, 127,
			"forkless run: " + dir + "/missing: command not found\n"},
		{[]string{"--lib", lib, noExec}, 126,
			"forkless run: " + noExec + ": permission denied\n"},
		{[]string{"--lib", lib, noInterp}, 127,
			"forkless run: start " + noInterp + ": no such file or directory\n"},
		{[]string{"--lib", lib, garbage}, 126,
			"forkless run: start " + garbage + ": exec format error\n"},
		{[]string{"--lib", lib, "--exec-deny", "true", "true"}, 126,
			"forkless run: /usr/bin/true: denied by the exec policy\n"},
		{[]string{"--lib", lib, tiny}, 0, ""},                           // static: ptrace
		{[]string{"--lib", lib, self, "-test.run=^TestRunEnv$"}, 0, ""}, // Go: ptrace
		{[]string{"--lib", lib, "--platform", "preload", tiny}, 0,
			"forkless run: warning: " + tiny + " is statically linked: with --platform preload, the processes it creates itself are not seen\n"},
		{[]string{"--lib", lib, "--trace", filepath.Join(dir, "no", "such", "dir"), "true"}, 125,
			"forkless run: --trace: open " + dir + "/no/such/dir: no such file or directory\n"},
	} {
		status, _, stderr := run(t, c.args...)
		assert.Equal(t, c.status, status, "%v", c.args)
		assert.Equal(t, c.stderr, stderr, "%v", c.args)
	}

	// The default library sits next to this test binary's directory,
	// where there is none.
	status, _, stderr := run(t, "true")
	assert.Equal(t, 125, status)
	assert.Contains(t, stderr, "not found: run `make` in the forkless repository to build it, or pass --lib PATH\n")
}

// sampleTrace is the trace package's handwritten sample.
func sampleTrace(t *testing.T) string {
	t.Helper()
	root, err := testbin.Root()
	require.NoError(t, err)
	return filepath.Join(root, "internal", "trace", "testdata", "sample.jsonl")
}

func sampleReport(t *testing.T, tree bool) *trace.Report {
	t.Helper()
	f, err := os.Open(sampleTrace(t))
	require.NoError(t, err)
	defer f.Close()
	evs, errs := trace.Decode(f)
	require.Empty(t, errs)
	return trace.NewReport(evs, nil, tree)
}

// withoutEvents drops the "events: N from M processes over D" line of a
// summary: under forkless run the trace also holds the exit line the host
// writes for CMD, now, years after the sample's lines.
func withoutEvents(t *testing.T, summary string) string {
	t.Helper()
	var keep []string
	for _, l := range strings.SplitAfter(summary, "\n") {
		if strings.HasPrefix(l, "events: ") {
			assert.True(t, strings.HasPrefix(l, "events: 16 from 10 processes"), "the sample's 15 lines and CMD's exit: %s", l)
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "")
}

func TestRunSummary(t *testing.T) {
	lib := dummyLibrary(t)
	sample := sampleTrace(t)
	var b bytes.Buffer
	require.NoError(t, sampleReport(t, false).WriteText(&b))
	want := withoutEvents(t, strings.Replace(b.String(), "events: 15 from 9 processes", "events: 16 from 10 processes", 1))

	// CMD writes the handwritten trace itself, into the temporary file
	// forkless made, and says where that was.
	script := `cat "$1" >> "$FORKLESS_TRACE"; echo bad line >> "$FORKLESS_TRACE"; printf %s "$FORKLESS_TRACE"; exit 3`
	status, stdout, stderr := run(t, "--lib", lib, "--summary", "--", "sh", "-c", script, "sh", sample)
	assert.Equal(t, 3, status)
	assert.Equal(t, "forkless run: trace: line 16: invalid JSON: invalid character 'b' looking for beginning of value\n"+
		"forkless run: summary\n"+want, withoutEvents(t, stderr))
	require.NotEmpty(t, stdout)
	_, err := os.Stat(stdout)
	assert.True(t, errors.Is(err, os.ErrNotExist), "the temporary trace is removed: %v", err)

	// With --trace the file stays, and the summary says how to see the tree.
	kept := filepath.Join(t.TempDir(), "kept.jsonl")
	status, _, stderr = run(t, "--lib", lib, "--summary", "--trace", kept, "--", "sh", "-c", `cat "$1" >> "$FORKLESS_TRACE"`, "sh", sample)
	assert.Equal(t, 0, status)
	assert.Equal(t, "forkless run: summary\n"+want+"process tree: forkless trace "+kept+"\n", withoutEvents(t, stderr))
	_, err = os.Stat(kept)
	assert.NoError(t, err)

	// JSON.
	status, _, stderr = run(t, "--lib", lib, "--summary", "--json", "--", "sh", "-c", `cat "$1" >> "$FORKLESS_TRACE"`, "sh", sample)
	assert.Equal(t, 0, status)
	var r trace.Report
	require.NoError(t, json.Unmarshal([]byte(stderr), &r), stderr)
	wantSummary := sampleReport(t, false).Summary
	assert.Equal(t, 16, r.Summary.Events)
	r.Summary.Events, r.Summary.Processes, r.Summary.SpanNs = wantSummary.Events, wantSummary.Processes, wantSummary.SpanNs
	assert.Equal(t, wantSummary, r.Summary)
	assert.Nil(t, r.Tree)

	// Nothing created: only CMD's exit line.
	status, _, stderr = run(t, "--lib", lib, "--summary", "true")
	assert.Equal(t, 0, status)
	assert.Contains(t, stderr, "events: 1 from 1 processes")
	assert.Contains(t, stderr, "(no processes created: CMD created none, or the library was not loaded)\n")
}

// TestRunForwardsSignals runs forkless in its own session (no controlling
// terminal, so every signal is forwarded) and signals it alone.
func TestRunForwardsSignals(t *testing.T) {
	lib := dummyLibrary(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT} {
		t.Run(sig.String(), func(t *testing.T) {
			name := strings.TrimPrefix(unix.SignalName(sig), "SIG")
			script := `trap 'exit 42' ` + name + `; echo ready; while :; do sleep 0.05; done`
			c := cli(t, "run", "--lib", lib, "--", "sh", "-c", script)
			c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			r, w, err := os.Pipe()
			require.NoError(t, err)
			defer r.Close()
			c.Stdout = w
			// A file, not a buffer: no copying goroutine to race with.
			stderr, err := os.CreateTemp(t.TempDir(), "stderr")
			require.NoError(t, err)
			defer stderr.Close()
			c.Stderr = stderr
			readStderr := func() string {
				b, _ := os.ReadFile(stderr.Name())
				return string(b)
			}
			require.NoError(t, c.Start())
			// A lost signal must fail this test, not hang the package.
			kill := time.AfterFunc(time.Minute, func() { c.Process.Kill() })
			defer kill.Stop()
			w.Close()
			line, err := bufio.NewReader(r).ReadString('\n')
			require.NoError(t, err, "stderr: %s", readStderr())
			require.Equal(t, "ready\n", line)
			require.NoError(t, c.Process.Signal(sig))
			err = c.Wait()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "%v; stderr: %s", err, readStderr())
			assert.Equal(t, 42, ee.ExitCode(), "CMD ran its trap for %v", sig)
			assert.Empty(t, readStderr())
		})
	}
}

func TestRunKeepsIgnoredSignalsIgnored(t *testing.T) {
	// nohup: SIGHUP ignored for forkless stays ignored for CMD, which
	// then survives its own SIGHUP.
	lib := dummyLibrary(t)
	c := cli(t, "run", "--lib", lib, "--", "sh", "-c", "kill -HUP $$; exit 5")
	c.Args = append([]string{"sh", "-c", `trap '' HUP; exec "$0" "$@"`}, c.Args...)
	c.Args[3] = c.Path
	c.Path = "/bin/sh"
	out, err := c.CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v: %s", err, out)
	assert.Equal(t, 5, ee.ExitCode(), "%s", out)
}

func TestHelpOutput(t *testing.T) {
	for _, args := range [][]string{{"help", "run"}, {"run", "-h"}, {"run", "--help"}} {
		out, err := cli(t, args...).Output()
		require.NoError(t, err, "%v", args)
		assert.True(t, strings.HasPrefix(string(out), "Usage: forkless run [flags] [--] CMD [ARGS...]\n"), "%v: %s", args, out)
		assert.Contains(t, string(out), "forkless run --trace build.jsonl -- make -j8 && forkless trace build.jsonl")
	}
	for _, args := range [][]string{{"help", "trace"}, {"trace", "-h"}} {
		out, err := cli(t, args...).Output()
		require.NoError(t, err, "%v", args)
		assert.True(t, strings.HasPrefix(string(out), "Usage: forkless trace [--json] FILE\n"), "%v: %s", args, out)
	}
	out, err := cli(t, "help").Output()
	require.NoError(t, err)
	assert.Contains(t, string(out), "\n  run      run a program with lib/libforkless.so preloaded")
	assert.Contains(t, string(out), "\n  trace    summarize a trace")

	out, err = cli(t, "run").CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee))
	assert.Equal(t, exitUsage, ee.ExitCode())
	assert.Equal(t, "forkless run: no command given: forkless run [flags] -- CMD [ARGS...]\nRun 'forkless run -h' for usage.\n", string(out))
}
