package ptrace

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// runFilter interprets the filter's instructions (the subset it uses) on
// one struct seccomp_data.
func runFilter(t *testing.T, prog []unix.SockFilter, arch, nr uint32, arg0 uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.NativeEndian.PutUint32(data[0:], nr)
	binary.NativeEndian.PutUint32(data[4:], arch)
	binary.NativeEndian.PutUint64(data[16:], arg0)
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case bpfLdAbs:
			require.Less(t, int(in.K)+4, len(data)+1)
			acc = binary.NativeEndian.Uint32(data[in.K:])
		case bpfJeq, bpfJge, bpfJset:
			var ok bool
			switch in.Code {
			case bpfJeq:
				ok = acc == in.K
			case bpfJge:
				ok = acc >= in.K
			default:
				ok = acc&in.K != 0
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case bpfRet:
			return in.K
		default:
			t.Fatalf("instruction %d: unexpected code %#x", pc, in.Code)
		}
	}
	t.Fatal("fell off the end of the filter")
	return 0
}

func TestFilterDecisions(t *testing.T) {
	const (
		allow = unix.SECCOMP_RET_ALLOW
		trace = unix.SECCOMP_RET_TRACE
		nosys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
		x86   = unix.AUDIT_ARCH_X86_64
	)
	prog := filterProgram()
	require.LessOrEqual(t, len(prog), 4096)
	for _, tc := range []struct {
		arch, nr uint32
		arg0     uint64
		want     uint32
	}{
		{x86, unix.SYS_GETPPID, 0, allow},
		{x86, unix.SYS_READ, 0, allow},
		{x86, unix.SYS_CLOSE_RANGE, 0, allow},
		{x86, unix.SYS_CLONE, unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND, allow},
		{x86, unix.SYS_CLONE, uint64(unix.SIGCHLD), trace},
		{x86, unix.SYS_CLONE, unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD), trace},
		{x86, unix.SYS_CLONE, 1 << 40, trace}, // only the low 32 bits are flags
		{x86, unix.SYS_CLONE3, 0, trace},
		{x86, unix.SYS_FORK, 0, trace},
		{x86, unix.SYS_VFORK, 0, trace},
		{x86, unix.SYS_EXECVE, 0, trace},
		{x86, unix.SYS_EXECVEAT, 0, trace},
		{x86, unix.SYS_PTRACE, 0, trace},
		{x86, x32Bit | 520, 0, nosys}, // x32 execve
		{x86, x32Bit | 56, 0, nosys},  // x32 clone
		{x86, x32Bit | 39, 0, allow},  // x32 getpid
		{auditArchI386, 11, 0, nosys}, // i386 execve
		{auditArchI386, 2, 0, nosys},  // i386 fork
		{auditArchI386, 120, 0, nosys},
		{auditArchI386, 20, 0, allow}, // i386 getpid
		{0x12345678, unix.SYS_EXECVE, 0, allow},
	} {
		t.Run(fmt.Sprintf("%#x-%d-%#x", tc.arch, tc.nr, tc.arg0), func(t *testing.T) {
			assert.Equal(t, tc.want, runFilter(t, prog, tc.arch, tc.nr, tc.arg0))
		})
	}
}

func TestCloseRanges(t *testing.T) {
	fds := func(ns ...int) []fdInfo {
		var out []fdInfo
		for _, n := range ns {
			out = append(out, fdInfo{fd: n})
		}
		return out
	}
	const end = 1<<32 - 1
	for _, tc := range []struct {
		close   []int
		inherit []fdInfo
		want    [][2]uint
	}{
		{[]int{3}, fds(0, 1, 2), [][2]uint{{3, end}}},
		{[]int{3, 4, 9}, fds(0, 1, 2), [][2]uint{{3, end}}},
		{[]int{3, 9}, fds(0, 1, 2, 7), [][2]uint{{3, 3}, {9, end}}},
		{[]int{9, 3}, fds(0, 1, 2, 7, 12), [][2]uint{{3, 3}, {9, 9}}},
		{[]int{3, 4}, fds(0, 1, 2, 5), [][2]uint{{3, 4}}},
	} {
		assert.Equal(t, tc.want, closeRanges(tc.close, tc.inherit), "close %v keep %v", tc.close, tc.inherit)
	}
}

func TestUTF8Bytes(t *testing.T) {
	assert.Equal(t, "abc", utf8Bytes([]byte("abc")))
	assert.Equal(t, "é", utf8Bytes([]byte("é")))
	assert.Equal(t, "a\uFFFD\uFFFDb", utf8Bytes([]byte{'a', 0xff, 0xfe, 'b'}))
}

// TestStartNs checks the helper requireGone relies on: the start time of a
// live process, to the kernel's 10 ms tick.
func TestStartNs(t *testing.T) {
	static := testbin.MustBuild(t, staticProg)
	before := time.Now().UnixNano()
	cmd := exec.Command(static, "waitsig")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	after := time.Now().UnixNano()
	defer cmd.Wait()
	defer cmd.Process.Kill()
	require.Equal(t, "waitsig: ready", <-lines(out.(*os.File)))
	start, ok := startNs(cmd.Process.Pid)
	require.True(t, ok)
	assert.GreaterOrEqual(t, start, before-int64(20*time.Millisecond))
	assert.LessOrEqual(t, start, after+int64(20*time.Millisecond))
}
