package glibc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestABIHeaderCopies: every version's series adds a byte-identical copy
// of preload/forkless_hook.h to glibc (patch 0001), and every series
// lists the same patches. Needs no build.
func TestABIHeaderCopies(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(root(t), "preload", "forkless_hook.h"))
	require.NoError(t, err)
	series, err := filepath.Glob(filepath.Join(root(t), "glibcpatch", "*", "series"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(series), 2, "series files")
	var first string
	for _, s := range series {
		list, err := os.ReadFile(s)
		require.NoError(t, err)
		if first == "" {
			first = string(list)
		}
		assert.Equal(t, first, string(list), "%s lists other patches", s)
		patch, err := os.ReadFile(filepath.Join(filepath.Dir(s), "0001-forkless-hook-abi.patch"))
		require.NoError(t, err)
		var b strings.Builder
		in := false
		for _, l := range strings.SplitAfter(string(patch), "\n") {
			switch {
			case strings.HasPrefix(l, "+++ b/include/forkless_hook.h"):
				in = true
			case in && strings.HasPrefix(l, "@@"):
			case in && strings.HasPrefix(l, "+"):
				b.WriteString(l[1:])
			case in && l != "":
				in = false
			}
		}
		assert.Equal(t, string(want), b.String(), "%s: include/forkless_hook.h differs from preload/forkless_hook.h", filepath.Dir(s))
	}
}
