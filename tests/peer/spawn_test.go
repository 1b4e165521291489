package peer

// After glibc's posix/tst-spawn.c: addclose, addopen and adddup2 shape the
// child's descriptor table; descriptors pass with their open file
// descriptions, so offsets are shared with the parent in both directions;
// the path given to addopen belongs to the caller again once the call
// returns; one FileActions serves several spawns.

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"
	"github.com/forkless/forkless/tests/difftest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const (
	spawnText1 = "This file should get closed"
	spawnText2 = "This file should stay opened"
	spawnText3 = "This file will be opened"
)

// openInherited creates path with content, open read-write and without
// FD_CLOEXEC so that children inherit it; it is closed at cleanup.
func openInherited(t TB, path, content string) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	n, err := unix.Write(fd, []byte(content))
	require.NoError(t, err)
	require.Equal(t, len(content), n)
	return fd
}

// unusedFD returns the lowest descriptor number not open right now.
func unusedFD(t TB) int {
	t.Helper()
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	require.NoError(t, unix.Close(fd))
	return fd
}

func offset(t TB, fd int) int64 {
	t.Helper()
	off, err := unix.Seek(fd, 0, 1) // SEEK_CUR
	require.NoError(t, err)
	return off
}

func TestSpawnFileActions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e Engine) {
		dir := realTempDir(t)
		name1 := filepath.Join(dir, "spawn1")
		name2 := filepath.Join(dir, "spawn2")
		name3 := filepath.Join(dir, "spawn3")
		fd1 := openInherited(t, name1, spawnText1)
		fd2 := openInherited(t, name2, spawnText2)
		require.NoError(t, os.WriteFile(name3, []byte(spawnText3), 0o600))
		fd3 := unusedFD(t) // the child opens name3 here
		fd4 := max(2, fd1, fd2, fd3) + 1

		// The parent moves the offset of fd2 after writing: the child must
		// see the parent's offset on fd2 and on its duplicate fd4.
		const seekTo = 7
		_, err := unix.Seek(fd2, seekTo, 0)
		require.NoError(t, err)

		fa := newActions(t, e)
		require.NoError(t, fa.AddClose(fd1))
		// Built from a buffer that is overwritten right after the call:
		// the action must not depend on the caller's memory. (For glibc,
		// the adapter passes a temporary C copy; TestSpawnGlibcAddOpenCopies
		// overwrites the very buffer glibc was given.)
		path3 := []byte(name3)
		require.NoError(t, fa.AddOpen(fd3, string(path3), unix.O_RDONLY, 0o666))
		for i := range path3 {
			path3[i] = 'X'
		}
		require.NoError(t, fa.AddDup2(fd2, fd4))

		// Two spawns with the same actions see the same thing.
		for round := range 2 {
			want := intSet(inheritable(), []int{fd1}, fd3, fd4)
			obs, _ := runProbe(t, e, fa, nil)
			require.Equal(t, want, obsFDs(obs), "round %d: the child's descriptors", round)

			f2 := obsFD(t, obs, fd2)
			require.Equal(t, name2, f2.Target)
			require.Equal(t, int64(seekTo), f2.Pos, "round %d: offset of fd2", round)
			require.Equal(t, unix.O_RDWR, f2.Flags&unix.O_ACCMODE)
			require.False(t, f2.CloExec)

			f4 := obsFD(t, obs, fd4)
			require.Equal(t, name2, f4.Target, "fd4 duplicates fd2")
			require.Equal(t, int64(seekTo), f4.Pos, "round %d: offset of fd4", round)
			require.Equal(t, f2.Flags, f4.Flags)
			require.False(t, f4.CloExec)

			f3 := obsFD(t, obs, fd3)
			require.Equal(t, name3, f3.Target, "addopen used the path as it was when added")
			require.Equal(t, int64(0), f3.Pos)
			require.Equal(t, unix.O_RDONLY, f3.Flags&unix.O_ACCMODE, "fd3 is read-only: writes fail with EBADF")

			// The parent's own table is untouched: fd1 is still open and
			// the child's reads left the offset alone.
			_, err := unix.FcntlInt(uintptr(fd1), unix.F_GETFD, 0)
			require.NoError(t, err, "addclose closed fd1 in the parent")
			require.Equal(t, int64(seekTo), offset(t, fd2))
		}

		// The other direction: a child writing through its copy of fd2
		// moves the parent's offset.
		fa2 := newActions(t, e)
		require.NoError(t, fa2.AddDup2(fd2, 1))
		c, err := spawnT(t, e, false, "/bin/sh", fa2, nil, []string{"sh", "-c", "printf XYZ"}, []string{})
		require.NoError(t, err)
		waitExit(t, c, 0)
		require.Equal(t, int64(seekTo+3), offset(t, fd2), "the child's write did not move the shared offset")
		data, err := os.ReadFile(name2)
		require.NoError(t, err)
		require.Equal(t, spawnText2[:seekTo]+"XYZ"+spawnText2[seekTo+3:], string(data))
	})
}

// libcCall calls a C function; pointer arguments stay alive and unmoved
// until it returns.
//
//go:uintptrescapes
func libcCall(fn uintptr, args ...uintptr) uintptr {
	r, _, _ := purego.SyscallN(fn, args...)
	return r
}

// TestSpawnGlibcAddOpenCopies is tst-spawn's overwrite check done on the
// oracle itself: internal/glibc takes Go strings, so here libc is called
// directly with a buffer the test owns and overwrites after
// posix_spawn_file_actions_addopen returns. forkless needs no such test:
// its AddOpen takes an immutable Go string.
func TestSpawnGlibcAddOpenCopies(t *testing.T) {
	checkClean(t)
	lib, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW|purego.RTLD_GLOBAL)
	require.NoError(t, err)
	sym := func(name string) uintptr {
		p, err := purego.Dlsym(lib, name)
		require.NoError(t, err, name)
		return p
	}
	faInit := sym("posix_spawn_file_actions_init")
	faAddOpen := sym("posix_spawn_file_actions_addopen")
	faDestroy := sym("posix_spawn_file_actions_destroy")
	posixSpawn := sym("posix_spawn")

	dir := realTempDir(t)
	target := filepath.Join(dir, "target")
	require.NoError(t, os.WriteFile(target, nil, 0o600))
	out := filepath.Join(dir, "observation.json")
	cstr := func(s string) []byte { return append([]byte(s), 0) }

	fa := new([10]uint64) // posix_spawn_file_actions_t, 80 bytes on x86_64
	require.Zero(t, libcCall(faInit, uintptr(unsafe.Pointer(fa))))
	t.Cleanup(func() { libcCall(faDestroy, uintptr(unsafe.Pointer(fa))) })
	const fd = 100
	path := cstr(target)
	require.Zero(t, libcCall(faAddOpen, uintptr(unsafe.Pointer(fa)), fd,
		uintptr(unsafe.Pointer(&path[0])), uintptr(unix.O_RDONLY), 0))
	for i := range len(path) - 1 {
		path[i] = 'X'
	}

	probe, arg0, env := cstr(probePath), cstr("forkless-probe"), cstr(envProbeOut+"="+out)
	argv := []*byte{&arg0[0], nil}
	envv := []*byte{&env[0], nil}
	var pid int32
	rc := libcCall(posixSpawn, uintptr(unsafe.Pointer(&pid)), uintptr(unsafe.Pointer(&probe[0])),
		uintptr(unsafe.Pointer(fa)), 0, uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])))
	runtime.KeepAlive(path)
	require.Zero(t, int32(rc), "posix_spawn: %v", unix.Errno(int32(rc)))
	child := &Child{Pid: int(pid), wait: func() (unix.WaitStatus, error) { return wait4Pid(int(pid)) }}
	t.Cleanup(child.reap)
	waitExit(t, child, 0)
	obs, err := difftest.ReadObservation(out)
	require.NoError(t, err)
	require.Equal(t, target, obsFD(t, obs, fd).Target)
}
