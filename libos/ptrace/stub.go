package ptrace

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// StubArg is argv[1] of a stub process: forkless's own executable run as
// `forkless __ptrace-stub MODE ...`.
const StubArg = "__ptrace-stub"

// Stub modes (argv[2]).
const (
	stubExec     = "exec"     // exec PATH ARGV...: wait for the tracer, install the filter, exec
	stubDoorbell = "doorbell" // pause forever; the tracer's wake-up line
)

// syncFD is the descriptor on which an exec stub waits for the tracer: the
// tracer writes one byte once every thread of the stub is seized.
const syncFD = 3

// StubMain is the entry of the stub process: forkless's own executable run
// as `forkless __ptrace-stub ...` (cmd/forkless dispatches argv[1] ==
// StubArg to it with the arguments after StubArg). It waits until the
// tracer has seized it, installs the seccomp filter and execs the real
// program. It returns an exit status only on failure.
func StubMain(args []string) int {
	if len(args) >= 1 && args[0] == stubDoorbell {
		for {
			unix.Pause()
		}
	}
	if len(args) < 3 || args[0] != stubExec {
		fmt.Fprintf(os.Stderr, "forkless: %s: want %s PATH ARGV0 [ARG...]\n", StubArg, stubExec)
		return 125
	}
	// The filter is installed on this thread and exec runs on it.
	runtime.LockOSThread()
	path, argv := args[1], args[2:]
	var b [1]byte
	n, err := unix.Read(syncFD, b[:])
	unix.Close(syncFD)
	if n != 1 {
		fmt.Fprintf(os.Stderr, "forkless: ptrace stub: the tracer did not seize the process (%v)\n", err)
		return 125
	}
	if err := installFilter(); err != nil {
		fmt.Fprintf(os.Stderr, "forkless: ptrace stub: seccomp filter: %v\n", err)
		return 125
	}
	err = unix.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "forkless: exec %s: %v\n", path, err)
	if err == unix.ENOENT {
		return 127
	}
	return 126
}

// installFilter installs the platform's seccomp filter on the calling
// thread. A privileged process (CAP_SYS_ADMIN) may install it as it is;
// otherwise the kernel requires no_new_privs, which is set then.
//
// SECCOMP_FILTER_FLAG_SPEC_ALLOW: without it, a kernel that mitigates
// speculative store bypass "for seccomp tasks" turns the mitigation on
// for the whole program, slowing it where it would run unmitigated
// natively. Kernels before 4.17 do not know the flag (EINVAL).
func installFilter() error {
	prog := filterProgram()
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	set := func(flags uintptr) error {
		_, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
		runtime.KeepAlive(prog)
		if e != 0 {
			return e
		}
		return nil
	}
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW)
	err := set(flags)
	if err == unix.EINVAL {
		flags = 0
		err = set(flags)
	}
	if err == unix.EACCES {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", err)
		}
		err = set(flags)
	}
	return err
}
