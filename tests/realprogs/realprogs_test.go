// Package realprogs runs real programs under `forkless run --trace FILE`:
// bash (pipelines, subshells, redirections), make -j2 on a generated C
// project, git (init, add, commit with a hook, log, a shell alias), perl
// (system, backticks, pipe open) and python (subprocess.run, os.system,
// os.popen, os.posix_spawn). Each program runs natively and under forkless
// in twin scratch directories; the outputs and exit statuses must match,
// and the trace must hold the events the program is known to produce.
package realprogs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forkless/forkless/internal/testbin"
	fltrace "github.com/forkless/forkless/internal/trace"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runLimit only stops a hung program; no result depends on it.
const runLimit = 5 * time.Minute

// ---- the trace ----

type event fltrace.Event

func (e event) String() string {
	return fmt.Sprintf("pid %d ppid %d %s/%s errno %d child %d path %q argv %q",
		e.PID, e.PPID, e.Event, e.Via, e.Errno, e.Child, e.Path, e.Argv)
}

type trace []event

func readTrace(t *testing.T, path string) trace {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	decoded, errs := fltrace.Decode(bytes.NewReader(data))
	require.Empty(t, errs, "trace lines off the schema")
	tr := make(trace, len(decoded))
	for i, e := range decoded {
		tr[i] = event(e)
	}
	return tr
}

func (tr trace) String() string {
	var b strings.Builder
	for _, e := range tr {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func (tr trace) filter(keep func(e event) bool) trace {
	var out trace
	for _, e := range tr {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// created: the processes the trace says were created (spawn, fork).
func (tr trace) created() map[int]event {
	m := map[int]event{}
	for _, e := range tr {
		if (e.Event == "spawn" || e.Event == "fork") && e.Errno == 0 && e.Child > 0 {
			m[e.Child] = e
		}
	}
	return m
}

// root returns the pid of the command forkless started: the only process
// in the trace whose parent is forkless itself.
func (tr trace) root(t *testing.T, forklessPID int) int {
	t.Helper()
	pids := map[int]bool{}
	for _, e := range tr {
		if e.PPID == forklessPID {
			pids[e.PID] = true
		}
	}
	require.Len(t, pids, 1, "processes whose parent is forkless (pid %d):\n%s", forklessPID, tr)
	for p := range pids {
		return p
	}
	return 0
}

// checkTree: every process writing events is the root or a process the
// trace saw being created, and its parent is its creator.
func (tr trace) checkTree(t *testing.T, root int) {
	t.Helper()
	made := tr.created()
	for _, e := range tr {
		if e.PID == root {
			continue
		}
		c, ok := made[e.PID]
		if assert.True(t, ok, "event of a process the trace did not see created: %s\n%s", e, tr) {
			assert.Equal(t, c.PID, e.PPID, "parent of %d", e.PID)
		}
	}
}

// descends reports whether pid is root or was created, transitively, by root.
func (tr trace) descends(pid, root int) bool {
	made := tr.created()
	for i := 0; i < 1000; i++ {
		if pid == root {
			return true
		}
		c, ok := made[pid]
		if !ok {
			return false
		}
		pid = c.PID
	}
	return false
}

// execs returns the successful exec lines of programs named base, i.e.
// those not followed by a failure line of the same process and path.
func (tr trace) execs(base string) trace {
	return tr.filter(func(e event) bool {
		return e.Event == "exec" && e.Errno == 0 && filepath.Base(e.Path) == base && !tr.failedLater(e)
	})
}

// failedLater reports whether e, an exec or vfork attempt with errno 0,
// is followed by the same attempt reporting an error.
func (tr trace) failedLater(e event) bool {
	for _, f := range tr {
		if f.PID == e.PID && f.Child == e.Child && f.Event == e.Event && f.Via == e.Via &&
			f.Path == e.Path && f.Errno != 0 && slices.Equal(f.Argv, e.Argv) {
			return true
		}
	}
	return false
}

// spawns returns the successful spawn events (any via) made by pid whose
// program's base name is base.
func (tr trace) spawns(pid int, base string) trace {
	return tr.filter(func(e event) bool {
		return e.Event == "spawn" && e.PID == pid && e.Errno == 0 && filepath.Base(e.Path) == base &&
			!tr.failedLater(e)
	})
}

func hasArg(e event, arg string) bool { return slices.Contains(e.Argv, arg) }

// ---- locating forkless ----

func hasRun(bin string) bool {
	return exec.Command(bin, "run", "-h").Run() == nil
}

// forkless returns bin/forkless with a run subcommand, building it and the
// library with make when either is missing; it skips the test when the
// run subcommand does not exist yet.
func forkless(t *testing.T) string {
	t.Helper()
	root := testbin.MustRoot(t)
	bin := filepath.Join(root, "bin", "forkless")
	lib := filepath.Join(root, "lib", "libforkless.so")
	_, libErr := os.Stat(lib)
	if libErr != nil || !hasRun(bin) {
		cmd := exec.Command("make", "bin/forkless", "lib/libforkless.so")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "make bin/forkless lib/libforkless.so:\n%s", out)
	}
	if !hasRun(bin) {
		t.Skipf("%s has no run subcommand yet (`forkless run -h` fails): skipping the real programs", bin)
	}
	return bin
}

// ---- running ----

type result struct {
	code   int
	stdout string
	stderr string
	pid    int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// env is the environment of every run: no preload, a private HOME, no
// system git configuration, fixed dates and locale.
func env(home string) []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "LD_PRELOAD" || strings.HasPrefix(name, "FORKLESS_") || strings.HasPrefix(name, "GIT_") ||
			name == "HOME" || name == "LC_ALL" || name == "LANG" || name == "MAKEFLAGS" || name == "MFLAGS" ||
			name == "MAKELEVEL" || name == "MAKEOVERRIDES" {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "HOME="+home, "LC_ALL=C", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_DATE=2020-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2020-01-01T00:00:00Z")
}

func run(t *testing.T, dir string, argv []string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env(filepath.Join(filepath.Dir(dir), "home"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "%q did not finish within %v; stderr:\n%s", argv, runLimit, stderr.String())
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
			r.code = 128 + int(ws.Signal())
		} else {
			r.code = ws.ExitStatus()
		}
	default:
		require.NoError(t, err, "start %q", argv)
	}
	return r
}

// step is one command of a case. check gets the trace and the pid of the
// command (the root of the trace).
type step struct {
	argv  []string
	code  int                 // expected exit status
	want  string              // expected stdout, when not empty (both runs)
	same  func(string) string // normalises stdout before comparing; nil: as is
	check func(t *testing.T, tr trace, root int, dir string)
}

type progCase struct {
	name  string
	need  []string                             // programs that must be installed
	setup func(t *testing.T, dir string)       // fills the scratch directory
	steps func(t *testing.T, py string) []step // py: the real python interpreter
}

// twin makes a scratch directory (and a HOME beside it).
func twin(t *testing.T, c progCase) string {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "work")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Mkdir(filepath.Join(base, "home"), 0o755))
	if c.setup != nil {
		c.setup(t, dir)
	}
	return dir
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), mode))
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// python returns the real interpreter behind python3 (pyenv's python3 is
// a bash shim).
func python(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	require.NoError(t, err, "python3 -c 'import sys; print(sys.executable)'")
	return strings.TrimSpace(string(out))
}

// ---- the cases ----

const bashScript = `set -e
mkdir -p sub
echo hello world | tr a-z A-Z | rev
(cd sub && pwd -P | sed 's|.*/||'; echo in-subshell) > out.txt
cat < out.txt
{ echo b; echo a; echo c; } | sort
x=$(printf '%s' cmdsub | tr a-z A-Z); echo "$x"
ls does-not-exist 2> err.txt || echo "ls failed: $(wc -l < err.txt) line"
echo appended >> out.txt
wc -l < out.txt
exit 4
`

const bashWant = `DLROW OLLEH
sub
in-subshell
a
b
c
CMDSUB
ls failed: 1 line
3
`

func checkBash(t *testing.T, tr trace, root int, dir string) {
	forks := tr.filter(func(e event) bool { return e.Event == "fork" && e.PID == root && e.Errno == 0 })
	// Pipelines (3 + 2 + 2 commands), the subshell, its pipeline inside,
	// the redirected commands and the command substitutions.
	assert.GreaterOrEqual(t, len(forks), 12, "forks by bash:\n%s", tr)
	for name, n := range map[string]int{"tr": 2, "rev": 1, "sed": 1, "cat": 1, "sort": 1, "ls": 1, "wc": 2, "mkdir": 1} {
		x := tr.execs(name)
		if assert.Len(t, x, n, "exec of %s:\n%s", name, tr) {
			for _, e := range x {
				assert.True(t, tr.descends(e.PID, root) && e.PID != root, "%s was not exec'd in a child of bash: %s", name, e)
			}
		}
	}
}

const makefile = `CC = gcc
CFLAGS = -O2 -Wall
OBJS = main.o a.o b.o c.o
run: prog
	./prog
prog: $(OBJS)
	$(CC) -o $@ $(OBJS)
%.o: %.c util.h
	$(CC) $(CFLAGS) -c -o $@ $<
`

func setupMake(t *testing.T, dir string) {
	writeFile(t, filepath.Join(dir, "Makefile"), makefile, 0o644)
	writeFile(t, filepath.Join(dir, "util.h"),
		"#define VALUE_A 1\n#define VALUE_B 20\n#define VALUE_C 300\nint a_value(void);\nint b_value(void);\nint c_value(void);\n", 0o644)
	for _, n := range []string{"a", "b", "c"} {
		writeFile(t, filepath.Join(dir, n+".c"), fmt.Sprintf("#include \"util.h\"\nint %s_value(void) { return VALUE_%s; }\n",
			n, strings.ToUpper(n)), 0o644)
	}
	writeFile(t, filepath.Join(dir, "main.c"), `#include <stdio.h>
#include "util.h"
int main(void) { printf("sum=%d\n", a_value() + b_value() + c_value()); return 0; }
`, 0o644)
}

func checkMake(t *testing.T, tr trace, root int, dir string) {
	gccs := tr.spawns(root, "gcc")
	require.Len(t, gccs, 5, "gcc spawns by make:\n%s", tr)
	for _, src := range []string{"main.c", "a.c", "b.c", "c.c"} {
		var g *event
		for i := range gccs {
			if hasArg(gccs[i], src) && hasArg(gccs[i], "-c") {
				g = &gccs[i]
			}
		}
		if !assert.NotNil(t, g, "no gcc spawn compiling %s:\n%s", src, tr) {
			continue
		}
		assert.Len(t, tr.spawns(g.Child, "cc1"), 1, "cc1 under gcc for %s:\n%s", src, tr)
		assert.Len(t, tr.spawns(g.Child, "as"), 1, "as under gcc for %s:\n%s", src, tr)
	}
	var link *event
	for i := range gccs {
		if hasArg(gccs[i], "prog") && !hasArg(gccs[i], "-c") {
			link = &gccs[i]
		}
	}
	if assert.NotNil(t, link, "no link step:\n%s", tr) {
		c2 := tr.spawns(link.Child, "collect2")
		if assert.Len(t, c2, 1, "collect2 under the linking gcc:\n%s", tr) {
			assert.Len(t, tr.spawns(c2[0].Child, "ld"), 1, "ld under collect2:\n%s", tr)
		}
	}
	assert.Len(t, tr.spawns(root, "prog"), 1, "make running ./prog:\n%s", tr)
	assert.FileExists(t, filepath.Join(dir, "prog"))
}

func setupGit(t *testing.T, dir string) {
	writeFile(t, filepath.Join(dir, "f.txt"), "hello\n", 0o644)
}

// gitSteps: git creates processes with fork+exec (run-command.c): after a
// commit for the post-commit hook and for `git maintenance run --auto`;
// for a "!" alias through /bin/sh.
func gitSteps(t *testing.T, _ string) []step {
	id := []string{"-c", "user.name=Forkless Test", "-c", "user.email=test@example.com"}
	return []step{
		{argv: []string{"git", "init", "-q", "-b", "main", "."}},
		{argv: []string{"sh", "-c", "printf '#!/bin/sh\\necho hook-ran > hook.out\\n' > .git/hooks/post-commit && chmod +x .git/hooks/post-commit"}},
		{argv: []string{"git", "add", "f.txt"}},
		{argv: append(append([]string{"git"}, id...), "commit", "-q", "-m", "first"),
			check: func(t *testing.T, tr trace, root int, dir string) {
				forks := tr.filter(func(e event) bool { return e.Event == "fork" && e.PID == root && e.Errno == 0 })
				assert.Len(t, forks, 2, "forks by git commit (hook, maintenance):\n%s", tr)
				hook := tr.execs("post-commit")
				if assert.Len(t, hook, 1, "exec of the hook:\n%s", tr) {
					assert.Equal(t, root, hook[0].PPID)
				}
				maint := tr.execs("git").filter(func(e event) bool { return hasArg(e, "maintenance") })
				if assert.Len(t, maint, 1, "exec of git maintenance:\n%s", tr) {
					assert.Equal(t, root, maint[0].PPID)
				}
				out, err := os.ReadFile(filepath.Join(dir, "hook.out"))
				assert.NoError(t, err, "the hook did not run")
				assert.Equal(t, "hook-ran\n", string(out))
			}},
		{argv: []string{"git", "log", "--format=%H %an %s"},
			want: "d70d962cc1dda90debe9d6c4e2c06ac78b74f275 Forkless Test first\n"},
		{argv: []string{"git", "-c", "alias.shout=!echo alias says", "shout", "hi"},
			check: func(t *testing.T, tr trace, root int, dir string) {
				sh := tr.execs("sh")
				if assert.Len(t, sh, 1, "exec of the alias shell:\n%s", tr) {
					assert.Equal(t, root, sh[0].PPID)
					assert.True(t, slices.ContainsFunc(sh[0].Argv, func(a string) bool { return strings.Contains(a, "echo alias says") }),
						"shell argv %q", sh[0].Argv)
				}
				assert.Len(t, tr.filter(func(e event) bool { return e.Event == "fork" && e.PID == root }), 1, "forks:\n%s", tr)
			}},
	}
}

const perlScript = `
$| = 1;
system("echo", "sys-list") == 0 or die "system list";
system("echo sys-shell | tr a-z A-Z") == 0 or die "system shell";
my $x = ` + "`echo backtick`" + `; print $x;
my $y = ` + "`echo bt-shell | tr a-z A-Z`" + `; print $y;
open(my $fh, "-|", "echo", "pipe-open") or die "open"; print <$fh>; close $fh;
print "exit ", system("sh", "-c", "exit 3") >> 8, "\n";
`

const perlWant = "sys-list\nSYS-SHELL\nbacktick\nBT-SHELL\npipe-open\nexit 3\n"

// checkPerl: perl implements system, backticks and pipe opens itself with
// fork and exec (not libc's system or popen).
func checkPerl(t *testing.T, tr trace, root int, dir string) {
	forks := tr.filter(func(e event) bool { return e.Event == "fork" && e.PID == root && e.Errno == 0 })
	assert.Len(t, forks, 6, "forks by perl:\n%s", tr)
	direct := func(args ...string) {
		x := tr.filter(func(e event) bool {
			return e.Event == "exec" && e.Errno == 0 && e.PPID == root && slices.Equal(e.Argv, args) && !tr.failedLater(e)
		})
		assert.Len(t, x, 1, "exec of %q by a child of perl:\n%s", args, tr)
	}
	direct("echo", "sys-list")
	direct("echo", "backtick")
	direct("echo", "pipe-open")
	direct("sh", "-c", "exit 3")
	direct("sh", "-c", "echo sys-shell | tr a-z A-Z")
	direct("sh", "-c", "echo bt-shell | tr a-z A-Z")
	assert.Len(t, tr.execs("tr"), 2, "tr under the shells:\n%s", tr)
	for _, e := range tr.execs("tr") {
		assert.True(t, tr.descends(e.PID, root), "tr outside perl's tree: %s", e)
	}
}

const pyScript = `
import os, subprocess, sys
r = subprocess.run(["echo", "run-list"], capture_output=True, text=True)
print(r.stdout.strip(), r.returncode)
r = subprocess.run("echo run-shell | tr a-z A-Z; exit 5", shell=True, capture_output=True, text=True)
print(r.stdout.strip(), r.returncode)
print("os.system", os.waitstatus_to_exitcode(os.system("echo os-system > sys.out; exit 3")))
with open("sys.out") as f: print(f.read().strip())
with os.popen("echo os-popen") as f: print(f.read().strip())
p = os.posix_spawn("/bin/echo", ["echo", "posix-spawn"], dict(os.environ), file_actions=[(os.POSIX_SPAWN_OPEN, 1, "ps.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)])
print("posix_spawn", os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]))
with open("ps.out") as f: print(f.read().strip())
`

const pyWant = "run-list 0\nRUN-SHELL 5\nos.system 3\nos-system\nos-popen\nposix_spawn 0\nposix-spawn\n"

// checkPython: Python 3.11's subprocess uses vfork (_posixsubprocess),
// os.popen is subprocess with shell=True, os.system is libc's system,
// os.posix_spawn is libc's posix_spawn.
func checkPython(t *testing.T, tr trace, root int, dir string) {
	vforks := tr.filter(func(e event) bool {
		return e.Event == "spawn" && e.Via == "vfork" && e.PID == root && e.Errno == 0 && !tr.failedLater(e)
	})
	ok := func(what string, match func(e event) bool, in trace) {
		assert.Len(t, in.filter(match), 1, "%s:\n%s", what, tr)
	}
	ok("subprocess.run list: vfork+exec of echo", func(e event) bool {
		return filepath.Base(e.Path) == "echo" && slices.Equal(e.Argv, []string{"echo", "run-list"})
	}, vforks)
	ok("subprocess.run shell: vfork+exec of /bin/sh", func(e event) bool {
		return e.Path == "/bin/sh" && hasArg(e, "echo run-shell | tr a-z A-Z; exit 5")
	}, vforks)
	ok("os.popen: vfork+exec of /bin/sh", func(e event) bool {
		return e.Path == "/bin/sh" && hasArg(e, "echo os-popen")
	}, vforks)
	ok("os.system: a system spawn", func(e event) bool {
		return e.Event == "spawn" && e.Via == "system" && e.PID == root && e.Errno == 0 &&
			hasArg(e, "echo os-system > sys.out; exit 3")
	}, tr)
	ok("os.posix_spawn: a posix_spawn spawn", func(e event) bool {
		return e.Event == "spawn" && e.Via == "posix_spawn" && e.PID == root && e.Errno == 0 &&
			e.Path == "/bin/echo" && slices.Equal(e.Argv, []string{"echo", "posix-spawn"})
	}, tr)
	assert.Len(t, tr.execs("tr"), 1, "tr under the subprocess shell:\n%s", tr)
}

var cases = []progCase{
	{name: "bash", need: []string{"bash", "tr", "rev", "sed", "sort", "wc"},
		steps: func(t *testing.T, _ string) []step {
			return []step{{argv: []string{"bash", "-c", bashScript}, code: 4, want: bashWant, check: checkBash}}
		}},
	{name: "make", need: []string{"make", "gcc"}, setup: setupMake,
		steps: func(t *testing.T, _ string) []step {
			// -j2 may start the jobs in another order: compare sorted lines.
			return []step{{argv: []string{"make", "-j2"}, same: sortedLines, check: checkMake}}
		}},
	{name: "git", need: []string{"git", "sh"}, setup: setupGit, steps: gitSteps},
	{name: "perl", need: []string{"perl", "sh", "tr"},
		steps: func(t *testing.T, _ string) []step {
			return []step{{argv: []string{"perl", "-e", perlScript}, want: perlWant, check: checkPerl}}
		}},
	{name: "python", need: []string{"python3", "sh", "tr"},
		steps: func(t *testing.T, py string) []step {
			return []step{{argv: []string{py, "-c", pyScript}, want: pyWant, check: checkPython}}
		}},
}

func TestRealPrograms(t *testing.T) {
	fl := forkless(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, p := range c.need {
				testbin.Need(t, p, "apt-get install "+p)
			}
			py := ""
			if c.name == "python" {
				py = python(t)
			}
			native, under := twin(t, c), twin(t, c)
			for i, s := range c.steps(t, py) {
				nr := run(t, native, s.argv)
				require.Equal(t, s.code, nr.code, "step %d %q natively:\n%s", i, s.argv, nr)
				trace := filepath.Join(t.TempDir(), fmt.Sprintf("trace-%d.jsonl", i))
				fr := run(t, under, append([]string{fl, "run", "--trace", trace, "--"}, s.argv...))
				require.Equal(t, nr.code, fr.code, "step %d %q under forkless:\n%s", i, s.argv, fr)
				norm := s.same
				if norm == nil {
					norm = func(s string) string { return s }
				}
				assert.Equal(t, norm(nr.stdout), norm(fr.stdout), "step %d %q: stdout differs under forkless", i, s.argv)
				if s.want != "" {
					assert.Equal(t, s.want, nr.stdout, "step %d %q: native stdout", i, s.argv)
				}
				if s.check == nil {
					continue
				}
				tr := readTrace(t, trace)
				root := tr.root(t, fr.pid)
				tr.checkTree(t, root)
				s.check(t, tr, root, under)
			}
		})
	}
}
