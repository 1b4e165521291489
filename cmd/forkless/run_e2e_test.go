package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/internal/trace"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// realLibrary returns lib/libforkless.so, or skips the test when it has
// not been built.
func realLibrary(t *testing.T) string {
	t.Helper()
	root, err := testbin.Root()
	require.NoError(t, err)
	lib := filepath.Join(root, "lib", "libforkless.so")
	if _, err := os.Stat(lib); err != nil {
		t.Skipf("lib/libforkless.so is not built (run `make` in %s): %v", root, err)
	}
	return lib
}

// TestRunWithLibrary runs a shell under the real library and checks the
// trace it records: it decodes cleanly and shows the shell starting
// /bin/true, whichever mechanism the shell used.
func TestRunWithLibrary(t *testing.T) {
	lib := realLibrary(t)
	tf := filepath.Join(t.TempDir(), "t.jsonl")
	status, stdout, stderr := run(t, "--lib", lib, "--trace", tf, "--summary", "--",
		"sh", "-c", "/bin/true; echo hi; exit 3")
	assert.Equal(t, 3, status, stderr)
	assert.Equal(t, "hi\n", stdout)
	assert.Contains(t, stderr, "forkless run: summary\n")
	assert.Contains(t, stderr, "processes created: 1\n")
	assert.NotContains(t, stderr, "line ", "no decode errors")

	f, err := os.Open(tf)
	require.NoError(t, err)
	defer f.Close()
	evs, errs := trace.Decode(f)
	require.Empty(t, errs)
	require.NotEmpty(t, evs)

	var ran []string
	var walk func(n *trace.Node)
	walk = func(n *trace.Node) {
		if len(n.Programs) > 0 {
			ran = append(ran, n.Programs[len(n.Programs)-1].Path)
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	roots := trace.Tree(evs)
	require.Len(t, roots, 1, "one root: the shell")
	for _, r := range roots {
		walk(r)
	}
	assert.Equal(t, []string{"/bin/true"}, ran)

	status, _, stderr = traceCmd(t, "", tf)
	assert.Equal(t, exitOK, status, stderr)
}
