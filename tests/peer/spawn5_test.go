package peer

// After glibc's posix/tst-spawn5.c: addclosefrom_np(N) leaves the child
// exactly the inherited descriptors below N, with a contiguous block of
// descriptors, with gaps punched into it, and combined with later open
// and dup2 actions.

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// openRange opens n descriptors of /dev/null without FD_CLOEXEC at
// low..low+n-1, above every open descriptor, and returns low and the set
// of those still open, which cleanup closes.
func openRange(t TB, n int) (int, map[int]bool) {
	t.Helper()
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(null)
	low := highestFD() + 1
	open := map[int]bool{}
	t.Cleanup(func() {
		for fd := range open {
			unix.Close(fd)
		}
	})
	for i := range n {
		// F_DUPFD never replaces a descriptor, and clears FD_CLOEXEC.
		fd, err := unix.FcntlInt(uintptr(null), unix.F_DUPFD, low+i)
		require.NoError(t, err)
		open[fd] = true
		require.Equal(t, low+i, fd, "the range is not free")
	}
	return low, open
}

func TestSpawnClosefrom(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e Engine) {
		const nfds = 100
		low, open := openRange(t, nfds)
		half := low + nfds/2

		// check spawns the probe with closefrom(from) followed by more
		// actions and requires it to have exactly the descriptors it
		// inherits below from, plus extra.
		check := func(t *testing.T, from int, more func(fa FileActions), extra ...int) {
			t.Helper()
			fa := newActions(t, e)
			require.NoError(t, fa.AddClosefrom(from))
			if more != nil {
				more(fa)
			}
			want := fdsBelow(inheritable(), from, extra...)
			obs, _ := runProbe(t, e, fa, nil)
			require.Equal(t, want, obsFDs(obs))
		}

		t.Run("half", func(t *testing.T) { check(t, half, nil) })
		t.Run("half-with-gaps", func(t *testing.T) {
			for _, off := range []int{57, 78, 81, 82, 84, 90} {
				require.NoError(t, unix.Close(low+off))
				delete(open, low+off)
			}
			check(t, half, nil)
		})
		t.Run("from-a-gap", func(t *testing.T) { check(t, low+57, nil) })
		t.Run("all-but-first", func(t *testing.T) { check(t, low+1, nil) })
		t.Run("all", func(t *testing.T) { check(t, low, nil) })
		t.Run("above-all", func(t *testing.T) { check(t, low+nfds+10, nil) })
		t.Run("then-open-dup2", func(t *testing.T) {
			check(t, low+1, func(fa FileActions) {
				require.NoError(t, fa.AddOpen(low, "/dev/null", unix.O_RDONLY, 0o666))
				require.NoError(t, fa.AddDup2(low, low+1))
				require.NoError(t, fa.AddOpen(low, "/dev/null", unix.O_RDONLY, 0o666))
			}, low, low+1)
		})
		t.Run("then-open-beyond", func(t *testing.T) {
			// An open after closefrom lands above the closed range.
			fa := newActions(t, e)
			require.NoError(t, fa.AddClosefrom(low))
			require.NoError(t, fa.AddOpen(low+nfds+5, "/dev/null", unix.O_WRONLY, 0))
			want := fdsBelow(inheritable(), low, low+nfds+5)
			obs, _ := runProbe(t, e, fa, nil)
			require.Equal(t, want, obsFDs(obs))
			f := obsFD(t, obs, low+nfds+5)
			require.Equal(t, "/dev/null", f.Target)
			require.Equal(t, unix.O_WRONLY, f.Flags&unix.O_ACCMODE)
		})
	})
}
