package peer

// After glibc's posix/tst-spawn2.c: spawning a program that does not exist
// fails with ENOENT, for posix_spawn and posix_spawnp alike, and leaves no
// child (wait4(-1) gives ECHILD), no stored pid and no descriptor behind.

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// requireNoChild requires that this process has no child at all.
func requireNoChild(t TB) {
	t.Helper()
	var ws unix.WaitStatus
	pid, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WALL, nil)
	require.ErrorIs(t, err, unix.ECHILD, "wait4(-1) found pid %d", pid)
}

func TestSpawnMissingBinary(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e Engine) {
		const missing = "/path/to/invalid/binary"
		cases := []struct {
			name   string
			search bool
			file   string
			argv   []string
		}{
			{"spawn", false, missing, []string{}},
			{"spawnp-with-slash", true, missing, []string{missing}},
			{"spawnp-not-on-path", true, "forkless-peer-no-such-program", []string{"x"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Setenv("PATH", realTempDir(t)) // an empty folder
				before := fdTable()
				c, err := spawnT(t, e, tc.search, tc.file, nil, nil, tc.argv, os.Environ())
				require.Nil(t, c)
				requireErrno(t, unix.ENOENT, err)
				requireNoChild(t)
				require.Equal(t, before, fdTable(), "descriptors left by the failed spawn")
			})
		}

		// The failure comes after the file actions ran in the child: their
		// effects on the file system stay, the child does not.
		t.Run("after-actions", func(t *testing.T) {
			dir := realTempDir(t)
			made := filepath.Join(dir, "made-by-child")
			fa := newActions(t, e)
			require.NoError(t, fa.AddOpen(7, made, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600))
			require.NoError(t, fa.AddDup2(7, 8))
			before := fdTable()
			c, err := spawnT(t, e, false, missing, fa, nil, []string{missing}, []string{})
			require.Nil(t, c)
			requireErrno(t, unix.ENOENT, err)
			requireNoChild(t)
			require.Equal(t, before, fdTable(), "descriptors left by the failed spawn")
			_, err = os.Stat(made)
			require.NoError(t, err, "the open action did not run before exec")
		})
	})
}
