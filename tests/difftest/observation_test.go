package difftest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/forkless/forkless/internal/testbin"
)

// runProbe runs cmd with stdout and stderr captured, requires it to exit
// 0 and returns what it printed, parsed.
func runProbe(t *testing.T, cmd *exec.Cmd) *Observation {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "stderr: %s", stderr.String())
	obs, err := ParseObservation(stdout.Bytes())
	require.NoError(t, err, "output: %s", stdout.String())
	return obs
}

// fdMap indexes an observation's descriptors by number.
func fdMap(obs *Observation) map[int]FD {
	m := make(map[int]FD, len(obs.FDs))
	for _, fd := range obs.FDs {
		m[fd.FD] = fd
	}
	return m
}

// inheritedFDs lists this process's descriptors from first up that lack
// FD_CLOEXEC: os/exec passes them to every child, so the probe sees them.
func inheritedFDs(t *testing.T, first int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	var fds []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		require.NoError(t, err)
		if fd < first {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err == nil && flags&unix.FD_CLOEXEC == 0 {
			fds = append(fds, fd)
		}
	}
	return fds
}

// blockingPipe returns a pipe that the Go poller leaves alone, so its
// status flags are exactly O_RDONLY and O_WRONLY.
func blockingPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	var p [2]int
	require.NoError(t, syscall.Pipe2(p[:], syscall.O_CLOEXEC))
	r, w = os.NewFile(uintptr(p[0]), "pipe-r"), os.NewFile(uintptr(p[1]), "pipe-w")
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func inode(t *testing.T, f *os.File) uint64 {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Fstat(int(f.Fd()), &st))
	return st.Ino
}

// ignoredHere lists the signals this process ignores, as the kernel says:
// exec keeps them ignored, so every child of ours starts with them.
func ignoredHere(t *testing.T) []int {
	t.Helper()
	ignored := []int{}
	for sig := 1; sig <= 64; sig++ {
		var act [8]uintptr // the kernel's struct sigaction, handler first
		_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0,
			uintptr(unsafe.Pointer(&act)), 8, 0, 0)
		require.Zero(t, errno, "rt_sigaction(%d)", sig)
		if act[0] == 1 { // SIG_IGN
			ignored = append(ignored, sig)
		}
	}
	return ignored
}

func realTempDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	return dir
}

func currentUmask() uint32 {
	old := syscall.Umask(0)
	syscall.Umask(old)
	return uint32(old)
}

func TestProbeExtraFiles(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	_, pw := blockingPipe(t)

	dir := realTempDir(t)
	path := filepath.Join(dir, "data")
	f, err := os.Create(path) // O_RDWR|O_CREAT|O_TRUNC|O_CLOEXEC
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteString("0123456789")
	require.NoError(t, err)
	_, err = f.Seek(5, 0)
	require.NoError(t, err)

	cmd := exec.Command(probe)
	cmd.ExtraFiles = []*os.File{pw, f}
	obs := runProbe(t, cmd)

	want := append([]int{0, 1, 2, 3, 4}, inheritedFDs(t, 5)...)
	var got []int
	for _, fd := range obs.FDs {
		got = append(got, fd.FD)
	}
	require.Equal(t, want, got, "descriptor numbers")
	// The scan's own directory fd took the lowest free number.
	free := 5
	for slices.Contains(want, free) {
		free++
	}
	assert.Equal(t, free, obs.ScanFD)

	fds := fdMap(obs)
	assert.Equal(t, FD{FD: 0, CloExec: false, Flags: unix.O_RDONLY, Pos: 0, Target: "/dev/null"}, fds[0])
	for _, n := range []int{1, 2} {
		assert.False(t, fds[n].CloExec)
		assert.Equal(t, unix.O_WRONLY, fds[n].Flags&unix.O_ACCMODE)
		assert.Equal(t, int64(-1), fds[n].Pos)
		assert.True(t, strings.HasPrefix(fds[n].Target, "pipe:["), fds[n].Target)
		assert.Nil(t, fds[n].TTYPgrp)
	}
	assert.Equal(t, FD{FD: 3, CloExec: false, Flags: unix.O_WRONLY, Pos: -1,
		Target: fmt.Sprintf("pipe:[%d]", inode(t, pw))}, fds[3])
	assert.Equal(t, FD{FD: 4, CloExec: false, Flags: unix.O_RDWR, Pos: 5, Target: path}, fds[4])

	// The probe changed nothing: the shared file offset is still 5.
	pos, err := f.Seek(0, 1)
	require.NoError(t, err)
	assert.Equal(t, int64(5), pos)
}

func TestProbeIdentity(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	dir := realTempDir(t)

	cmd := exec.Command(probe)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	obs := runProbe(t, cmd)

	sid, err := unix.Getsid(0)
	require.NoError(t, err)
	assert.Equal(t, cmd.Process.Pid, obs.PID)
	assert.Equal(t, os.Getpid(), obs.PPID)
	assert.Equal(t, obs.PID, obs.PGID, "Setpgid makes the child a group leader")
	assert.Equal(t, sid, obs.SID)
	assert.Equal(t, dir, obs.Cwd)
	assert.Equal(t, currentUmask(), obs.Umask)

	ruid, euid, suid := unix.Getresuid()
	rgid, egid, sgid := unix.Getresgid()
	assert.Equal(t, []uint32{uint32(ruid), uint32(euid), uint32(suid)}, []uint32{obs.UID, obs.EUID, obs.SUID})
	assert.Equal(t, []uint32{uint32(rgid), uint32(egid), uint32(sgid)}, []uint32{obs.GID, obs.EGID, obs.SGID})

	policy, _, errno := unix.RawSyscall(unix.SYS_SCHED_GETSCHEDULER, 0, 0, 0)
	require.Zero(t, errno)
	assert.Equal(t, int(policy), obs.Sched.Policy)
	assert.Equal(t, 0, obs.Sched.Priority, "non-real-time policies have priority 0")

	cg, err := os.ReadFile("/proc/self/cgroup")
	require.NoError(t, err)
	assert.Equal(t, strings.Split(strings.TrimSuffix(string(cg), "\n"), "\n"), obs.CGroup)
	assert.Empty(t, obs.Caught, "exec resets every handler")
}

func TestProbeArgvEnvRoundTrip(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	args := []string{probe, `say "hi"`, `back\slash`, "line1\nline2\r\n", "tab\there",
		"héllo wörld ☃ 日本語", "\x01\x1f\x7f", "", "</script>"}
	env := []string{"A=1", `QUOTE="x"`, `BS=a\b\\`, "NL=1\n2", "UTF=ünï ☃", "EMPTY=", "NOEQUALS"}

	cmd := exec.Command(probe)
	cmd.Args = args
	cmd.Env = env
	obs := runProbe(t, cmd)
	assert.Equal(t, args, obs.Argv)
	assert.Equal(t, env, obs.Env)
}

func TestProbeUmaskAndLimitThroughShell(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	cmd := exec.Command("/bin/sh", "-c", `umask 027 && ulimit -n 100 && exec "$0"`, probe)
	obs := runProbe(t, cmd)
	assert.Equal(t, uint32(0o027), obs.Umask)
	assert.Equal(t, [2]uint64{100, 100}, obs.NoFile)
}

func TestProbeIgnoredSignal(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	// The baseline goes through the same shell, so the only difference is
	// the trap.
	base := runProbe(t, exec.Command("/bin/sh", "-c", `exec "$0"`, probe))
	assert.Equal(t, ignoredHere(t), base.Ignored, "inherited ignored signals")
	require.NotContains(t, base.Ignored, int(unix.SIGUSR1), "SIGUSR1 already ignored by the test's parent")

	obs := runProbe(t, exec.Command("/bin/sh", "-c", `trap "" USR1; exec "$0"`, probe))
	want := append(slices.Clone(base.Ignored), int(unix.SIGUSR1))
	slices.Sort(want)
	assert.Equal(t, want, obs.Ignored)
	assert.Equal(t, base.SigMask, obs.SigMask)
	assert.Empty(t, obs.Caught)
}

func TestProbeControllingTerminal(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	defer master.Close()
	require.NoError(t, unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	ttyPath := fmt.Sprintf("/dev/pts/%d", n)
	tty, err := os.OpenFile(ttyPath, os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	defer tty.Close()

	// As a new session's leader with the terminal as its controlling one,
	// the probe's own group is the terminal's foreground group.
	cmd := exec.Command(probe)
	cmd.Stdin = tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	obs := runProbe(t, cmd)
	assert.Equal(t, obs.PID, obs.SID)
	fd0 := fdMap(obs)[0]
	assert.Equal(t, ttyPath, fd0.Target)
	assert.Equal(t, unix.O_RDWR, fd0.Flags)
	require.NotNil(t, fd0.TTYPgrp)
	assert.Equal(t, obs.PID, *fd0.TTYPgrp)

	// Without a new session the terminal is not the probe's: -1.
	cmd = exec.Command(probe)
	cmd.Stdin = tty
	obs = runProbe(t, cmd)
	fd0 = fdMap(obs)[0]
	require.NotNil(t, fd0.TTYPgrp)
	assert.Equal(t, -1, *fd0.TTYPgrp)
}

func TestProbeOutputFile(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	out := filepath.Join(realTempDir(t), "obs.json")
	// Longer than the output: the probe must truncate.
	require.NoError(t, os.WriteFile(out, bytes.Repeat([]byte("x"), 1<<20), 0o600))

	cmd := exec.Command(probe, "arg")
	cmd.Env = []string{"FORKLESS_PROBE_OUT=" + out}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	require.NoError(t, cmd.Run())
	assert.Empty(t, stdout.String(), "nothing on stdout when writing to a file")

	obs, err := ReadObservation(out)
	require.NoError(t, err)
	assert.Equal(t, []string{probe, "arg"}, obs.Argv)
	assert.Equal(t, cmd.Env, obs.Env)
	for _, fd := range obs.FDs {
		assert.NotEqual(t, out, fd.Target, "output opened after the scan")
	}

	// A path that cannot be opened: exit status 3.
	cmd = exec.Command(probe)
	cmd.Env = []string{"FORKLESS_PROBE_OUT=" + filepath.Join(out, "not-a-dir", "x")}
	var exitErr *exec.ExitError
	require.True(t, errors.As(cmd.Run(), &exitErr))
	assert.Equal(t, 3, exitErr.ExitCode())
}

func TestProbeOutputFileMode(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	out := filepath.Join(realTempDir(t), "new.json")
	cmd := exec.Command("/bin/sh", "-c", `umask 077 && exec "$0"`, probe)
	cmd.Env = []string{"FORKLESS_PROBE_OUT=" + out}
	require.NoError(t, cmd.Run())
	st, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "0644 less umask 077")
	_, err = ReadObservation(out)
	require.NoError(t, err)
}

func TestProbeExitStatus(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	var stdout bytes.Buffer
	cmd := exec.Command(probe, "--exit", "7")
	cmd.Stdout = &stdout
	var exitErr *exec.ExitError
	require.True(t, errors.As(cmd.Run(), &exitErr))
	assert.Equal(t, 7, exitErr.ExitCode())
	obs, err := ParseObservation(stdout.Bytes())
	require.NoError(t, err, "the observation is written before exiting")
	assert.Equal(t, []string{probe, "--exit", "7"}, obs.Argv)

	// Not a number: the flag is ignored.
	obs = runProbe(t, exec.Command(probe, "--exit", "x"))
	assert.Equal(t, []string{probe, "--exit", "x"}, obs.Argv)
}

// A valid observation with one fd, to check the parser's strictness.
const sample = `{"scan_fd":3,"fds":[{"fd":0,"cloexec":false,"flags":0,"pos":0,` +
	`"target":"/dev/null","tty_pgrp":null}],"cwd":"/","umask":18,"sigmask":[],` +
	`"ignored":[13],"caught":[],"pid":10,"ppid":1,"pgid":10,"sid":1,"uid":0,` +
	`"euid":0,"suid":0,"gid":0,"egid":0,"sgid":0,"sched":{"policy":0,"priority":0},` +
	`"nofile":[1024,18446744073709551615],"cgroup":["0::/"],"argv":["p"],"env":[]}`

func TestParseObservation(t *testing.T) {
	obs, err := ParseObservation([]byte(sample + "\n"))
	require.NoError(t, err)
	assert.Equal(t, [2]uint64{1024, ^uint64(0)}, obs.NoFile)
	assert.Equal(t, []int{13}, obs.Ignored)
	assert.Nil(t, obs.FDs[0].TTYPgrp)

	bad := map[string]string{
		"unknown field":    strings.Replace(sample, `"cwd"`, `"extra":1,"cwd"`, 1),
		"unknown fd field": strings.Replace(sample, `"fd":0,`, `"fd":0,"x":1,`, 1),
		"missing field":    strings.Replace(sample, `"umask":18,`, ``, 1),
		"missing fd field": strings.Replace(sample, `"pos":0,`, ``, 1),
		"missing sched":    strings.Replace(sample, `"priority":0`, `"policy":0`, 1),
		"trailing data":    sample + `{}`,
		"not json":         `{"scan_fd":`,
		"wrong type":       strings.Replace(sample, `"pid":10`, `"pid":"10"`, 1),
	}
	for name, in := range bad {
		_, err := ParseObservation([]byte(in))
		assert.Error(t, err, name)
	}
}

func TestProbeLargeOutput(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	// About 1 MiB of environment: far more than a pipe holds, so the probe
	// must keep writing as the reader drains it.
	var env []string
	for i := range 16 {
		env = append(env, fmt.Sprintf("BIG%d=%s", i, strings.Repeat(string(rune('a'+i)), 64<<10)))
	}
	cmd := exec.Command(probe)
	cmd.Env = env
	obs := runProbe(t, cmd)
	assert.Equal(t, env, obs.Env)
}

// FuzzParseObservation: any input gives an Observation or an error, never
// a panic, and whatever parses re-encodes and parses to the same value.
func FuzzParseObservation(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"scan_fd":3,"fds":[{"fd":0,"cloexec":false,"flags":0,"pos":0,"target":"/dev/null","tty_pgrp":null}]}`))
	f.Add([]byte(`[1,2,3]`))
	f.Add([]byte(`{"argv":["a\u0000b"],"env":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		obs, err := ParseObservation(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(obs)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		obs2, err := ParseObservation(again)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(obs, obs2) {
			t.Fatalf("round trip changed the observation")
		}
	})
}
