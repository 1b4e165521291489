package glibc

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/forkless/forkless/internal/trace"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func gcc(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("gcc", args...).CombinedOutput()
	require.NoError(t, err, "gcc %s:\n%s", strings.Join(args, " "), out)
}

func csrc(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(root(t), "tests", "glibc", "c", name)
}

// staticArgs are gcc's flags to compile and link a static program against
// build b's headers and libc.a (kernel headers from the system).
func staticArgs(t *testing.T, b build) []string {
	t.Helper()
	gccInc, err := exec.Command("gcc", "-print-file-name=include").Output()
	require.NoError(t, err)
	return []string{"-static", "-nostdinc", "-isystem", filepath.Join(b.usr, "include"),
		"-isystem", strings.TrimSpace(string(gccInc)),
		"-idirafter", "/usr/include/x86_64-linux-gnu", "-idirafter", "/usr/include",
		"-B" + filepath.Join(b.usr, "lib64") + "/", "-L" + filepath.Join(b.usr, "lib64")}
}

// staticLibforkless is lib/libforkless.a and the flag that pulls it in.
func staticLibforkless(t *testing.T) []string {
	t.Helper()
	a := filepath.Join(root(t), "lib", "libforkless.a")
	require.FileExists(t, a, "make glibc builds lib/libforkless.a")
	return []string{"-Wl,-u,__forkless_spawn_hook_v1", a}
}

// hookedRun is one run of tests/glibc/c/hooked.c under forkless run.
type hookedRun struct {
	pid, daemonCaller, forkptyCaller int
	events                           []trace.Event
	exit                             int
	out                              string
}

// runHooked runs prog (hooked.c) with forkless run and extra flags, traced.
func runHooked(t *testing.T, prog string, flags ...string) hookedRun {
	t.Helper()
	return runHookedEnv(t, prog, nil, flags...)
}

func runHookedEnv(t *testing.T, prog string, env []string, flags ...string) hookedRun {
	t.Helper()
	dir := t.TempDir()
	tr := filepath.Join(dir, "trace.jsonl")
	args := append(append([]string{"run", "--trace", tr}, flags...), "--", prog, dir)
	cmd := exec.Command(forklessBin(t), args...)
	cmd.Env = cleanEnv(env...)
	out, err := cmd.CombinedOutput()
	r := hookedRun{out: string(out)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.exit = ee.ExitCode()
		return r
	}
	require.NoError(t, err)
	require.Contains(t, r.out, "\nok\n", "hooked did not finish:\n%s", out)
	for _, l := range strings.Split(r.out, "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		require.NoError(t, err, l)
		switch k {
		case "pid":
			r.pid = n
		case "daemon_caller":
			r.daemonCaller = n
		case "forkpty_caller":
			r.forkptyCaller = n
		}
	}
	require.Positive(t, r.pid)
	f, err := os.Open(tr)
	require.NoError(t, err)
	defer f.Close()
	evs, errs := trace.Decode(f)
	require.Empty(t, errs, "trace lines that do not decode")
	for _, e := range evs {
		require.NoError(t, e.Validate(), "trace line %+v", e)
	}
	r.events = evs
	return r
}

// count counts the events of process pid with event kind and via.
func (r hookedRun) count(pid int, kind, via string) int {
	n := 0
	for _, e := range r.events {
		if e.PID == pid && e.Event == kind && e.Via == via && e.Errno == 0 {
			n++
		}
	}
	return n
}

func (r hookedRun) spawnPath(pid int, via string) string {
	for _, e := range r.events {
		if e.PID == pid && e.Event == trace.EventSpawn && e.Via == via {
			return e.Path
		}
	}
	return ""
}

// checkAllHooked: every entry point hooked.c uses is in the trace, those
// only a patched glibc reports included.
func checkAllHooked(t *testing.T, r hookedRun) {
	t.Helper()
	for _, via := range []string{trace.ViaSystem, trace.ViaPopen, trace.ViaWordexp} {
		assert.Equal(t, 1, r.count(r.pid, trace.EventSpawn, via), "spawns via %s", via)
		assert.Equal(t, "/bin/sh", r.spawnPath(r.pid, via), "program of the %s spawn", via)
	}
	assert.Equal(t, 1, r.count(r.pid, trace.EventSpawn, trace.ViaPosixSpawnp), "posix_spawnp")
	assert.Equal(t, 1, r.count(r.pid, trace.EventSpawn, trace.ViaVfork), "vfork + exec")
	assert.Equal(t, 3, r.count(r.pid, trace.EventFork, trace.ViaFork), "forks of the main process")
	assert.Equal(t, 1, r.count(r.daemonCaller, trace.EventFork, trace.ViaFork), "daemon()'s fork")
	assert.Equal(t, 1, r.count(r.forkptyCaller, trace.EventFork, trace.ViaFork), "forkpty()'s fork")
}

// TestHooksDynamic: on a patched libc with libforkless.so preloaded
// (forkless run --glibc), system, popen and wordexp are traced with their
// via, and daemon and forkpty as forks. On the system libc the same
// program shows neither wordexp nor the forks inside daemon and forkpty:
// the hooks are what reports them.
func TestHooksDynamic(t *testing.T) {
	vs := versions(t)
	prog := filepath.Join(t.TempDir(), "hooked")
	gcc(t, "-O2", "-Wall", "-Wextra", "-Werror", "-o", prog, csrc(t, "hooked.c"), "-lutil")

	sys := runHooked(t, prog)
	require.Zero(t, sys.exit, "%s", sys.out)
	assert.Zero(t, sys.count(sys.pid, trace.EventSpawn, trace.ViaWordexp), "wordexp seen on the system libc")
	assert.Zero(t, sys.count(sys.daemonCaller, trace.EventFork, trace.ViaFork), "daemon's fork seen on the system libc")
	assert.Zero(t, sys.count(sys.forkptyCaller, trace.EventFork, trace.ViaFork), "forkpty's fork seen on the system libc")

	for _, v := range vs {
		t.Run(v, func(t *testing.T) {
			b := getBuild(t, v)
			r := runHooked(t, prog, "--glibc", b.dir)
			require.Zero(t, r.exit, "%s", r.out)
			checkAllHooked(t, r)
		})
	}
}

func hasHooksSection(t *testing.T, path string) bool {
	t.Helper()
	f, err := elf.Open(path)
	require.NoError(t, err)
	defer f.Close()
	return f.Section(".forkless.hooks") != nil
}

// TestHooksStatic: a static program linked with the patched libc.a and
// lib/libforkless.a creates every process through forkless (in the
// trace, without LD_PRELOAD or any tracer), and forkless run recognises
// it and lets it report itself; the same program linked without
// lib/libforkless.a runs on the ptrace platform instead.
func TestHooksStatic(t *testing.T) {
	forEach(t, func(t *testing.T, b build) {
		dir := t.TempDir()
		hooked := filepath.Join(dir, "hooked-static")
		args := append(staticArgs(t, b), "-O2", "-Wall", "-Wextra", "-Werror", "-o", hooked, csrc(t, "hooked.c"))
		gcc(t, append(args, staticLibforkless(t)...)...)
		plain := filepath.Join(dir, "plain-static")
		gcc(t, append(staticArgs(t, b), "-O2", "-o", plain, csrc(t, "hooked.c"))...)

		require.True(t, hasHooksSection(t, hooked), "lib/libforkless.a's mark in the linked program")
		require.False(t, hasHooksSection(t, plain))
		for _, p := range []string{hooked, plain} {
			f, err := elf.Open(p)
			require.NoError(t, err)
			for _, ph := range f.Progs {
				require.NotEqual(t, elf.PT_INTERP, ph.Type, "%s is not static", p)
			}
			f.Close()
		}

		r := runHooked(t, hooked)
		require.Zero(t, r.exit, "forkless run refused or failed:\n%s", r.out)
		checkAllHooked(t, r)

		// The vfork event above comes from lazy vfork through the vfork
		// hook: with glibc's real vfork the static program's exec is
		// not traced at all (no exec interposer in a static program).
		real := runHookedEnv(t, hooked, []string{"FORKLESS_VFORK=real"})
		require.Zero(t, real.exit, "%s", real.out)
		assert.Zero(t, real.count(real.pid, trace.EventSpawn, trace.ViaVfork), "vfork with FORKLESS_VFORK=real")
		assert.Equal(t, 1, real.count(real.pid, trace.EventSpawn, trace.ViaWordexp), "wordexp with FORKLESS_VFORK=real")

		for _, e := range r.events {
			if e.PID == r.pid {
				assert.NotEqual(t, trace.PlatformPtrace, e.Platform, "the hooked program is not traced: %+v", e)
			}
		}
		traced := runHooked(t, plain)
		require.Zero(t, traced.exit, "a static program without the hooks runs on the ptrace platform:\n%s", traced.out)
		fromHost := 0
		for _, e := range traced.events {
			if e.PID == traced.pid && e.Platform == trace.PlatformPtrace {
				fromHost++
			}
		}
		assert.Positive(t, fromHost, "the host traces the program without the hooks")

		// Without forkless run the program works the same (no trace).
		cmd := exec.Command(hooked, dir)
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), "\nok\n")
	})
}

// TestRaceStress runs tests/cstress's stress with the library (TestPreload
// and TestPreloadTraced) on each patched libc with its hooks active: gcc
// is wrapped so the stress program is linked with the build's loader.
func TestRaceStress(t *testing.T) {
	forEach(t, func(t *testing.T, b build) {
		real, err := exec.LookPath("gcc")
		require.NoError(t, err)
		wrap := t.TempDir()
		log := filepath.Join(wrap, "gcc.log")
		script := fmt.Sprintf(`#!/bin/sh
# gcc for tests/cstress: dynamic programs get the patched loader and libc.
for a in "$@"; do [ "$a" = -static ] && exec %s "$@"; done
echo "$@" >> %s
exec %s "$@" -Wl,--dynamic-linker=%s -Wl,-rpath=%s
`, real, log, real, b.ldso, b.libdir)
		require.NoError(t, os.WriteFile(filepath.Join(wrap, "gcc"), []byte(script), 0o755))
		cmd := exec.Command("go", "test", "-count=1", "-v", "-run", "^(TestPreload|TestPreloadTraced)$", "./tests/cstress/")
		cmd.Dir = root(t)
		cmd.Env = append(cleanEnv(), "PATH="+wrap+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		t.Logf("%s", lastLines(string(out), 12))
		require.NoError(t, err, "the race stress on glibc %s:\n%s", b.version, out)
		assert.Contains(t, string(out), "--- PASS: TestPreload ")
		assert.Contains(t, string(out), "--- PASS: TestPreloadTraced ")
		logged, err := os.ReadFile(log)
		require.NoError(t, err, "the wrapped gcc was not used")
		assert.Contains(t, string(logged), "stress.c", "the stress program was linked with the patched loader")
	})
}
