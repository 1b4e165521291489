package peer

// After glibc's posix/tst-spawn3.c: with RLIMIT_NOFILE lowered and every
// descriptor below it in use, addopen onto an open descriptor still works,
// because the target is closed before the open; an open that needs a free
// slot fails with EMFILE, and the spawn reports it. Both run in helper
// processes, which own their limit and descriptor table.

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/forkless/forkless/tests/difftest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// spawn3Limit is the soft RLIMIT_NOFILE the helpers run with.
const spawn3Limit = 64

func init() {
	helpers["spawn3/open-closes-target"] = spawn3OpenClosesTarget
	helpers["spawn3/open-emfile"] = spawn3OpenEMFILE
}

func TestSpawnOpenWithFullTable(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e Engine) {
		t.Run("open-closes-target", func(t *testing.T) {
			runHelper(t, e, "spawn3/open-closes-target", helperOpts{})
		})
		t.Run("open-needs-slot", func(t *testing.T) {
			runHelper(t, e, "spawn3/open-emfile", helperOpts{})
		})
	})
}

// setNoFile sets the soft RLIMIT_NOFILE.
func setNoFile(t TB, soft uint64) {
	t.Helper()
	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	require.GreaterOrEqual(t, lim.Max, soft, "hard RLIMIT_NOFILE too low")
	lim.Cur = soft
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &lim))
}

// fillTable opens /dev/null, without FD_CLOEXEC, until open fails with
// EMFILE, and returns the descriptors it opened.
func fillTable(t TB) []int {
	t.Helper()
	var fds []int
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
		if err != nil {
			if !errors.Is(err, unix.EMFILE) {
				closeAll(fds)
				require.ErrorIs(t, err, unix.EMFILE)
			}
			return fds
		}
		fds = append(fds, fd)
	}
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// highestFD returns the highest open descriptor.
func highestFD() int {
	top := -1
	for fd := range fdTable() {
		top = max(top, fd)
	}
	return top
}

// spawn3OpenClosesTarget: "sh -c 'echo $$' > pidfile 2>&1" with a full
// table. The probe, without FORKLESS_PROBE_OUT, writes its observation to
// stdout, which is the file addopen opened.
func spawn3OpenClosesTarget(h *H, e Engine) {
	out := filepath.Join(h.TempDir(), "tst-spawn3.out")
	require.Less(h, highestFD(), spawn3Limit-8, "too many descriptors open to start with")
	setNoFile(h, spawn3Limit)
	base := inheritable()

	filled := fillTable(h)
	require.NotEmpty(h, filled)
	fa := newActions(h, e)
	require.NoError(h, fa.AddOpen(1, out, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o644))
	require.NoError(h, fa.AddDup2(1, 2))
	// Room for what exec and the probe open.
	for _, fd := range filled {
		require.NoError(h, fa.AddClose(fd))
	}
	c, err := spawnT(h, e, false, probePath, fa, nil, []string{"forkless-probe"}, []string{})
	closeAll(filled)
	require.NoError(h, err, "spawn with a full table")
	waitExit(h, c, 0)

	data, err := os.ReadFile(out)
	require.NoError(h, err)
	obs, err := difftest.ParseObservation(data)
	require.NoError(h, err)
	require.Equal(h, c.Pid, obs.PID, "the file holds another process's output")
	require.Equal(h, intSet(base, nil, 1, 2), obsFDs(obs))
	for _, fd := range []int{1, 2} {
		f := obsFD(h, obs, fd)
		require.Equal(h, out, f.Target, "fd %d", fd)
		require.Equal(h, unix.O_WRONLY, f.Flags&unix.O_ACCMODE, "fd %d", fd)
	}
	require.Equal(h, uint64(spawn3Limit), obs.NoFile[0], "the child's soft limit")
}

// spawn3OpenEMFILE: an addopen whose target is not open closes nothing, so
// its open needs a free slot. The target must be below the limit when the
// action is added, so the limit is lowered after that.
func spawn3OpenEMFILE(h *H, e Engine) {
	target := spawn3Limit + 8
	require.Less(h, highestFD(), spawn3Limit-8, "too many descriptors open to start with")
	setNoFile(h, spawn3Limit+16)
	fa := newActions(h, e)
	require.NoError(h, fa.AddOpen(target, "/dev/null", unix.O_RDONLY, 0))
	setNoFile(h, spawn3Limit)

	// With room in the table the open succeeds, and moving the result
	// onto the target, beyond the limit now, fails with EBADF.
	before := fdTable()
	c, err := spawnT(h, e, false, probePath, fa, nil, []string{"forkless-probe"}, []string{})
	require.Nil(h, c)
	requireErrno(h, unix.EBADF, err, "open moved beyond the limit")
	requireNoChild(h)
	require.Equal(h, before, fdTable())

	// With the table full the open itself fails.
	filled := fillTable(h)
	require.NotEmpty(h, filled)
	c, err = spawnT(h, e, false, probePath, fa, nil, []string{"forkless-probe"}, []string{})
	closeAll(filled)
	require.Nil(h, c)
	requireErrno(h, unix.EMFILE, err, "open with a full table")
	requireNoChild(h)
	require.Equal(h, before, fdTable())
}
