package peer

// After glibc's posix/tst-spawn6.c: addtcsetpgrp_np makes the child's
// process group the foreground group of the controlling terminal: the
// group SETPGROUP gives it, or the one it inherits. After SETSID the
// terminal is no longer the child's controlling one and the spawn fails
// with ENOTTY. The helper leads a new session (exec.Cmd with Setsid) and
// makes a pty its controlling terminal.

import (
	"fmt"
	"os"
	"os/signal"
	"testing"

	"github.com/forkless/forkless/spawn"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func init() { helpers["spawn6/tcsetpgrp"] = spawn6Tcsetpgrp }

func TestSpawnTcsetpgrp(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e Engine) {
		runHelper(t, e, "spawn6/tcsetpgrp", helperOpts{setsid: true})
	})
}

// openPty returns a new pty's master and slave; the slave is opened with
// O_NOCTTY and without FD_CLOEXEC. Cleanup closes both.
func openPty(t TB) (master, slave int) {
	t.Helper()
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(master) })
	require.NoError(t, unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(master, unix.TIOCGPTN)
	require.NoError(t, err)
	slave, err = unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(slave) })
	return master, slave
}

func spawn6Tcsetpgrp(h *H, e Engine) {
	me := os.Getpid()
	sid, err := unix.Getsid(0)
	require.NoError(h, err)
	require.Equal(h, me, sid, "the helper must lead its session")
	pgrp := unix.Getpgrp()
	require.Equal(h, me, pgrp)

	// tcfd is the descriptor the actions name; like glibc's test it is
	// inherited unless an action closes it. obsfd, another descriptor of
	// the same terminal, lets the probe report the foreground group.
	_, tcfd := openPty(h)
	require.NoError(h, unix.IoctlSetInt(tcfd, unix.TIOCSCTTY, 0))
	// Closing the master at cleanup hangs the terminal up, which sends
	// SIGHUP to the helper, its controlling process.
	h.Cleanup(func() { signal.Ignore(unix.SIGHUP) })
	obsfd, err := unix.Dup(tcfd)
	require.NoError(h, err)
	h.Cleanup(func() { unix.Close(obsfd) })
	foreground := func() int {
		pg, err := unix.IoctlGetInt(tcfd, unix.TIOCGPGRP)
		require.NoError(h, err)
		return pg
	}
	require.Equal(h, pgrp, foreground())

	spawnProbe := func(flags spawn.Flag, pgroup int, closeTC bool) (fds []int, pid, pgid, tty int) {
		fa := newActions(h, e)
		require.NoError(h, fa.AddTcsetpgrp(tcfd))
		if closeTC {
			require.NoError(h, fa.AddClose(tcfd))
		}
		attr := newAttr(h, e, flags)
		require.NoError(h, attr.SetPgroup(pgroup))
		obs, pid := runProbe(h, e, fa, attr)
		// The foreground group, as the probe saw it through obsfd.
		seen := obsFD(h, obs, obsfd).TTYPgrp
		require.NotNil(h, seen, "obsfd is not a terminal in the child")
		return obsFDs(obs), pid, obs.PGID, *seen
	}

	// SETPGROUP with group 0: a new group led by the child, in front.
	fds, pid, pgid, tty := spawnProbe(spawn.FlagSetPgroup, 0, false)
	require.Equal(h, pid, pgid, "SETPGROUP 0 makes the child a group leader")
	require.Equal(h, pid, tty, "the new group is not the foreground group")
	require.Contains(h, fds, tcfd)
	require.NotEqual(h, pgrp, foreground())

	// No SETPGROUP: the group the child inherited, the helper's, is put
	// back in front.
	_, pid, pgid, tty = spawnProbe(0, 0, false)
	require.Equal(h, pgrp, pgid)
	require.Equal(h, pgrp, tty, "child %d: its own group is not the foreground group", pid)
	require.Equal(h, pgrp, foreground())

	// The terminal descriptor the action used can be closed afterwards.
	fds, pid, pgid, tty = spawnProbe(spawn.FlagSetPgroup, 0, true)
	require.Equal(h, pid, pgid)
	require.Equal(h, pid, tty)
	require.NotContains(h, fds, tcfd, "addclose after addtcsetpgrp")
	require.NotEqual(h, pgrp, foreground())

	// SETPGROUP with an existing group: that group is put in front.
	_, pid, pgid, tty = spawnProbe(spawn.FlagSetPgroup, pgrp, false)
	require.Equal(h, pgrp, pgid, "child %d did not join the helper's group", pid)
	require.Equal(h, pgrp, tty)
	require.Equal(h, pgrp, foreground())

	// failing spawns the probe with tcsetpgrp(fd) and requires errno.
	failing := func(flags spawn.Flag, fd int, want unix.Errno, why string) {
		fa := newActions(h, e)
		require.NoError(h, fa.AddTcsetpgrp(fd))
		attr := newAttr(h, e, flags)
		c, err := spawnT(h, e, false, probePath, fa, attr, []string{"forkless-probe"}, []string{})
		require.Nil(h, c, why)
		requireErrno(h, want, err, why)
		requireNoChild(h)
	}
	// After setsid the child has no controlling terminal.
	failing(spawn.FlagSetSid, tcfd, unix.ENOTTY, "tcsetpgrp after SETSID")
	// Not a terminal at all.
	null, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	require.NoError(h, err)
	h.Cleanup(func() { unix.Close(null) })
	failing(0, null, unix.ENOTTY, "tcsetpgrp on /dev/null")
	// A terminal that is not the controlling one.
	_, other := openPty(h)
	failing(spawn.FlagSetPgroup, other, unix.ENOTTY, "tcsetpgrp on another pty")
	// A descriptor that is not open.
	failing(0, 500, unix.EBADF, "tcsetpgrp on a closed descriptor")
	require.Equal(h, pgrp, foreground(), "a failed spawn changed the foreground group")
}
