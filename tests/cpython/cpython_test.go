// Package cpython runs CPython's own test_subprocess and test_posix
// natively and with lib/libforkless.so preloaded, and requires the same
// result from both. It takes about a minute, so it runs only when
// FORKLESS_CPYTHON=1:
//
//	FORKLESS_CPYTHON=1 go test -count=1 -v ./tests/cpython/
package cpython

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The test modules run, in this order.
var modules = []string{"test_subprocess", "test_posix"}

// runLimit only stops a hung run; no result depends on it.
const runLimit = 20 * time.Minute

// interpreter returns the real python3 (pyenv's python3 is a bash shim,
// which would put bash between the library and the interpreter).
func interpreter(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	require.NoError(t, err, "python3 -c 'import sys; print(sys.executable)'")
	py := strings.TrimSpace(string(out))
	require.NotEmpty(t, py)
	if err := exec.Command(py, "-c", "import test.support").Run(); err != nil {
		t.Skipf("%s has no test package (import test.support: %v)", py, err)
	}
	return py
}

func environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "LD_PRELOAD" || strings.HasPrefix(name, "FORKLESS_") || name == "TMPDIR" ||
			strings.HasPrefix(name, "PYTHON") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// outcome is what the test run reports.
type outcome struct {
	result  string            // "SUCCESS", "FAILURE", ...: the "Result:" line
	run     int               // tests run ("Total tests: run=N" or "N tests OK")
	skipped int               // tests skipped
	failed  int               // failures plus errors, from "failures=N"
	cases   map[string]string // per test case (from -v): ok, skipped, FAIL, ERROR, ...
	exit    int
	output  string
	took    time.Duration
}

var (
	resultRE  = regexp.MustCompile(`(?m)^(?:== Tests result|Result): ([A-Z_, ]+?)(?: ==)?$`)
	totalRE   = regexp.MustCompile(`(?m)^Total tests: (.*)$`)
	kvRE      = regexp.MustCompile(`(\w+)=(\d+)`)
	testsOKRE = regexp.MustCompile(`(?m)^(?:Ran )?(\d+) tests? (?:OK|in)`)
	caseRE    = regexp.MustCompile(`^(test\w*) \(([\w.]+)\)(?: \.\.\. (.*))?$`)
)

func parse(t *testing.T, out string) outcome {
	t.Helper()
	o := outcome{output: out, cases: map[string]string{}}
	m := resultRE.FindAllStringSubmatch(out, -1)
	require.NotEmpty(t, m, "no \"Tests result\"/\"Result\" line in the output:\n%s", tail(out, 60))
	o.result = strings.TrimSpace(m[len(m)-1][1])
	if tm := totalRE.FindAllStringSubmatch(out, -1); tm != nil {
		for _, kv := range kvRE.FindAllStringSubmatch(tm[len(tm)-1][1], -1) {
			n, _ := strconv.Atoi(kv[2])
			switch kv[1] {
			case "run":
				o.run = n
			case "skipped":
				o.skipped = n
			case "failures":
				o.failed += n
			}
		}
	} else if tm := testsOKRE.FindAllStringSubmatch(out, -1); tm != nil {
		o.run, _ = strconv.Atoi(tm[len(tm)-1][1])
	}
	require.Positive(t, o.run, "no count of tests run in the output:\n%s", tail(out, 60))
	// With -v, unittest writes "test_x (module.Class.test_x) ... ok" for
	// each case. A test's own output can split that line; such cases are
	// simply not recorded (this map only explains differences).
	// A case with a docstring has its first line on the next line,
	// followed by " ... status".
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<16), 1<<22)
	pending := ""
	record := func(name, rest string) {
		if f := strings.Fields(rest); len(f) > 0 {
			o.cases[name] = f[0]
		}
	}
	for sc.Scan() {
		line := sc.Text()
		if c := caseRE.FindStringSubmatch(line); c != nil {
			pending = ""
			if c[3] != "" {
				record(c[2], c[3])
			} else {
				pending = c[2]
			}
			continue
		}
		if _, rest, ok := strings.Cut(line, " ... "); ok && pending != "" {
			record(pending, rest)
		}
		pending = ""
	}
	return o
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func runTests(t *testing.T, py string, extra ...string) outcome {
	t.Helper()
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	require.NoError(t, os.Mkdir(tmp, 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), runLimit)
	defer cancel()
	args := append([]string{"-m", "test", "-v"}, modules...)
	cmd := exec.CommandContext(ctx, py, args...)
	cmd.Dir = dir
	cmd.Env = environ(append([]string{"TMPDIR=" + tmp}, extra...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	require.NoError(t, ctx.Err(), "python -m test did not finish within %v:\n%s", runLimit, tail(out.String(), 60))
	o := parse(t, out.String())
	o.took = took
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		o.exit = ee.Sys().(syscall.WaitStatus).ExitStatus()
	} else {
		require.NoError(t, err)
	}
	return o
}

// diffCases lists the test cases whose status differs.
func diffCases(a, b map[string]string) string {
	var lines []string
	for k, v := range a {
		if w, ok := b[k]; ok && w != v {
			lines = append(lines, fmt.Sprintf("%s: native %s, forkless %s", k, v, w))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// failures extracts the FAIL:/ERROR: sections of a run's output.
func failures(out string) string {
	var b strings.Builder
	keep := false
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "FAIL: ") || strings.HasPrefix(l, "ERROR: ") {
			keep = true
		} else if strings.HasPrefix(l, "Ran ") || strings.HasPrefix(l, "== Tests result") {
			keep = false
		}
		if keep {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func TestSubprocessAndPosix(t *testing.T) {
	if os.Getenv("FORKLESS_CPYTHON") != "1" {
		t.Skip("slow (about a minute): set FORKLESS_CPYTHON=1 to run CPython's test_subprocess and test_posix")
	}
	lib := testbin.Preload(t)
	py := interpreter(t)

	// The library must actually be in effect for this interpreter.
	trace := filepath.Join(t.TempDir(), "trace.jsonl")
	probe := exec.Command(py, "-c", "import os; os.system('exit 0')")
	probe.Env = environ("LD_PRELOAD="+lib, "FORKLESS_TRACE="+trace)
	out, err := probe.CombinedOutput()
	require.NoError(t, err, "%s", out)
	data, err := os.ReadFile(trace)
	require.NoError(t, err, "the library wrote no trace: is it loaded into %s?", py)
	require.Contains(t, string(data), `"via":"system"`, "the library did not see os.system")

	native := runTests(t, py)
	t.Logf("native: %s, run=%d skipped=%d failed=%d (%d cases parsed), %v", native.result, native.run, native.skipped,
		native.failed, len(native.cases), native.took.Round(time.Second))
	require.Equal(t, "SUCCESS", native.result, "the native run must pass for the comparison to mean anything:\n%s",
		failures(native.output))

	pre := runTests(t, py, "LD_PRELOAD="+lib)
	t.Logf("forkless: %s, run=%d skipped=%d failed=%d (%d cases parsed), %v", pre.result, pre.run, pre.skipped,
		pre.failed, len(pre.cases), pre.took.Round(time.Second))
	assert.Equal(t, native.result, pre.result, "result under the library; failures:\n%s\ncases that differ:\n%s",
		failures(pre.output), diffCases(native.cases, pre.cases))
	assert.Equal(t, native.exit, pre.exit, "exit status under the library")
	assert.Equal(t, native.run, pre.run, "tests run")
	assert.Equal(t, native.skipped, pre.skipped, "tests skipped")
	assert.Equal(t, native.failed, pre.failed, "tests failed")
	assert.Empty(t, diffCases(native.cases, pre.cases), "test cases whose status differs")
	assert.NotEmpty(t, native.cases, "no per-case lines parsed from -v output")
}

// TestParse checks the summary parser on both summary formats of
// regrtest (3.11's "Total tests: run=N" and the older "N tests OK").
func TestParse(t *testing.T) {
	out := `0:00:00 load avg: 1.0 [1/2] test_subprocess
test_a (test.test_subprocess.ProcessTestCase.test_a) ... ok
test_b (test.test_subprocess.ProcessTestCase.test_b)
Docstring of b. ... skipped 'not as root'
test_c (test.test_subprocess.ProcessTestCase.test_c) ... FAIL

== Tests result: FAILURE ==

1 test failed:
    test_subprocess

Total duration: 1.0 sec
Total tests: run=3 failures=1 skipped=1
Total test files: run=2/2 failed=1
Result: FAILURE
`
	o := parse(t, out)
	assert.Equal(t, "FAILURE", o.result)
	assert.Equal(t, 3, o.run)
	assert.Equal(t, 1, o.skipped)
	assert.Equal(t, 1, o.failed)
	assert.Equal(t, map[string]string{
		"test.test_subprocess.ProcessTestCase.test_a": "ok",
		"test.test_subprocess.ProcessTestCase.test_b": "skipped",
		"test.test_subprocess.ProcessTestCase.test_c": "FAIL",
	}, o.cases)

	old := parse(t, "== Tests result: SUCCESS ==\n\n490 tests OK.\n")
	assert.Equal(t, "SUCCESS", old.result)
	assert.Equal(t, 490, old.run)

	assert.Equal(t, "x: native ok, forkless FAIL", diffCases(map[string]string{"x": "ok", "y": "ok"},
		map[string]string{"x": "FAIL", "y": "ok"}))
}
