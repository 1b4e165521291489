package peer

// After glibc's posix/tst-spawn4.c and tst-spawn4-compat.c: an executable
// file that is neither ELF nor starts with "#!" fails with ENOEXEC from
// posix_spawn and posix_spawnp. Only glibc's GLIBC_2.2.5 compat symbols run
// it with /bin/sh; forkless has no compat mode and must report ENOEXEC.

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/forkless/forkless/internal/glibc"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// writeScript writes an executable file without "#!".
func writeScript(t TB, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	require.NoError(t, os.Chmod(path, 0o775))
	return path
}

// requireENOEXEC spawns file and requires ENOEXEC and no child.
func requireENOEXEC(t *testing.T, e Engine, search bool, file string, argv []string) {
	t.Helper()
	c, err := spawnT(t, e, search, file, nil, nil, argv, []string{})
	require.Nil(t, c)
	requireErrno(t, unix.ENOEXEC, err)
	requireNoChild(t)
}

func TestSpawnENOEXEC(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e Engine) {
		dir := realTempDir(t)
		script := writeScript(t, dir, "tst-spawn4", "echo it should not happen\nexit 65\n")
		t.Run("spawn", func(t *testing.T) { requireENOEXEC(t, e, false, script, []string{}) })
		t.Run("spawnp-with-slash", func(t *testing.T) { requireENOEXEC(t, e, true, script, []string{}) })
		t.Run("spawnp-found-on-path", func(t *testing.T) {
			// ENOEXEC ends the search: the later folder's probe is not run.
			bin := filepath.Join(dir, "bin")
			require.NoError(t, os.Mkdir(bin, 0o755))
			require.NoError(t, os.Symlink(probePath, filepath.Join(bin, "tst-spawn4")))
			t.Setenv("PATH", dir+":"+bin)
			requireENOEXEC(t, e, true, "tst-spawn4", []string{"tst-spawn4"})
		})
	})
}

func TestSpawnENOEXECCompat(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e Engine) {
		dir := realTempDir(t)
		script := writeScript(t, dir, "tst-spawn4-compat", "exit 65\n")
		ce, ok := e.(compatEngine)
		if !ok {
			// No compat entry point: the same calls must fail.
			requireENOEXEC(t, e, false, script, []string{})
			requireENOEXEC(t, e, true, script, []string{})
			return
		}
		if !glibc.Has("posix_spawn@GLIBC_2.2.5") || !glibc.Has("posix_spawnp@GLIBC_2.2.5") {
			t.Skip("this glibc has no GLIBC_2.2.5 posix_spawn")
		}
		for _, search := range []bool{false, true} {
			c, err := ce.SpawnCompat(script, nil, nil, []string{}, []string{}, search)
			require.NoError(t, err, "compat spawn (search %v)", search)
			t.Cleanup(c.reap)
			waitExit(t, c, 65)
		}
		// The shell gets the file as $0 and argv[1:] as its arguments.
		check := writeScript(t, dir, "args", `test "$0" = "$F" && test "$#" = 2 && test "$1" = a && test "$2" = "b c" && exit 66; exit 1`+"\n")
		c, err := ce.SpawnCompat(check, nil, nil, []string{"ignored", "a", "b c"}, []string{"F=" + check}, false)
		require.NoError(t, err)
		t.Cleanup(c.reap)
		waitExit(t, c, 66)
	})
}
