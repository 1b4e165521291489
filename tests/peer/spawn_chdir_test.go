package peer

// After glibc's posix/tst-spawn-chdir.c: addchdir_np and addfchdir_np
// change the child's working directory in action order, so relative paths
// of later opens, and a relative program path, are resolved from it;
// chdirs chain; fchdir works on a descriptor an earlier action opened; the
// caller's own directory does not change. Then the failures: ENOENT,
// ENOTDIR and EBADF, reported by the spawn.

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/forkless/forkless/tests/difftest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// chdirDirs is the layout of one iteration: dir/subdir/probe-link links
// to the probe.
type chdirDirs struct {
	dir, subdir, output, marker string
}

func makeChdirDirs(t TB, root, name string) chdirDirs {
	t.Helper()
	d := chdirDirs{dir: filepath.Join(root, name)}
	d.subdir = filepath.Join(d.dir, "subdir")
	d.output = filepath.Join(d.dir, "output-file")
	d.marker = filepath.Join(d.subdir, "probe-file")
	require.NoError(t, os.MkdirAll(d.subdir, 0o777))
	require.NoError(t, os.Symlink(probePath, filepath.Join(d.subdir, "probe-link")))
	return d
}

// addChdir adds a chdir to path: addchdir_np, or with fchdir an addopen
// of the folder at tmpfd, addfchdir_np and addclose.
func addChdir(t TB, fa FileActions, path string, fchdir bool, tmpfd int) {
	t.Helper()
	if !fchdir {
		require.NoError(t, fa.AddChdir(path))
		return
	}
	require.NoError(t, fa.AddOpen(tmpfd, path, unix.O_DIRECTORY|unix.O_RDONLY, 0))
	require.NoError(t, fa.AddFchdir(tmpfd))
	require.NoError(t, fa.AddClose(tmpfd))
}

// readStdoutObservation reads what the probe wrote to its stdout file.
func readStdoutObservation(t TB, path string, pid int) *difftest.Observation {
	t.Helper()
	obs, err := difftest.ReadObservation(path)
	require.NoError(t, err)
	require.Equal(t, pid, obs.PID)
	return obs
}

func TestSpawnChdir(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e Engine) {
		root := realTempDir(t)
		// Relative paths the child resolves in the wrong place land in a
		// scratch folder, not in the source tree.
		t.Chdir(realTempDir(t))
		cwd, err := os.Getwd()
		require.NoError(t, err)
		probeName := filepath.Base(probePath)

		iteration := 0
		for _, spawnp := range []bool{false, true} {
			for _, overwrite := range []bool{false, true} {
				for _, fchdir := range []bool{false, true} {
					if overwrite && fchdir {
						continue // nothing to overwrite
					}
					iteration++
					name := fmt.Sprintf("%d/spawnp=%v/overwrite=%v/fchdir=%v", iteration, spawnp, overwrite, fchdir)
					t.Run(name, func(t *testing.T) {
						d := makeChdirDirs(t, root, fmt.Sprint(iteration))
						_, err := os.Stat(d.marker)
						require.ErrorIs(t, err, os.ErrNotExist)

						fa := newActions(t, e)
						subdir := []byte(d.subdir)
						addChdir(t, fa, string(subdir), fchdir, 4)
						require.NoError(t, fa.AddOpen(3, "probe-file", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o777))
						require.NoError(t, fa.AddClose(3))
						addChdir(t, fa, "..", fchdir, 5)
						require.NoError(t, fa.AddOpen(1, "output-file", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o777))
						if overwrite {
							// The action keeps its own copy of the path.
							for i := range subdir {
								subdir[i] = 0
							}
						}

						path, argv := "subdir/probe-link", []string{"probe-link"}
						if spawnp {
							t.Setenv("PATH", filepath.Dir(probePath))
							path, argv = probeName, []string{probeName}
						}
						// No FORKLESS_PROBE_OUT: the probe writes to stdout.
						c, err := spawnT(t, e, spawnp, path, fa, nil, argv, []string{})
						require.NoError(t, err)
						waitExit(t, c, 0)

						now, err := os.Getwd()
						require.NoError(t, err)
						require.Equal(t, cwd, now, "the caller's directory changed")
						obs := readStdoutObservation(t, d.output, c.Pid)
						require.Equal(t, d.dir, obs.Cwd)
						require.Equal(t, d.output, obsFD(t, obs, 1).Target)
						_, err = os.Stat(d.marker)
						require.NoError(t, err, "the open in subdir did not happen there")
						_, err = os.Stat(filepath.Join(d.dir, "probe-file"))
						require.ErrorIs(t, err, os.ErrNotExist)
					})
				}
			}
		}

		// A relative PATH entry is searched from the child's directory.
		t.Run("spawnp-relative-path-entry", func(t *testing.T) {
			d := makeChdirDirs(t, root, "relative-path")
			t.Setenv("PATH", "subdir")
			fa := newActions(t, e)
			require.NoError(t, fa.AddChdir(d.dir))
			obs, _ := runProbeWith(t, e, fa, nil, probeRun{path: "probe-link", search: true, argv: []string{"probe-link"}})
			require.Equal(t, d.dir, obs.Cwd)
		})

		t.Run("chained", func(t *testing.T) {
			d := makeChdirDirs(t, root, "chained")
			fa := newActions(t, e)
			for _, p := range []string{d.dir, "subdir", "..", "subdir", "."} {
				require.NoError(t, fa.AddChdir(p))
			}
			obs, _ := runProbe(t, e, fa, nil)
			require.Equal(t, d.subdir, obs.Cwd)
		})

		// fchdir to a close-on-exec descriptor of the caller: it is open
		// until the exec.
		t.Run("fchdir-cloexec-parent-fd", func(t *testing.T) {
			d := makeChdirDirs(t, root, "fchdir-parent")
			dfd, err := unix.Open(d.subdir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
			require.NoError(t, err)
			t.Cleanup(func() { unix.Close(dfd) })
			fa := newActions(t, e)
			require.NoError(t, fa.AddFchdir(dfd))
			want := inheritable()
			obs, _ := runProbe(t, e, fa, nil)
			require.Equal(t, d.subdir, obs.Cwd)
			require.Equal(t, want, obsFDs(obs), "the directory descriptor passed the exec")
		})

		file := filepath.Join(root, "a-file")
		require.NoError(t, os.WriteFile(file, nil, 0o600))
		failures := []struct {
			name string
			path string
			add  func(t *testing.T, fa FileActions)
			want unix.Errno
		}{
			{"chdir-missing", probePath, func(t *testing.T, fa FileActions) {
				require.NoError(t, fa.AddChdir(filepath.Join(root, "missing")))
			}, unix.ENOENT},
			{"chdir-file", probePath, func(t *testing.T, fa FileActions) {
				require.NoError(t, fa.AddChdir(file))
			}, unix.ENOTDIR},
			{"chdir-through-file", probePath, func(t *testing.T, fa FileActions) {
				require.NoError(t, fa.AddChdir(file+"/x"))
			}, unix.ENOTDIR},
			{"fchdir-not-open", probePath, func(t *testing.T, fa FileActions) {
				fd := softNoFile(t) - 1
				require.NoError(t, fa.AddFchdir(fd))
			}, unix.EBADF},
			{"fchdir-closed-by-action", probePath, func(t *testing.T, fa FileActions) {
				require.NoError(t, fa.AddOpen(9, root, unix.O_DIRECTORY|unix.O_RDONLY, 0))
				require.NoError(t, fa.AddClose(9))
				require.NoError(t, fa.AddFchdir(9))
			}, unix.EBADF},
			{"fchdir-file", probePath, func(t *testing.T, fa FileActions) {
				require.NoError(t, fa.AddOpen(9, file, unix.O_RDONLY, 0))
				require.NoError(t, fa.AddFchdir(9))
			}, unix.ENOTDIR},
			{"relative-program-after-chdir", "subdir/probe-link", func(t *testing.T, fa FileActions) {
				// subdir/probe-link exists in the folder, not in subdir:
				// the program path is resolved after both chdirs.
				d := makeChdirDirs(t, root, "relative-missing")
				require.NoError(t, fa.AddChdir(d.dir))
				require.NoError(t, fa.AddChdir("subdir"))
			}, unix.ENOENT},
		}
		for _, f := range failures {
			t.Run(f.name, func(t *testing.T) {
				fa := newActions(t, e)
				f.add(t, fa)
				c, err := spawnT(t, e, false, f.path, fa, nil, []string{"x"}, []string{})
				require.Nil(t, c)
				requireErrno(t, f.want, err)
				requireNoChild(t)
			})
		}
	})
}
