// Package mixed runs one process tree that crosses platforms under
// `forkless run`: a dynamically linked program (preload platform) starts a
// static one (ptrace platform), which starts a dynamically linked one (on
// the ptrace platform too: a traced process cannot leave it). One policy
// must hold at every level, and one trace and one process table describe
// the whole tree.
package mixed

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/internal/trace"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	dynProg    = testbin.Program{Dir: "mixedtree", Out: "forkless-mixed-dyn"}
	staticProg = testbin.Program{Dir: "mixedtree", Out: "forkless-mixed-static", Flags: []string{"-static"}}
)

// forkless returns bin/forkless, built with the library by make.
func forkless(t *testing.T) string {
	t.Helper()
	root := testbin.MustRoot(t)
	cmd := exec.Command("make", "bin/forkless", "lib/libforkless.so")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "make:\n%s", out)
	return filepath.Join(root, "bin", "forkless")
}

// deniedProgram is a copy of the tiny static target under a name the
// tests' policy denies.
func deniedProgram(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(testbin.MustBuild(t, testbin.Tiny))
	require.NoError(t, err)
	p := filepath.Join(dir, "denied-true")
	require.NoError(t, os.WriteFile(p, data, 0o755))
	return p
}

func readTrace(t *testing.T, path string) []trace.Event {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	evs, errs := trace.Decode(f)
	require.Empty(t, errs, "the host's trace decodes without errors")
	return evs
}

func TestMixedTreeOnePolicy(t *testing.T) {
	bin := forkless(t)
	dyn := testbin.MustBuild(t, dynProg)
	static := testbin.MustBuild(t, staticProg)
	dir := t.TempDir()
	denied := deniedProgram(t, dir)
	tracePath := filepath.Join(dir, "t.jsonl")
	procsPath := filepath.Join(dir, "procs.json")

	for _, way := range []string{"fork", "spawn", "vfork"} {
		t.Run(way, func(t *testing.T) {
			cmd := exec.Command(bin, "run", "--trace", tracePath, "--procs", procsPath,
				"--fds", "strict", "--exec-deny", "denied-*", "--",
				dyn, "A", denied, way, static, "B", denied, "spawn", dyn, "C", denied)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			require.NoError(t, err, "stderr:\n%s", stderr.String())
			assert.Equal(t, "A fds=0,1,2\nA deny=EACCES\n"+
				"B fds=0,1,2\nB deny=EACCES\n"+
				"C fds=0,1,2\nC deny=EACCES\n"+
				"B child=0\nA child=0\n", string(out),
				"no level sees descriptor 5 (strict), every level is denied the program; stderr:\n%s", stderr.String())

			evs := readTrace(t, tracePath)
			var denials = map[string]int{}
			for _, e := range evs {
				if e.Policy == trace.PolicyExecDeny {
					require.Equal(t, int(syscall.EACCES), e.Errno, "%+v", e)
					platform := e.Platform
					if platform == "" {
						platform = trace.PlatformPreload
					}
					denials[platform]++
				}
			}
			assert.Positive(t, denials[trace.PlatformPreload], "A's denial is traced by the library")
			assert.Positive(t, denials[trace.PlatformPtrace], "B's and C's denials are traced by the host")
			checkProcs(t, procsPath, dyn, static)
		})
	}
}

// checkProcs checks the process table: A on the preload platform, B and C
// on ptrace, every process ended with a known status.
func checkProcs(t *testing.T, path, dyn, static string) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var table struct {
		Processes []struct {
			PID      int      `json:"pid"`
			Platform string   `json:"platform"`
			Path     string   `json:"path"`
			Argv     []string `json:"argv"`
			Status   *int     `json:"status"`
		} `json:"processes"`
	}
	require.NoError(t, json.Unmarshal(data, &table), "%s", data)
	labels := map[string]string{}
	for _, p := range table.Processes {
		if len(p.Argv) >= 2 && (p.Path == dyn || p.Path == static) {
			labels[p.Argv[1]] = p.Platform
			if assert.NotNil(t, p.Status, "pid %d %v ended with a known status", p.PID, p.Argv) {
				assert.Equal(t, 0, *p.Status, "pid %d %v", p.PID, p.Argv)
			}
		}
	}
	assert.Equal(t, map[string]string{"A": "preload", "B": "ptrace", "C": "ptrace"}, labels, "%s", data)
}

// TestKillingTheHostKillsTheTree starts a tree with processes on both
// platforms, some of them in the background, kills forkless with SIGKILL
// and checks that none of them survives.
func TestKillingTheHostKillsTheTree(t *testing.T) {
	bin := forkless(t)
	static := testbin.MustBuild(t, staticProg)
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	// sh (preload) starts sleep (preload) in the background and a static
	// program (ptrace) that starts another sleep under it.
	script := `sleep 300 & echo $! >> "$1"; ` +
		`"$2" S /nonexistent spawn /bin/sh -c 'echo $$ >> "$0"; exec sleep 300' "$1" & echo $! >> "$1"; ` +
		`echo $$ >> "$1"; wait`
	cmd := exec.Command(bin, "run", "--", "/bin/sh", "-c", script, "sh", pids, static)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	var list []int
	require.Eventually(t, func() bool {
		data, _ := os.ReadFile(pids)
		list = list[:0]
		for _, f := range strings.Fields(string(data)) {
			n, _ := strconv.Atoi(f)
			list = append(list, n)
		}
		return len(list) == 4
	}, 20*time.Second, 20*time.Millisecond, "the tree writes four pids")
	require.NoError(t, cmd.Process.Kill())
	cmd.Wait()
	require.Eventually(t, func() bool {
		for _, pid := range list {
			if testbin.Alive(pid) {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "every process of the tree ends: %v", list)
}
