package spawn

import (
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pathMax caps the PATH a search reads, as in glibc.
const pathMax = 4096

// defaultPath is confstr(_CS_PATH) on glibc Linux: the search path used
// when PATH is unset.
const defaultPath = "/bin:/usr/bin"

// request is one spawn, as given to Spawn or SpawnP.
type request struct {
	path   string
	search bool
	fa     *FileActions
	attr   *Attr
	argv   []string
	envv   []string
}

// compile turns a request into the child's program, in glibc's order:
// dispositions, scheduling, setsid, setpgid, reset ids, file actions,
// mask, exec. clearSighand says the clone clears handlers itself.
func compile(req *request, clearSighand bool) (*program, error) {
	p := newProgram(arenaSize(req))
	attr := req.attr
	if attr == nil {
		attr = &Attr{}
	}
	fl := attr.flags

	// 1. Signal dispositions. Caught signals must not run a handler in a
	// child that shares the parent's memory: reset them all to SIG_DFL,
	// keep SIG_IGN, and force the SETSIGDEF set to SIG_DFL.
	dfl := addr(p.buf(32)) // struct kernel_sigaction: SIG_DFL, no flags
	if !clearSighand {
		st := p.step("signal dispositions")
		p.add(op{kind: opResetSig, a: [6]uint64{uint64(addr(p.buf(32))), uint64(dfl)}, step: st})
	}
	// glibc parity: its internal signals (32 SIGCANCEL, 33 SIGSETXID) are
	// set to SIG_IGN in the child unless SETSIGDEF names them, and the
	// program runs with them ignored. glibc reinstalls its handlers in the
	// new program when it needs them.
	ignAction := p.buf(32)
	ignAction[0] = 1 // sa_handler = SIG_IGN
	ign := addr(ignAction)
	for _, sig := range []int{32, 33} {
		if fl&FlagSetSigDefault == 0 || !attr.sigDefault.Has(sigOf(sig)) {
			p.sys(p.step("signal dispositions"), ctlIgnErr, unix.SYS_RT_SIGACTION, uintptr(sig), ign, 0, 8)
		}
	}
	if fl&FlagSetSigDefault != 0 && attr.sigDefault != 0 {
		st := p.step("signal defaults")
		for sig := 1; sig <= 64; sig++ {
			if attr.sigDefault.Has(sigOf(sig)) {
				p.sys(st, ctlIgnErr, unix.SYS_RT_SIGACTION, uintptr(sig), dfl, 0, 8)
			}
		}
	}

	// 2. Scheduling.
	param := p.word(uint64(uint32(int32(attr.priority))))
	switch {
	case fl&FlagSetScheduler != 0:
		p.sys(p.step("sched_setscheduler"), 0, unix.SYS_SCHED_SETSCHEDULER, 0, uintptr(attr.policy), param)
	case fl&FlagSetSchedParam != 0:
		p.sys(p.step("sched_setparam"), 0, unix.SYS_SCHED_SETPARAM, 0, param)
	}

	// 3, 4. Session and process group.
	if fl&FlagSetSid != 0 {
		p.sys(p.step("setsid"), 0, unix.SYS_SETSID)
	}
	if fl&FlagSetPgroup != 0 {
		p.sys(p.step("setpgid"), 0, unix.SYS_SETPGID, 0, uintptr(attr.pgroup))
	}

	// 5. Effective ids := real ids.
	if fl&FlagResetIDs != 0 {
		st := p.step("reset ids")
		none := ^uintptr(0)
		p.sys(st, ctlSave, unix.SYS_GETUID)
		p.sys(st, ctlArgR<<1, unix.SYS_SETRESUID, none, 0, none)
		p.sys(st, ctlSave, unix.SYS_GETGID)
		p.sys(st, ctlArgR<<1, unix.SYS_SETRESGID, none, 0, none)
	}

	// 6. File actions, in the order added.
	if req.fa != nil {
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			lim.Cur = 1 << 20
		}
		for i, a := range req.fa.acts {
			if err := compileAction(p, i, a, attr, lim.Cur); err != nil {
				return nil, &Error{Path: req.path, Step: actionName(i, a), Errno: err.(unix.Errno)}
			}
		}
	}

	// 7. The signal mask: the attribute's, or the caller's.
	mask := uintptr(unsafe.Pointer(&p.st.oldmask))
	if fl&FlagSetSigMask != 0 {
		mask = p.word(uint64(attr.sigMask))
	}
	p.sys(p.step("signal mask"), 0, unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, mask, 0, 8)

	// 8. Exec.
	argv, err := p.cstrv(req.argv)
	if err != nil {
		return nil, &Error{Path: req.path, Step: "argv", Errno: unix.EINVAL}
	}
	envv, err := p.cstrv(req.envv)
	if err != nil {
		return nil, &Error{Path: req.path, Step: "env", Errno: unix.EINVAL}
	}
	if err := compileExec(p, req, argv, envv); err != nil {
		return nil, err
	}
	p.finish()
	return p, nil
}

func sigOf(n int) unix.Signal { return unix.Signal(n) }

// actionName describes file action i for an error.
func actionName(i int, a action) string { return fmt.Sprintf("file action %d (%s)", i, a) }

// arenaSize estimates the bytes a request's strings and buffers need.
func arenaSize(req *request) int {
	n := 8*(len(req.argv)+len(req.envv)+2) + len(req.path) + 128
	for _, s := range req.argv {
		n += len(s) + 8
	}
	for _, s := range req.envv {
		n += len(s) + 8
	}
	if req.fa != nil {
		for _, a := range req.fa.acts {
			n += len(a.path) + 16
		}
	}
	return n
}

func compileAction(p *program, i int, a action, attr *Attr, nofile uint64) error {
	st := p.actionStep(i)
	fd := uintptr(a.fd)
	switch a.kind {
	case actClose:
		// Errors count only for descriptors outside the open-file limit.
		ctl := uint64(ctlIgnErr)
		if uint64(a.fd) >= nofile {
			ctl = 0
		}
		p.sys(st, ctl, unix.SYS_CLOSE, fd)
	case actOpen:
		path, err := p.cstr(a.path)
		if err != nil {
			return err
		}
		// The target is closed first, then the file is opened and moved
		// onto it when the kernel chose another number.
		p.sys(st, ctlIgnErr, unix.SYS_CLOSE, fd)
		p.sys(st, ctlSave, unix.SYS_OPENAT, atFDCWD, path, uintptr(a.flags|unix.O_LARGEFILE), uintptr(a.mode))
		p.add(op{kind: opSkipEq, a: [6]uint64{uint64(a.fd), 2}, step: st})
		p.sys(st, ctlArgR<<0, unix.SYS_DUP2, 0, fd)
		p.sys(st, ctlArgR<<0, unix.SYS_CLOSE, 0)
	case actDup2:
		if a.fd == a.newfd {
			// dup2(fd, fd) passes fd on: clear FD_CLOEXEC (Austin Group #411).
			p.sys(st, 0, unix.SYS_FCNTL, fd, unix.F_GETFD)
			p.sys(st, 0, unix.SYS_FCNTL, fd, unix.F_SETFD, 0)
		} else {
			p.sys(st, 0, unix.SYS_DUP2, fd, uintptr(a.newfd))
		}
	case actChdir:
		path, err := p.cstr(a.path)
		if err != nil {
			return err
		}
		p.sys(st, 0, unix.SYS_CHDIR, path)
	case actFchdir:
		p.sys(st, 0, unix.SYS_FCHDIR, fd)
	case actClosefrom:
		p.add(op{kind: opCloseRange, a: [6]uint64{uint64(a.fd), nofile}, step: st})
	case actTcsetpgrp:
		// The group is the SETPGROUP one when given, else the child's own.
		if attr.flags&FlagSetPgroup != 0 && attr.pgroup != 0 {
			p.sys(st, 0, unix.SYS_IOCTL, fd, unix.TIOCSPGRP, p.word(uint64(attr.pgroup)))
		} else {
			p.sys(st, ctlSave, unix.SYS_GETPGID, 0)
			p.sys(st, 0, unix.SYS_IOCTL, fd, unix.TIOCSPGRP, uintptr(unsafe.Pointer(&p.st.r)))
		}
	default:
		return unix.EINVAL
	}
	return nil
}

// compileExec appends the exec: one execve, or glibc's PATH search.
func compileExec(p *program, req *request, argv, envv uintptr) error {
	fail := func(e unix.Errno) error { return &Error{Path: req.path, Step: "exec", Errno: e} }
	if !req.search || strings.IndexByte(req.path, '/') >= 0 {
		path, err := p.cstr(req.path)
		if err != nil {
			return fail(unix.EINVAL)
		}
		p.add(op{kind: opExec, a: [6]uint64{uint64(path), uint64(argv), uint64(envv)}, step: p.step("exec")})
		return nil
	}
	file := req.path
	if file == "" {
		return fail(unix.ENOENT)
	}
	// The caller's PATH, not envp's; glibc's default when unset.
	search, ok := os.LookupEnv("PATH")
	if !ok {
		search = defaultPath
	}
	// Like glibc, an entry as long as the (capped) PATH is skipped: that
	// only happens when PATH is longer than PATH_MAX.
	pathLen := min(len(search), pathMax-1) + 1
	st := p.step("exec (PATH search)")
	for _, dir := range strings.Split(search, ":") {
		if len(dir) >= pathLen {
			continue
		}
		cand := file // an empty entry means the working directory
		if dir != "" {
			cand = dir + "/" + file
		}
		c, err := p.cstr(cand)
		if err != nil {
			return fail(unix.EINVAL)
		}
		p.add(op{kind: opExec, a: [6]uint64{uint64(c), uint64(argv), uint64(envv)}, ctl: ctlSearch, step: st})
	}
	p.add(op{kind: opSearchEnd, step: st})
	return nil
}

// atFDCWD is AT_FDCWD as a system call argument.
var atFDCWD = ^uintptr(99) // -100
