package glibc

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if err := Load(); err != nil {
		// Every test here needs glibc; say why rather than failing each.
		println("glibc tests need glibc:", err.Error())
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// wait reaps pid and returns its wait status.
func wait(t *testing.T, pid int) unix.WaitStatus {
	t.Helper()
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		require.NoError(t, err)
		return ws
	}
}

// spawnOK spawns and requires success, returning the exit status.
func spawnOK(t *testing.T, path string, fa *FileActions, attr *Attr, argv []string, opt Options) unix.WaitStatus {
	t.Helper()
	pid, written, errno := Spawn(path, fa, attr, argv, nil, opt)
	require.Equal(t, syscall.Errno(0), errno, "spawn %s: %v", path, errno)
	require.True(t, written)
	require.Greater(t, pid, 0)
	return wait(t, pid)
}

func TestVersion(t *testing.T) {
	assert.Regexp(t, regexp.MustCompile(`^\d+\.\d+`), Version())
	assert.NoError(t, Load(), "Load is idempotent")
}

func TestSpawnTrue(t *testing.T) {
	ws := spawnOK(t, "/bin/true", nil, nil, []string{"true"}, Options{})
	require.True(t, ws.Exited())
	assert.Equal(t, 0, ws.ExitStatus())

	ws = spawnOK(t, "/bin/false", nil, nil, []string{"false"}, Options{})
	require.True(t, ws.Exited())
	assert.Equal(t, 1, ws.ExitStatus())
}

func TestSpawnMissingPath(t *testing.T) {
	pid, written, errno := Spawn("/nonexistent/forkless", nil, nil, []string{"x"}, nil, Options{})
	assert.Equal(t, syscall.ENOENT, errno)
	assert.False(t, written)
	assert.Equal(t, 0, pid)
}

func TestSpawnNULInArgument(t *testing.T) {
	_, written, errno := Spawn("/bin/true", nil, nil, []string{"a\x00b"}, nil, Options{})
	assert.Equal(t, syscall.EINVAL, errno)
	assert.False(t, written)
}

func TestSpawnpSearchesPath(t *testing.T) {
	t.Setenv("PATH", "/usr/bin:/bin")
	ws := spawnOK(t, "true", nil, nil, []string{"true"}, Options{Search: true})
	require.True(t, ws.Exited())
	assert.Equal(t, 0, ws.ExitStatus())

	// posix_spawn does not search.
	_, written, errno := Spawn("true", nil, nil, []string{"true"}, nil, Options{})
	assert.Equal(t, syscall.ENOENT, errno)
	assert.False(t, written)

	// The search uses the PATH Go set (os.Setenv reaches libc's environ).
	dir := t.TempDir()
	script := filepath.Join(dir, "forkless-glibc-test-exit7")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\nexit 7\n"), 0o755))
	t.Setenv("PATH", dir)
	ws = spawnOK(t, "forkless-glibc-test-exit7", nil, nil, []string{"x"}, Options{Search: true})
	require.True(t, ws.Exited())
	assert.Equal(t, 7, ws.ExitStatus())
}

func TestAddOpenRedirectsStdout(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	fa, err := NewFileActions()
	require.NoError(t, err)
	defer fa.Destroy()
	require.NoError(t, fa.AddOpen(1, out, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o644))

	ws := spawnOK(t, "/bin/sh", fa, nil, []string{"sh", "-c", "echo hi"}, Options{})
	require.True(t, ws.Exited())
	require.Equal(t, 0, ws.ExitStatus())
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, "hi\n", string(data))
}

func TestFileActionsChdirDup2Close(t *testing.T) {
	dir := t.TempDir()
	fa, err := NewFileActions()
	require.NoError(t, err)
	defer fa.Destroy()
	require.NoError(t, fa.AddChdir(dir))
	require.NoError(t, fa.AddOpen(5, "rel", unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o600))
	require.NoError(t, fa.AddDup2(5, 1))
	require.NoError(t, fa.AddClose(5))
	require.NoError(t, fa.AddClosefrom(3))

	ws := spawnOK(t, "/bin/sh", fa, nil, []string{"sh", "-c", "pwd"}, Options{})
	require.True(t, ws.Exited())
	require.Equal(t, 0, ws.ExitStatus())
	data, err := os.ReadFile(filepath.Join(dir, "rel"))
	require.NoError(t, err)
	real, err := filepath.EvalSymlinks(dir)
	require.NoError(t, err)
	assert.Equal(t, real, strings.TrimSpace(string(data)))
}

func TestFileActionsErrors(t *testing.T) {
	fa, err := NewFileActions()
	require.NoError(t, err)
	assert.Equal(t, syscall.EBADF, fa.AddClose(-1))
	assert.Equal(t, syscall.EBADF, fa.AddDup2(-1, 1))
	assert.Equal(t, syscall.EINVAL, fa.AddOpen(1, "a\x00b", unix.O_RDONLY, 0))
	assert.NoError(t, fa.AddTcsetpgrp(0))
	fa.Destroy()
	fa.Destroy() // a second Destroy is harmless
	assert.ErrorIs(t, fa.AddClose(1), errDestroyed)
	var zero FileActions
	assert.ErrorIs(t, zero.AddClose(1), errDestroyed)
}

func TestSetFlagsUnknownBit(t *testing.T) {
	attr, err := NewAttr()
	require.NoError(t, err)
	defer attr.Destroy()
	assert.Equal(t, syscall.EINVAL, attr.SetFlags(0x4000))
	assert.NoError(t, attr.SetFlags(0x08)) // POSIX_SPAWN_SETSIGMASK
}

func TestAttrSetters(t *testing.T) {
	attr, err := NewAttr()
	require.NoError(t, err)
	defer attr.Destroy()
	assert.NoError(t, attr.SetPgroup(0))
	assert.NoError(t, attr.SetSigDefault(1<<(unix.SIGUSR2-1)))
	assert.NoError(t, attr.SetSchedPolicy(unix.SCHED_NORMAL))
	assert.Equal(t, syscall.EINVAL, attr.SetSchedPolicy(unix.SCHED_BATCH))
	assert.NoError(t, attr.SetSchedParam(0))
}

func TestSigMaskReachesChild(t *testing.T) {
	attr, err := NewAttr()
	require.NoError(t, err)
	defer attr.Destroy()
	require.NoError(t, attr.SetFlags(0x08)) // POSIX_SPAWN_SETSIGMASK
	require.NoError(t, attr.SetSigMask(1<<(unix.SIGUSR1-1)|1<<(unix.SIGTERM-1)))

	out := filepath.Join(t.TempDir(), "status")
	fa, err := NewFileActions()
	require.NoError(t, err)
	defer fa.Destroy()
	require.NoError(t, fa.AddOpen(1, out, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o644))

	ws := spawnOK(t, "/bin/grep", fa, attr, []string{"grep", "SigBlk", "/proc/self/status"}, Options{})
	require.True(t, ws.Exited())
	require.Equal(t, 0, ws.ExitStatus())
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	// SIGUSR1 is 10 (bit 9), SIGTERM is 15 (bit 14): 0x4200.
	assert.Equal(t, "SigBlk:\t0000000000004200\n", string(data))
}

func TestCompatRunsENOEXECWithShell(t *testing.T) {
	require.True(t, Has("posix_spawn@GLIBC_2.2.5"))
	dir := t.TempDir()
	marker := filepath.Join(dir, "marker")
	script := filepath.Join(dir, "noshebang")
	require.NoError(t, os.WriteFile(script, []byte("echo ran > "+marker+"\nexit 3\n"), 0o755))

	_, written, errno := Spawn(script, nil, nil, []string{script}, nil, Options{})
	assert.Equal(t, syscall.ENOEXEC, errno, "the default version does not fall back to /bin/sh")
	assert.False(t, written)
	assert.NoFileExists(t, marker)

	ws := spawnOK(t, script, nil, nil, []string{script}, Options{Compat: true})
	require.True(t, ws.Exited())
	assert.Equal(t, 3, ws.ExitStatus())
	data, err := os.ReadFile(marker)
	require.NoError(t, err)
	assert.Equal(t, "ran\n", string(data))
}

func TestCompatSpawnp(t *testing.T) {
	t.Setenv("PATH", "/usr/bin:/bin")
	ws := spawnOK(t, "true", nil, nil, []string{"true"}, Options{Search: true, Compat: true})
	require.True(t, ws.Exited())
	assert.Equal(t, 0, ws.ExitStatus())
}

func TestMissingSymbol(t *testing.T) {
	s := &symbol{name: "posix_spawn_file_actions_addteleport_np"}
	err := s.call(0)
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.ENOSYS)
	assert.Contains(t, err.Error(), "posix_spawn_file_actions_addteleport_np")
	assert.False(t, Has("posix_spawn_file_actions_addteleport_np"))
	assert.True(t, Has("posix_spawn_file_actions_addchdir_np"))
}
