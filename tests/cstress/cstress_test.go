// Package cstress runs the multithreaded process-creation stress
// (c/stress.c) natively and under lib/libforkless.so. Its main thread
// creates processes with posix_spawn, posix_spawnp, system, popen,
// fork+exec and vfork+exec while churn threads open, duplicate and close
// descriptors (close-on-exec ones recognisable by name) and popen threads
// run popen/pclose; every child is a static program (c/report.c) that
// lists its descriptors, and the stress program checks each list. The
// test reads the stress program's summary line.
package cstress

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	creations = flag.Int("creations", 10000, "processes the stress creates per run (at least)")
	traced    = flag.Int("traced-creations", 2000, "processes of the run with FORKLESS_TRACE")
)

// runLimit only stops a hung run; no result depends on it.
const runLimit = 15 * time.Minute

func gcc(t *testing.T, out string, args ...string) {
	t.Helper()
	src, err := os.Getwd()
	require.NoError(t, err)
	all := append([]string{"-O2", "-Wall", "-Wextra", "-Werror", "-o", out}, args...)
	for i, a := range all {
		if strings.HasSuffix(a, ".c") {
			all[i] = filepath.Join(src, "c", a)
		}
	}
	msg, err := exec.Command("gcc", all...).CombinedOutput()
	require.NoError(t, err, "gcc %s:\n%s", strings.Join(all, " "), msg)
}

// summary is the stress program's last line, key=value counts.
type summary map[string]int

func parseSummary(t *testing.T, stdout string) summary {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	last := lines[len(lines)-1]
	require.True(t, strings.HasPrefix(last, "cstress: "), "no summary line in stdout:\n%s", stdout)
	s := summary{}
	for _, f := range strings.Fields(strings.TrimPrefix(last, "cstress: ")) {
		k, v, ok := strings.Cut(f, "=")
		require.True(t, ok, "summary field %q", f)
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "summary field %q", f)
		s[k] = n
	}
	for _, k := range []string{"creations", "main", "popen_threads", "churn_rounds", "failures", "cloexec_leaks",
		"popen_leaks", "inherited_pipes", "parent_fds_before", "parent_fds_after", "unreaped"} {
		require.Contains(t, s, k, "summary: %s", last)
	}
	return s
}

type result struct {
	code   int
	stdout string
	stderr string
	sum    summary
	took   time.Duration
}

// stress runs the stress program with n creations. stdout and stderr are
// files, not pipes, so the children's standard descriptors are plain.
func stress(t *testing.T, bin, report string, n int, extra ...string) result {
	t.Helper()
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	require.NoError(t, os.Mkdir(work, 0o755))
	outf, err := os.Create(filepath.Join(dir, "stdout"))
	require.NoError(t, err)
	defer outf.Close()
	errf, err := os.Create(filepath.Join(dir, "stderr"))
	require.NoError(t, err)
	defer errf.Close()

	ctx, cancel := context.WithTimeout(context.Background(), runLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-r", report, "-n", strconv.Itoa(n), "-d", work)
	cmd.Dir = work
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LD_PRELOAD=") && !strings.HasPrefix(kv, "FORKLESS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, extra...)
	cmd.Stdout, cmd.Stderr = outf, errf
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	stdout, _ := os.ReadFile(outf.Name())
	stderr, _ := os.ReadFile(errf.Name())
	require.NoError(t, ctx.Err(), "the stress did not finish within %v; stderr:\n%s", runLimit, stderr)
	r := result{stdout: string(stdout), stderr: string(stderr), took: took}
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
		require.NoError(t, err)
	}
	require.GreaterOrEqual(t, r.code, 0, "the stress was killed; stderr:\n%s", r.stderr)
	r.sum = parseSummary(t, r.stdout)
	t.Logf("%d creations (%d by the main thread, %d by popen threads, %d churn rounds) in %v: %s",
		r.sum["creations"], r.sum["main"], r.sum["popen_threads"], r.sum["churn_rounds"],
		took.Round(time.Millisecond), strings.TrimSpace(r.stdout))
	return r
}

// checkCommon holds for glibc and for the library alike.
func checkCommon(t *testing.T, r result, n int) {
	t.Helper()
	s := r.sum
	assert.GreaterOrEqual(t, s["creations"], n, "creations")
	assert.GreaterOrEqual(t, s["main"], 7, "the main thread must have used every method")
	assert.Positive(t, s["popen_threads"], "the popen threads made no process")
	assert.Positive(t, s["churn_rounds"], "the churn threads did nothing")
	assert.Zero(t, s["failures"], "failures; stderr:\n%s", r.stderr)
	assert.Zero(t, s["cloexec_leaks"], "close-on-exec descriptors in exec'd children; stderr:\n%s", r.stderr)
	assert.Equal(t, s["parent_fds_before"], s["parent_fds_after"], "descriptors leaked in the parent")
	assert.Zero(t, s["unreaped"], "children left unreaped")
}

// exitMatches: the program's status says whether it found problems.
func exitMatches(t *testing.T, r result) {
	t.Helper()
	s := r.sum
	bad := s["failures"]+s["cloexec_leaks"]+s["popen_leaks"]+s["unreaped"] > 0 ||
		s["parent_fds_before"] != s["parent_fds_after"]
	if bad {
		assert.Equal(t, 1, r.code, "exit status with problems reported")
	} else {
		assert.Equal(t, 0, r.code, "exit status without problems; stderr:\n%s", r.stderr)
	}
}

func build(t *testing.T) (bin, report string) {
	t.Helper()
	dir := t.TempDir()
	bin, report = filepath.Join(dir, "stress"), filepath.Join(dir, "report")
	gcc(t, report, "-static", "report.c")
	gcc(t, bin, "-pthread", "stress.c")
	return bin, report
}

// TestNative shows the stress is a valid test: glibc's posix_spawn,
// system, popen, fork and vfork pass it, except for glibc's own popen
// race (below), which is logged.
func TestNative(t *testing.T) {
	bin, report := build(t)
	r := stress(t, bin, report, *creations)
	checkCommon(t, r, *creations)
	exitMatches(t, r)
	// glibc 2.36's pclose unlinks the stream from proc_file_chain under
	// proc_file_chain_lock but closes its descriptor only after unlocking;
	// a popen in another thread in that window neither closes it in its
	// child (not in the chain) nor has it closed by exec (popen without
	// "e" clears FD_CLOEXEC). So glibc leaks a stream being pclosed into
	// a concurrent popen child now and then.
	if n := r.sum["popen_leaks"]; n > 0 {
		t.Logf("glibc leaked %d popen streams being pclosed into concurrent popen children (its pclose race):\n%s",
			n, r.stderr)
	}
}

// TestPreload runs the same stress with the library: everything must be
// zero, popen leaks included.
func TestPreload(t *testing.T) {
	lib := testbin.Preload(t)
	bin, report := build(t)
	r := stress(t, bin, report, *creations, "LD_PRELOAD="+lib)
	checkCommon(t, r, *creations)
	assert.Zero(t, r.sum["popen_leaks"], "popen streams of other popen calls in popen children; stderr:\n%s", r.stderr)
	exitMatches(t, r)
}

// traceEvent is the part of a trace line this test reads.
type traceEvent struct {
	V     int    `json:"v"`
	PID   int    `json:"pid"`
	Event string `json:"event"`
	Via   string `json:"via"`
	Errno int    `json:"errno"`
	Child int    `json:"child"`
	Path  string `json:"path"`
	FDs   []struct {
		FD     int    `json:"fd"`
		Target string `json:"target"`
	} `json:"fds"`
}

// TestPreloadTraced runs a shorter stress with FORKLESS_TRACE: the trace
// must record the processes the stress made, by each entry point, and no
// descriptor list in it may hold a close-on-exec descriptor.
func TestPreloadTraced(t *testing.T) {
	lib := testbin.Preload(t)
	bin, report := build(t)
	trace := filepath.Join(t.TempDir(), "trace.jsonl")
	r := stress(t, bin, report, *traced, "LD_PRELOAD="+lib, "FORKLESS_TRACE="+trace)
	checkCommon(t, r, *traced)
	assert.Zero(t, r.sum["popen_leaks"], "popen leaks; stderr:\n%s", r.stderr)

	data, err := os.ReadFile(trace)
	require.NoError(t, err)
	byVia := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var e traceEvent
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), "trace line %d: %s", n, sc.Bytes())
		require.Equal(t, 1, e.V, "trace line %d", n)
		byVia[e.Event+"/"+e.Via]++
		if e.Event != "exec" {
			assert.Zero(t, e.Errno, "trace line %d: %s", n, sc.Bytes())
		}
		for _, f := range e.FDs {
			assert.NotContains(t, f.Target, "cstress-cloexec", "trace line %d lists a close-on-exec file", n)
			assert.NotContains(t, []string{"anon_inode:[eventfd]", "anon_inode:[eventpoll]"}, f.Target,
				"trace line %d lists a close-on-exec descriptor", n)
		}
	}
	require.NoError(t, sc.Err())
	t.Logf("trace events by event/via: %v", byVia)
	// The main thread cycles through 7 methods; the popen threads add
	// popen calls. The shells of system and popen run the report
	// without the library's help (dash execs it, or vforks: either way
	// the counts below are lower bounds of what the stress did itself).
	perMethod := r.sum["main"] / 7
	assert.GreaterOrEqual(t, byVia["spawn/posix_spawn"], perMethod, "posix_spawn events")
	assert.GreaterOrEqual(t, byVia["spawn/posix_spawnp"], perMethod, "posix_spawnp events")
	assert.GreaterOrEqual(t, byVia["spawn/system"], perMethod, "system events")
	assert.GreaterOrEqual(t, byVia["spawn/popen"], 2*perMethod+r.sum["popen_threads"], "popen events")
	assert.GreaterOrEqual(t, byVia["fork/fork"], perMethod, "fork events")
	assert.GreaterOrEqual(t, byVia["exec/exec"], perMethod, "exec events (fork children)")
	vfork := 0
	for k, v := range byVia {
		if strings.HasSuffix(k, "/vfork") {
			vfork += v
		}
	}
	assert.GreaterOrEqual(t, vfork, perMethod, "vfork events")
}
