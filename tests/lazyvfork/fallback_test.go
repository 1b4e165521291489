package lazyvfork

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/internal/trace"
	"github.com/stretchr/testify/require"
)

// TestTraceCountsFallbacks: the trace (read with the project's own strict
// decoder) records vfork+exec as one spawn, and each real child lazy
// vfork had to make with its reason.
func TestTraceCountsFallbacks(t *testing.T) {
	root := testbin.MustRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "fallback")
	out, err := exec.Command("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", bin,
		filepath.Join(root, "tests", "lazyvfork", "c", "fallback.c")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	tr := filepath.Join(dir, "trace.jsonl")
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "LD_PRELOAD="+testbin.Preload(t), "FORKLESS_TRACE="+tr)
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "status 3\nstatus 5\nstatus 0\n", string(out))

	f, err := os.Open(tr)
	require.NoError(t, err)
	defer f.Close()
	evs, errs := trace.Decode(f)
	require.Empty(t, errs)
	s := trace.Summarize(evs)
	require.Equal(t, map[string]int{"getpid": 1, "exit": 1, "kill": 1}, s.Fallbacks)
	require.Equal(t, 4, s.Created["vfork"])
	var spawns int
	for _, e := range evs {
		if e.Event == trace.EventSpawn && e.Fallback == "" {
			spawns++
			require.Equal(t, "/bin/true", e.Path)
		}
	}
	require.Equal(t, 1, spawns, "the plain vfork+exec is one spawn without a real child")
}
