package peer

// After glibc's posix/tst-posix_spawn-fd.c: every add function that takes
// a descriptor rejects one that is negative or not below the soft
// RLIMIT_NOFILE with EBADF, and accepts any other, open or not, up to
// limit-1; addfchdir_np alone checks nothing, and the spawn reports EBADF. Then the spawn-time side: descriptors accepted at the bound work
// in the child, and when the limit drops between add and spawn, the child's
// operations on descriptors beyond it fail with EBADF (close included,
// which otherwise ignores descriptors that are not open).

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func init() { helpers["fd/limit-lowered"] = spawnFDLimitLowered }

// fdAdders are the add functions that take a descriptor. All but
// addfchdir_np check it against the limit; glibc's addfchdir_np takes any
// number, and a bad one fails the spawn with EBADF.
var fdAdders = []struct {
	name    string
	checked bool
	add     func(fa FileActions, fd int) error
}{
	{"addopen", true, func(fa FileActions, fd int) error { return fa.AddOpen(fd, "/dev/null", unix.O_RDONLY, 0) }},
	{"adddup2", true, func(fa FileActions, fd int) error { return fa.AddDup2(fd, 1) }},
	{"adddup2-reverse", true, func(fa FileActions, fd int) error { return fa.AddDup2(1, fd) }},
	{"addclose", true, func(fa FileActions, fd int) error { return fa.AddClose(fd) }},
	{"addfchdir", false, func(fa FileActions, fd int) error { return fa.AddFchdir(fd) }},
	{"addclosefrom", true, func(fa FileActions, fd int) error { return fa.AddClosefrom(fd) }},
	{"addtcsetpgrp", true, func(fa FileActions, fd int) error { return fa.AddTcsetpgrp(fd) }},
}

// softNoFile returns the soft RLIMIT_NOFILE as an int.
func softNoFile(t TB) int {
	t.Helper()
	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	require.Less(t, lim.Cur, uint64(math.MaxInt32), "RLIMIT_NOFILE does not fit a C int")
	return int(lim.Cur)
}

func TestSpawnFileActionsFDBounds(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e Engine) {
		maxfd := softNoFile(t)
		unused := unusedFD(t)
		fds := []struct {
			fd int
			ok bool
		}{
			{0, true},
			{unused, true},
			{maxfd - 1, true},
			{-1, false},
			{-2, false},
			{math.MinInt32, false},
			{maxfd, false},
			{maxfd + 1, false},
			{math.MaxInt32, false},
		}
		for _, a := range fdAdders {
			t.Run(a.name, func(t *testing.T) {
				fa := newActions(t, e)
				for _, c := range fds {
					err := a.add(fa, c.fd)
					switch {
					case c.ok:
						require.NoError(t, err, "fd %d (limit %d)", c.fd, maxfd)
					case a.checked:
						requireErrno(t, unix.EBADF, err, "fd %d (limit %d)", c.fd, maxfd)
					default:
						require.NoError(t, err, "fd %d (limit %d): not checked when added", c.fd, maxfd)
						one := newActions(t, e)
						require.NoError(t, a.add(one, c.fd))
						child, err := spawnT(t, e, false, probePath, one, nil, []string{"forkless-probe"}, []string{})
						require.Nil(t, child)
						requireErrno(t, unix.EBADF, err, "spawn with fd %d (limit %d)", c.fd, maxfd)
						requireNoChild(t)
					}
				}
			})
		}
	})
}

// TestSpawnFDAtLimit spawns with actions on limit-1, which add accepted.
func TestSpawnFDAtLimit(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e Engine) {
		top := softNoFile(t) - 1
		_, err := unix.FcntlInt(uintptr(top), unix.F_GETFD, 0)
		require.ErrorIs(t, err, unix.EBADF, "fd %d is open", top)

		t.Run("open", func(t *testing.T) {
			fa := newActions(t, e)
			require.NoError(t, fa.AddOpen(top, "/dev/null", unix.O_RDONLY, 0))
			want := intSet(inheritable(), nil, top)
			obs, _ := runProbe(t, e, fa, nil)
			require.Equal(t, want, obsFDs(obs))
			require.Equal(t, "/dev/null", obsFD(t, obs, top).Target)
		})
		t.Run("dup2", func(t *testing.T) {
			fa := newActions(t, e)
			require.NoError(t, fa.AddDup2(2, top))
			want := intSet(inheritable(), nil, top)
			obs, _ := runProbe(t, e, fa, nil)
			require.Equal(t, want, obsFDs(obs))
		})
		t.Run("close-not-open", func(t *testing.T) {
			fa := newActions(t, e)
			require.NoError(t, fa.AddClose(top))
			require.NoError(t, fa.AddClosefrom(top))
			want := inheritable()
			obs, _ := runProbe(t, e, fa, nil)
			require.Equal(t, want, obsFDs(obs))
		})
	})
}

func TestSpawnFDLimitLoweredAfterAdd(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e Engine) {
		runHelper(t, e, "fd/limit-lowered", helperOpts{})
	})
}

// spawnFDLimitLowered adds actions on descriptors below a limit of 256,
// lowers it to 128, and spawns.
func spawnFDLimitLowered(h *H, e Engine) {
	const high, low = 256, 128
	require.Less(h, highestFD(), low-8, "too many descriptors open to start with")
	cases := []struct {
		name string
		add  func(fa FileActions) error
		want unix.Errno
	}{
		// close ignores a descriptor that is not open only below the limit.
		{"close-below", func(fa FileActions) error { return fa.AddClose(low - 1) }, 0},
		{"close-beyond", func(fa FileActions) error { return fa.AddClose(200) }, unix.EBADF},
		{"dup2-beyond", func(fa FileActions) error { return fa.AddDup2(1, 200) }, unix.EBADF},
		{"open-beyond", func(fa FileActions) error { return fa.AddOpen(200, "/dev/null", unix.O_RDONLY, 0) }, unix.EBADF},
		{"fchdir-beyond", func(fa FileActions) error { return fa.AddFchdir(200) }, unix.EBADF},
		{"tcsetpgrp-beyond", func(fa FileActions) error { return fa.AddTcsetpgrp(200) }, unix.EBADF},
		// close_range over nothing open succeeds.
		{"closefrom-beyond", func(fa FileActions) error { return fa.AddClosefrom(200) }, 0},
	}
	for _, c := range cases {
		setNoFile(h, high)
		fa := newActions(h, e)
		require.NoError(h, c.add(fa), c.name)
		setNoFile(h, low)
		before := fdTable()
		if c.want == 0 {
			want := inheritable()
			obs, _ := runProbe(h, e, fa, nil)
			require.Equal(h, want, obsFDs(obs), c.name)
		} else {
			child, err := spawnT(h, e, false, probePath, fa, nil, []string{"forkless-probe"}, []string{})
			require.Nil(h, child, c.name)
			requireErrno(h, c.want, err, c.name)
			requireNoChild(h)
		}
		require.Equal(h, before, fdTable(), c.name)
	}
}
