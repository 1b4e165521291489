package spawn

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A child of the test binary installs a seccomp filter that makes clone3
// fail with the given errno, as an old kernel (ENOSYS) or a container
// policy would, then spawns: the engine must fall back to clone.
const envSeccompChild = "FORKLESS_TEST_SECCOMP_ERRNO"

func TestMain(m *testing.M) {
	if e := os.Getenv(envSeccompChild); e != "" {
		var errno int
		fmt.Sscan(e, &errno)
		os.Exit(seccompChild(unix.Errno(errno)))
	}
	os.Exit(m.Run())
}

func seccompChild(errno unix.Errno) int {
	if err := refuseClone3(errno); err != nil {
		fmt.Fprintln(os.Stderr, "seccomp:", err)
		return 2
	}
	p, err := Spawn("/bin/sh", nil, nil, []string{"sh", "-c", "exit 5"}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spawn:", err)
		return 3
	}
	st, err := p.Wait()
	if err != nil || st.ExitCode() != 5 {
		fmt.Fprintln(os.Stderr, "wait:", st, err)
		return 4
	}
	if !noClone3.Load() {
		fmt.Fprintln(os.Stderr, "clone3 was not refused")
		return 5
	}
	// SETCGROUP needs clone3: EOPNOTSUPP, not a guess.
	var a Attr
	_ = a.SetFlags(FlagSetCgroup)
	_ = a.SetCgroup(0)
	if _, err := Spawn("/bin/true", nil, &a, []string{"true"}, nil); err == nil || !isErrno(err, unix.EOPNOTSUPP) {
		fmt.Fprintln(os.Stderr, "cgroup without clone3:", err)
		return 6
	}
	return 0
}

func isErrno(err error, e unix.Errno) bool {
	se, ok := err.(*Error)
	return ok && se.Errno == e
}

// refuseClone3 installs, for every thread, a filter returning errno for
// clone3 and allowing everything else.
func refuseClone3(errno unix.Errno) error {
	const (
		retErrno = 0x00050000
		retAllow = 0x7fff0000
		auditX86 = 0xc000003e
	)
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: auditX86},
		{Code: unix.BPF_RET | unix.BPF_K, K: retAllow},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_CLONE3},
		{Code: unix.BPF_RET | unix.BPF_K, K: retErrno | uint32(errno)},
		{Code: unix.BPF_RET | unix.BPF_K, K: retAllow},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	_, _, e := unix.Syscall(unix.SYS_SECCOMP, 1 /* SET_MODE_FILTER */, 1 /* TSYNC */, uintptr(unsafe.Pointer(&prog)))
	if e != 0 {
		return e
	}
	return nil
}

func TestCloneFallbackUnderSeccomp(t *testing.T) {
	// ENOSYS: a kernel without clone3; EPERM: a container policy.
	for _, errno := range []unix.Errno{unix.ENOSYS, unix.EPERM} {
		t.Run(unix.ErrnoName(errno), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", envSeccompChild, int(errno)))
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
		})
	}
}
