package spawn

import (
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSpawn is implemented in child_linux_amd64.s.
func rawSpawn(st *childState, nr, a0, a1, a2 uintptr) (pid uintptr, errno uintptr)

const (
	cloneVM           = 0x100
	cloneVfork        = 0x4000
	clonePidfd        = 0x1000
	cloneClearSighand = 0x100000000
	cloneIntoCgroup   = 0x200000000
)

// cloneArgs is struct clone_args (CLONE_ARGS_SIZE_VER2).
type cloneArgs struct {
	flags      uint64
	pidfd      uint64
	childTID   uint64
	parentTID  uint64
	exitSignal uint64
	stack      uint64
	stackSize  uint64
	tls        uint64
	setTID     uint64
	setTIDSize uint64
	cgroup     uint64
}

// noClone3 is set once clone3 has been refused (ENOSYS on old kernels,
// EPERM or EINVAL under some seccomp policies). FORKLESS_NO_CLONE3=1 sets
// it from the start, to exercise the fallback.
var noClone3 atomic.Bool

func init() {
	if os.Getenv("FORKLESS_NO_CLONE3") == "1" {
		noClone3.Store(true)
	}
}

// Spawn starts the program at path with the given file actions, attributes,
// argument vector and environment, like posix_spawn. fa and attr may be nil.
// On failure it returns an *Error and no process exists.
func Spawn(path string, fa *FileActions, attr *Attr, argv, envv []string) (*Process, error) {
	return start(&request{path: path, fa: fa, attr: attr, argv: argv, envv: envv})
}

// SpawnP is Spawn with glibc's posix_spawnp search: a file without a slash
// is looked up in the caller's PATH (not in envv's), or in "/bin:/usr/bin"
// when PATH is unset. EACCES is remembered while the search goes on;
// ENOENT, ESTALE, ENOTDIR, ENODEV and ETIMEDOUT move to the next entry; any
// other error ends it. ENOEXEC is returned as is: there is no shell fallback.
func SpawnP(file string, fa *FileActions, attr *Attr, argv, envv []string) (*Process, error) {
	return start(&request{path: file, search: true, fa: fa, attr: attr, argv: argv, envv: envv})
}

func start(req *request) (*Process, error) {
	var cgroup bool
	if req.attr != nil && req.attr.flags&FlagSetCgroup != 0 {
		if !req.attr.hasCgroup {
			return nil, &Error{Path: req.path, Step: "cgroup", Errno: unix.EINVAL}
		}
		cgroup = true
	}
	stack, err := stacks.get()
	if err != nil {
		return nil, &Error{Path: req.path, Step: "child stack", Errno: errnoOf(err)}
	}
	defer stacks.put(stack)

	acquireForkLock()
	defer releaseForkLock()
	pidfd := true
	for {
		useClone3 := !noClone3.Load()
		if !useClone3 && cgroup {
			return nil, &Error{Path: req.path, Step: "clone3 (cgroup)", Errno: unix.EOPNOTSUPP}
		}
		prog, err := compile(req, useClone3)
		if err != nil {
			return nil, err
		}
		pid, errno := run(prog, req.attr, stack, useClone3, cgroup, pidfd)
		if errno == 0 {
			return finish(req, prog, int(pid))
		}
		e := unix.Errno(errno)
		if pidfd && (e == unix.EMFILE || e == unix.ENFILE) {
			// No descriptor left for the pidfd: spawn anyway, as
			// posix_spawn would, and track the child by pid.
			pidfd = false
			continue
		}
		if useClone3 && !cgroup && (e == unix.ENOSYS || e == unix.EPERM || e == unix.EINVAL) {
			noClone3.Store(true)
			continue
		}
		step := "clone3"
		if !useClone3 {
			step = "clone"
		}
		return nil, &Error{Path: req.path, Step: step, Errno: e}
	}
}

// run makes the clone on a locked thread with every signal blocked.
func run(prog *program, attr *Attr, stack []byte, useClone3, cgroup, pidfd bool) (uintptr, uintptr) {
	var withPidfd uint64
	if pidfd {
		withPidfd = clonePidfd
	}
	top := uintptr(unsafe.Pointer(&stack[len(stack)-1])) + 1
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var pid, errno uintptr
	if useClone3 {
		args := &cloneArgs{
			flags:      cloneVM | cloneVfork | withPidfd | cloneClearSighand,
			pidfd:      uint64(uintptr(unsafe.Pointer(&prog.st.pidfd))),
			exitSignal: uint64(unix.SIGCHLD),
			stack:      uint64(uintptr(unsafe.Pointer(&stack[guardSize]))),
			stackSize:  stackSize,
		}
		if cgroup {
			args.flags |= cloneIntoCgroup
			args.cgroup = uint64(attr.cgroupFD)
		}
		pid, errno = rawSpawn(prog.st, unix.SYS_CLONE3, uintptr(unsafe.Pointer(args)), unsafe.Sizeof(*args), 0)
		runtime.KeepAlive(args)
	} else {
		flags := uintptr(cloneVM|cloneVfork|withPidfd) | uintptr(unix.SIGCHLD)
		pid, errno = rawSpawn(prog.st, unix.SYS_CLONE, flags, top, uintptr(unsafe.Pointer(&prog.st.pidfd)))
	}
	runtime.KeepAlive(prog)
	runtime.KeepAlive(stack)
	return pid, errno
}

// finish turns a created child into a Process, or reaps a child that
// failed before exec and returns its error.
func finish(req *request, prog *program, pid int) (*Process, error) {
	st := prog.st
	if st.errno == 0 {
		return newProcess(pid, int(st.pidfd)), nil
	}
	reap(pid, int(st.pidfd))
	step := "child"
	if int(st.step) < len(prog.steps) {
		if s := prog.steps[st.step]; s.action >= 0 {
			step = actionName(s.action, req.fa.acts[s.action])
		} else {
			step = s.name
		}
	}
	return nil, &Error{Path: req.path, Step: step, Errno: unix.Errno(st.errno)}
}

// reap waits for a child that failed before exec and releases its pidfd.
func reap(pid, pidfd int) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if err != unix.EINTR {
			break
		}
	}
	if pidfd >= 0 {
		unix.Close(pidfd)
	}
}

func errnoOf(err error) unix.Errno {
	if e, ok := err.(unix.Errno); ok {
		return e
	}
	return unix.EINVAL
}
