package spawn

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestChildStateLayout(t *testing.T) {
	// The assembly hard-codes these offsets.
	var st childState
	assert.EqualValues(t, 0, unsafe.Offsetof(st.ops))
	assert.EqualValues(t, 8, unsafe.Offsetof(st.nops))
	assert.EqualValues(t, 16, unsafe.Offsetof(st.errno))
	assert.EqualValues(t, 24, unsafe.Offsetof(st.step))
	assert.EqualValues(t, 32, unsafe.Offsetof(st.r))
	assert.EqualValues(t, 40, unsafe.Offsetof(st.eacces))
	assert.EqualValues(t, 48, unsafe.Offsetof(st.lasterr))
	assert.EqualValues(t, 56, unsafe.Offsetof(st.blockall))
	assert.EqualValues(t, 64, unsafe.Offsetof(st.oldmask))
	var o op
	assert.EqualValues(t, 80, unsafe.Sizeof(o))
	assert.EqualValues(t, 16, unsafe.Offsetof(o.a))
	assert.EqualValues(t, 64, unsafe.Offsetof(o.ctl))
	assert.EqualValues(t, 72, unsafe.Offsetof(o.step))
	assert.EqualValues(t, 88, unsafe.Sizeof(cloneArgs{}))
}

// openFDs lists this process's descriptors.
func openFDs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// noChildren asserts that no child is left to reap: no zombie.
func noChildren(t *testing.T) {
	t.Helper()
	var ws unix.WaitStatus
	pid, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WALL, nil)
	assert.Equal(t, unix.ECHILD, err, "a child is left over (pid %d)", pid)
}

// withBothClones runs f with clone3 and with the forced clone fallback.
func withBothClones(t *testing.T, f func(t *testing.T)) {
	t.Run("clone3", func(t *testing.T) { f(t) })
	t.Run("clone", func(t *testing.T) {
		old := noClone3.Load()
		noClone3.Store(true)
		defer noClone3.Store(old)
		f(t)
	})
}

func runT(t *testing.T, path string, fa *FileActions, attr *Attr, argv ...string) *State {
	t.Helper()
	p, err := Spawn(path, fa, attr, argv, nil)
	require.NoError(t, err)
	st, err := p.Wait()
	require.NoError(t, err)
	return st
}

func TestSpawnExitStatus(t *testing.T) {
	withBothClones(t, func(t *testing.T) {
		assert.True(t, runT(t, "/bin/true", nil, nil, "true").Success())
		st := runT(t, "/bin/sh", nil, nil, "sh", "-c", "exit 7")
		assert.Equal(t, 7, st.ExitCode())
		st = runT(t, "/bin/sh", nil, nil, "sh", "-c", "kill -TERM $$")
		assert.True(t, st.Signaled())
		assert.Equal(t, unix.SIGTERM, st.Signal())
		assert.Equal(t, -1, st.ExitCode())
		assert.Equal(t, "signal: terminated", st.String())
	})
}

func TestSpawnErrorsLeaveNothing(t *testing.T) {
	withBothClones(t, func(t *testing.T) {
		before := openFDs(t)
		_, err := Spawn("/nonexistent", nil, nil, []string{"x"}, nil)
		var se *Error
		require.ErrorAs(t, err, &se)
		assert.Equal(t, unix.ENOENT, se.Errno)
		assert.Equal(t, "exec", se.Step)
		assert.Equal(t, "spawn /nonexistent: exec: ENOENT (no such file or directory)", err.Error())

		var fa FileActions
		require.NoError(t, fa.AddClose(5))
		require.NoError(t, fa.AddOpen(1, "/nonexistent/dir/file", unix.O_RDONLY, 0))
		_, err = Spawn("/bin/true", &fa, nil, []string{"true"}, nil)
		require.ErrorAs(t, err, &se)
		assert.Equal(t, "file action 1 (open /nonexistent/dir/file)", se.Step)
		assert.ErrorIs(t, err, unix.ENOENT)

		dir := t.TempDir()
		_, err = Spawn(dir, nil, nil, []string{"x"}, nil)
		assert.ErrorIs(t, err, unix.EACCES)

		assert.Equal(t, before, openFDs(t))
		noChildren(t)
	})
}

func TestSpawnBadArguments(t *testing.T) {
	_, err := Spawn("/bin/true", nil, nil, []string{"a\x00b"}, nil)
	assert.ErrorIs(t, err, unix.EINVAL)
	_, err = Spawn("/bin/true", nil, nil, []string{"true"}, []string{"A=\x00"})
	assert.ErrorIs(t, err, unix.EINVAL)
	_, err = Spawn("/bin/tr\x00ue", nil, nil, []string{"true"}, nil)
	assert.ErrorIs(t, err, unix.EINVAL)
	// Larger than the kernel takes: E2BIG from execve, reported cleanly.
	huge := strings.Repeat("x", 200<<10)
	_, err = Spawn("/bin/true", nil, nil, []string{"true", huge}, nil)
	assert.ErrorIs(t, err, unix.E2BIG)
	many := make([]string, 0, 300000)
	for i := 0; i < cap(many); i++ {
		many = append(many, "yy")
	}
	_, err = Spawn("/bin/true", nil, nil, many, nil)
	assert.ErrorIs(t, err, unix.E2BIG)
	noChildren(t)
}

func TestFileActionValidation(t *testing.T) {
	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	big := int(lim.Cur)
	var fa FileActions
	assert.Equal(t, unix.EBADF, fa.AddClose(-1))
	assert.Equal(t, unix.EBADF, fa.AddClose(big))
	assert.Equal(t, unix.EBADF, fa.AddDup2(-1, 1))
	assert.Equal(t, unix.EBADF, fa.AddDup2(1, big))
	assert.Equal(t, unix.EBADF, fa.AddOpen(-1, "/x", 0, 0))
	assert.NoError(t, fa.AddFchdir(big)) // glibc checks fchdir's fd only at spawn time
	fa.Reset()
	assert.Equal(t, unix.EBADF, fa.AddClosefrom(-1))
	assert.Equal(t, unix.EBADF, fa.AddTcsetpgrp(-1))
	assert.Equal(t, 0, fa.Len())
	assert.NoError(t, fa.AddClose(big-1))
	assert.Equal(t, 1, fa.Len())
	fa.Reset()
	assert.Equal(t, 0, fa.Len())
}

func TestAttrValidation(t *testing.T) {
	var a Attr
	assert.Equal(t, unix.EINVAL, a.SetFlags(0x200))
	assert.NoError(t, a.SetFlags(FlagSetSid|FlagUseVfork|FlagSetCgroup))
	assert.Equal(t, FlagSetSid|FlagUseVfork|FlagSetCgroup, a.Flags())
	assert.Equal(t, unix.EINVAL, a.SetSchedPolicy(3)) // SCHED_BATCH
	assert.Equal(t, unix.EINVAL, a.SetSchedPolicy(5)) // SCHED_IDLE
	assert.NoError(t, a.SetSchedPolicy(2))
	assert.Equal(t, unix.EBADF, a.SetCgroup(-1))
	// SETCGROUP without a cgroup is an error at spawn time.
	_, err := Spawn("/bin/true", nil, &a, []string{"true"}, nil)
	assert.ErrorIs(t, err, unix.EINVAL)
	s := NewSignalSet(unix.SIGINT, unix.SIGTERM, unix.Signal(64), unix.Signal(65))
	assert.True(t, s.Has(unix.SIGINT))
	assert.True(t, s.Has(unix.Signal(64)))
	assert.False(t, s.Has(unix.SIGHUP))
	assert.False(t, s.Has(unix.Signal(65)))
}

func TestSpawnPSearch(t *testing.T) {
	dir := t.TempDir()
	noexec := filepath.Join(dir, "noexec")
	require.NoError(t, os.MkdirAll(noexec, 0o755))
	// A file that is not executable: EACCES is remembered, search goes on.
	require.NoError(t, os.WriteFile(filepath.Join(noexec, "prog"), []byte("#!/bin/sh\nexit 3\n"), 0o644))
	good := filepath.Join(dir, "good")
	require.NoError(t, os.MkdirAll(good, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(good, "prog"), []byte("#!/bin/sh\nexit 4\n"), 0o755))
	// A regular file used as a directory: ENOTDIR, skipped.
	notdir := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(notdir, nil, 0o644))
	// No #! and not ELF: ENOEXEC stops the search.
	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.MkdirAll(bad, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bad, "prog"), []byte("exit 5\n"), 0o755))

	spawnp := func(path string) (*State, error) {
		t.Setenv("PATH", path)
		p, err := SpawnP("prog", nil, nil, []string{"prog"}, []string{"PATH=/nowhere"})
		if err != nil {
			return nil, err
		}
		return p.Wait()
	}
	st, err := spawnp(notdir + ":" + noexec + ":" + good)
	require.NoError(t, err)
	assert.Equal(t, 4, st.ExitCode(), "ENOTDIR and EACCES entries are skipped")
	_, err = spawnp(notdir + ":" + noexec + ":/nonexistent")
	assert.ErrorIs(t, err, unix.EACCES, "EACCES is remembered")
	_, err = spawnp("/nonexistent:" + notdir)
	assert.ErrorIs(t, err, unix.ENOTDIR, "the last skip error is returned")
	_, err = spawnp(bad + ":" + good)
	assert.ErrorIs(t, err, unix.ENOEXEC, "ENOEXEC ends the search, no shell")
	// An empty entry is the working directory.
	t.Chdir(good)
	st, err = spawnp("/nonexistent::/bin")
	require.NoError(t, err)
	assert.Equal(t, 4, st.ExitCode())
	// A PATH longer than PATH_MAX: the over-long entry is skipped.
	st, err = spawnp(good + ":" + strings.Repeat("/x", 2100))
	require.NoError(t, err)
	assert.Equal(t, 4, st.ExitCode())
	_, err = SpawnP("", nil, nil, []string{""}, nil)
	assert.ErrorIs(t, err, unix.ENOENT)
	_, err = SpawnP(strings.Repeat("p", 256), nil, nil, []string{"p"}, nil)
	assert.ErrorIs(t, err, unix.ENAMETOOLONG)
	noChildren(t)
}

func TestSpawnPDefaultPath(t *testing.T) {
	t.Setenv("PATH", "")
	require.NoError(t, os.Unsetenv("PATH"))
	p, err := SpawnP("true", nil, nil, []string{"true"}, nil)
	require.NoError(t, err, "PATH unset: /bin:/usr/bin")
	st, err := p.Wait()
	require.NoError(t, err)
	assert.True(t, st.Success())
}

func TestProcessHandle(t *testing.T) {
	p, err := Spawn("/bin/sleep", nil, nil, []string{"sleep", "60"}, nil)
	require.NoError(t, err)
	assert.Greater(t, p.Pid(), 0)
	assert.GreaterOrEqual(t, p.PidFD(), 0)
	require.NoError(t, p.Signal(unix.SIGKILL))
	st, err := p.Wait()
	require.NoError(t, err)
	assert.True(t, st.Signaled())
	assert.Equal(t, unix.SIGKILL, st.Signal())
	assert.Equal(t, -1, p.PidFD(), "the pidfd is closed after Wait")
	_, err = p.Wait()
	assert.ErrorIs(t, err, ErrWaited)
	assert.ErrorIs(t, p.Signal(unix.SIGTERM), ErrFinished)
	require.NoError(t, p.Release())
	assert.ErrorIs(t, p.Release(), ErrReleased)
	_, err = p.Wait()
	assert.ErrorIs(t, err, ErrReleased)

	// Release without Wait closes the pidfd; the zombie is then the
	// caller's to reap by pid.
	before := openFDs(t)
	p, err = Spawn("/bin/true", nil, nil, []string{"true"}, nil)
	require.NoError(t, err)
	require.NoError(t, p.Release())
	assert.Equal(t, before, openFDs(t))
	var ws unix.WaitStatus
	_, err = unix.Wait4(p.Pid(), &ws, 0, nil)
	require.NoError(t, err)
	noChildren(t)
}

func TestErrorFormatting(t *testing.T) {
	e := &Error{Path: "/x", Step: "file action 2 (open /y)", Errno: unix.EACCES}
	assert.Equal(t, "spawn /x: file action 2 (open /y): EACCES (permission denied)", e.Error())
	assert.True(t, errors.Is(e, unix.EACCES))
	assert.Contains(t, (&Error{Path: "/x", Step: "exec", Errno: unix.Errno(4000)}).Error(), "errno 4000")
}

func TestStatusOf(t *testing.T) {
	mk := func(code, status int32) *unix.Siginfo {
		var info unix.Siginfo
		info.Signo = int32(unix.SIGCHLD)
		info.Code = code
		*(*int32)(unsafe.Pointer(uintptr(unsafe.Pointer(&info)) + 24)) = status
		return &info
	}
	ws := statusOf(mk(cldExited, 3))
	assert.True(t, ws.Exited())
	assert.Equal(t, 3, ws.ExitStatus())
	ws = statusOf(mk(cldKilled, int32(unix.SIGTERM)))
	assert.True(t, ws.Signaled())
	assert.Equal(t, unix.SIGTERM, ws.Signal())
	assert.False(t, ws.CoreDump())
	ws = statusOf(mk(cldDumped, int32(unix.SIGSEGV)))
	assert.True(t, ws.Signaled())
	assert.Equal(t, unix.SIGSEGV, ws.Signal())
	assert.True(t, ws.CoreDump())
}

// TestSpawnAllocations guards the arena: a spawn allocates a handful of
// objects, not one per string or action.
func TestSpawnAllocations(t *testing.T) {
	var fa FileActions
	require.NoError(t, fa.AddOpen(0, "/dev/null", unix.O_RDONLY, 0))
	require.NoError(t, fa.AddDup2(2, 1))
	require.NoError(t, fa.AddClosefrom(3))
	env := []string{"A=1", "B=2", "C=3", "D=4"}
	n := testing.AllocsPerRun(50, func() {
		p, err := Spawn("/bin/true", &fa, nil, []string{"true", "a", "b", "c"}, env)
		require.NoError(t, err)
		_, err = p.Wait()
		require.NoError(t, err)
	})
	t.Logf("%.0f allocations per spawn and wait", n)
	assert.LessOrEqual(t, n, 12.0)
}
