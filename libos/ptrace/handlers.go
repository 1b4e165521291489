package ptrace

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/forkless/forkless/internal/trace"
	"golang.org/x/sys/unix"
)

const pathMax = 4096

// forkFlags are the clone flags besides the exit signal that glibc's
// fork passes (and the pidfd a fork may ask for): a clone with only these
// is recorded as via "fork".
const forkFlags = unix.CLONE_CHILD_SETTID | unix.CLONE_CHILD_CLEARTID |
	unix.CLONE_PARENT_SETTID | unix.CLONE_PIDFD

// cloneFlags returns the clone flags (exit signal included) of the
// creation call th is in, from its registers at a seccomp or event stop.
func cloneFlags(tid int, regs *unix.PtraceRegs) (uint64, bool) {
	switch regs.Orig_rax {
	case sysFork:
		return uint64(unix.SIGCHLD), true
	case sysVfork:
		return unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD), true
	case sysClone:
		return regs.Rdi, true
	case sysClone3:
		// struct clone_args: flags at 0, exit_signal at 32.
		flags, ok := readU64(tid, regs.Rdi)
		if !ok {
			return 0, false
		}
		sig, _ := readU64(tid, regs.Rdi+32)
		return flags | sig&0xff, true
	}
	return 0, false
}

// classify names a process creation: vforkish is true for a child that
// shares memory with a parent blocked until it execs or exits.
func classify(nr uint64, flags uint64) (via string, vforkish bool) {
	const vm = unix.CLONE_VM | unix.CLONE_VFORK
	switch {
	case nr == sysVfork || flags&vm == vm:
		return trace.ViaVfork, true
	case nr == sysFork:
		return trace.ViaFork, false
	case flags&0xff == uint64(unix.SIGCHLD) && flags&^(0xff|forkFlags) == 0:
		return trace.ViaFork, false
	}
	return trace.ViaClone, false
}

func (t *Tracer) failSyscall(th *thread, regs *unix.PtraceRegs, errno unix.Errno) {
	regs.Orig_rax = math.MaxUint64 // skip the call
	regs.Rax = uint64(-int64(errno))
	unix.PtraceSetRegs(th.tid, regs)
}

// onSeccomp handles a seccomp stop: one of the calls the filter traces.
func (t *Tracer) onSeccomp(th *thread) {
	var regs unix.PtraceRegs
	if err := unix.PtraceGetRegs(th.tid, &regs); err != nil {
		return // killed meanwhile
	}
	switch regs.Orig_rax {
	case sysClone, sysClone3, sysFork, sysVfork:
		t.onCreate(th, &regs)
	case sysExecve, sysExecveat:
		t.onExecEntry(th, &regs)
	case sysPtrace:
		t.onPtrace(th, &regs)
	default:
		t.resume(th, 0)
	}
}

// onCreate handles the entry of a clone, clone3, fork or vfork.
func (t *Tracer) onCreate(th *thread, regs *unix.PtraceRegs) {
	flags, ok := cloneFlags(th.tid, regs)
	if !ok || flags&unix.CLONE_THREAD != 0 {
		t.resume(th, 0) // a thread (or bad clone_args: the kernel fails it)
		return
	}
	p := th.p
	via, vforkish := classify(regs.Orig_rax, flags)
	if !t.rep.Admit(p.pid) {
		t.failSyscall(th, regs, unix.EAGAIN)
		ev := trace.Event{PID: p.pid, PPID: p.ppid, TID: th.tid, Event: trace.EventFork, Via: via,
			Errno: int(unix.EAGAIN), Policy: trace.PolicyMaxProcs}
		if vforkish {
			ev.Event = trace.EventSpawn
		}
		t.record(ev) // no reservation was made: nothing to settle
		t.resume(th, 0)
		return
	}
	pd := &pending{kind: kCreate, start: time.Now(), flags: flags, via: via, vforkish: vforkish,
		parent: p.pid, ptid: th.tid}
	th.pend = pd
	if flags&unix.CLONE_VM == 0 {
		// A real fork: the handle table is copied. Stop every other
		// thread first, so that none changes the table while the snapshot
		// is taken and the kernel copies it.
		f := &freeze{forker: th, waiting: map[*thread]bool{}}
		p.freeze = f
		for _, o := range p.threads {
			if o == th || o.deferred != nil {
				continue
			}
			if err := unix.PtraceInterrupt(o.tid); err == nil {
				f.waiting[o] = true
			}
		}
		t.freezeProgress(p)
		return
	}
	t.resume(th, 0)
}

// freezeProgress lets the fork run once every other thread has stopped.
func (t *Tracer) freezeProgress(p *proc) {
	f := p.freeze
	if f == nil || f.ready || len(f.waiting) > 0 {
		return
	}
	f.ready = true
	pd := f.forker.pend
	pd.fds, pd.fdsTrunc = traceFDs(listFDs(p.pid))
	pd.nthreads = len(p.threads)
	t.resume(f.forker, 0)
}

// unfreeze resumes the threads held for a fork, handling the stops they
// reported meanwhile.
func (t *Tracer) unfreeze(p *proc) {
	p.freeze = nil
	held := make([]*thread, 0, len(p.threads))
	for _, o := range p.threads {
		if o.deferred != nil {
			held = append(held, o)
		}
	}
	slices.SortFunc(held, func(a, b *thread) int { return a.tid - b.tid })
	for _, o := range held {
		if p.freeze != nil {
			return // a held stop started another fork: the rest stay held
		}
		if t.threads[o.tid] != o || o.deferred == nil {
			continue
		}
		ws := *o.deferred
		o.deferred = nil
		if int(ws)>>16 == unix.PTRACE_EVENT_STOP && ws.StopSignal() == unix.SIGTRAP {
			t.resume(o, 0) // the interrupt that froze it
			continue
		}
		t.dispatch(o, ws)
	}
}

// onNew handles PTRACE_EVENT_FORK, _VFORK and _CLONE in the creator: the
// creation succeeded. Resuming with PTRACE_CONT drops the syscall-exit
// stop asked for at the entry, which only a failed creation reaches.
func (t *Tracer) onNew(th *thread) {
	msg, err := unix.PtraceGetEventMsg(th.tid)
	if err != nil {
		return
	}
	child := int(msg)
	p := th.p
	pd := th.pend
	if pd != nil && pd.kind != kCreate {
		pd = nil
	}
	var flags, nr uint64
	if pd != nil {
		flags = pd.flags
	} else {
		var regs unix.PtraceRegs
		if err := unix.PtraceGetRegs(th.tid, &regs); err != nil {
			return
		}
		flags, _ = cloneFlags(th.tid, &regs)
		nr = regs.Orig_rax
	}
	if flags&unix.CLONE_THREAD != 0 {
		t.addThread(p, child)
		t.releaseNewborn(child)
		t.resume(th, 0)
		return
	}
	ppid := p.pid
	if flags&unix.CLONE_PARENT != 0 {
		ppid = p.ppid
	}
	c := t.addProc(child, ppid)
	t.addThread(c, child)
	switch {
	case pd == nil:
		// A creation that did not pass the filter (an adopted process
		// before it installed it): recorded without admission.
		via, _ := classify(nr, flags)
		t.record(trace.Event{PID: p.pid, PPID: p.ppid, TID: th.tid, Event: trace.EventFork, Via: via, Child: child})
	case pd.vforkish:
		// Recorded when the child execs (a spawn) or exits (a fork via
		// vfork).
		c.vfork = pd
		th.pend = nil
	default:
		th.pend = nil
		t.forkDone(th, pd, child, 0)
	}
	t.releaseNewborn(child)
	unix.PtraceCont(th.tid, 0)
}

// forkDone records a real fork (its child, or errno when it failed) with
// the snapshot taken for it, settles its admission and resumes the threads
// frozen for it: the kernel has copied the table.
func (t *Tracer) forkDone(th *thread, pd *pending, child, errno int) {
	ev := trace.Event{PID: pd.parent, PPID: t.ppidOf(pd.parent), TID: pd.ptid, Event: trace.EventFork, Via: pd.via,
		Child: child, Errno: errno, DurUS: time.Since(pd.start).Microseconds(), Threads: pd.nthreads}
	if errno == 0 {
		ev.FDs, ev.FDsTruncated = pd.fds, pd.fdsTrunc
	}
	t.record(ev)
	t.rep.Settle(pd.parent)
	if f := th.p.freeze; f != nil && f.forker == th {
		t.unfreeze(th.p)
	}
}

// releaseNewborn handles the first stop of a new thread that arrived
// before its creator's event.
func (t *Tracer) releaseNewborn(tid int) {
	if ws, ok := t.newborn[tid]; ok {
		delete(t.newborn, tid)
		t.handle(tid, ws)
	}
}

// onSyscallStop handles the syscall stops the tracer asked for.
func (t *Tracer) onSyscallStop(th *thread) {
	pd := th.pend
	if pd == nil {
		unix.PtraceCont(th.tid, 0)
		return
	}
	var regs unix.PtraceRegs
	if err := unix.PtraceGetRegs(th.tid, &regs); err != nil {
		return
	}
	ret := int64(regs.Rax)
	switch pd.kind {
	case kInject:
		if pd.atEntry {
			pd.atEntry = false
			unix.PtraceSyscall(th.tid, 0)
			return
		}
		t.injectNext(th)
		return
	case kCreate:
		th.pend = nil
		if pd.vforkish {
			if ret < 0 {
				t.record(trace.Event{PID: pd.parent, PPID: t.ppidOf(pd.parent), TID: pd.ptid,
					Event: trace.EventSpawn, Via: trace.ViaVfork, Errno: int(-ret),
					DurUS: time.Since(pd.start).Microseconds()})
				t.rep.Settle(pd.parent)
			}
		} else if ret < 0 {
			t.forkDone(th, pd, 0, int(-ret))
		} else {
			t.forkDone(th, pd, int(ret), 0)
		}
	case kExec:
		th.pend = nil
		th.reexec = false
		t.resend(th, pd)
		if ret < 0 {
			ev := pd.ev
			ev.Errno = int(-ret)
			ev.FDs, ev.FDsTruncated, ev.StrictClosed = nil, false, 0
			if c := pd.spawnFor; c != nil {
				ev.DurUS = time.Since(c.start).Microseconds()
			}
			if !pd.silent {
				t.record(ev)
			}
		}
	}
	unix.PtraceCont(th.tid, 0)
}

// onExecEntry handles the entry of execve or execveat: policy, strict
// inheritance, and the attempt line.
func (t *Tracer) onExecEntry(th *thread, regs *unix.PtraceRegs) {
	p := th.p
	if th.reexec {
		// The exec again, after the injected close_range calls.
		th.reexec = false
		if pd := th.pend; pd != nil && pd.kind == kExec {
			t.record(pd.ev)
			t.resume(th, 0)
			return
		}
	}
	var pathAddr, argvAddr uint64
	dirfd, flags := unix.AT_FDCWD, 0
	if regs.Orig_rax == sysExecve {
		pathAddr, argvAddr = regs.Rdi, regs.Rsi
	} else {
		dirfd, pathAddr, argvAddr, flags = int(int32(regs.Rdi)), regs.Rsi, regs.Rdx, int(regs.R8)
	}
	pb, _, ok := readString(th.tid, pathAddr, pathMax)
	if !ok && (regs.Orig_rax == sysExecve || flags&unix.AT_EMPTY_PATH == 0) {
		t.resume(th, 0) // a bad path: the kernel fails the call
		return
	}
	named := string(pb)
	abs := resolve(th.tid, dirfd, named)
	path := named
	if dirfd != unix.AT_FDCWD && (named == "" || named[0] != '/') {
		path = abs
	}
	argv, trunc := readArgv(th.tid, argvAddr)
	ev := trace.Event{PID: p.pid, PPID: p.ppid, TID: th.tid, Event: trace.EventExec, Via: trace.ViaExec,
		Path: utf8Bytes([]byte(path)), Argv: argv, ArgvTruncated: trunc}
	pd := &pending{kind: kExec}
	if c := p.vfork; c != nil {
		// A vfork-style child's exec is its parent's spawn.
		ev.PID, ev.PPID, ev.TID, ev.Event, ev.Via = c.parent, t.ppidOf(c.parent), c.ptid, trace.EventSpawn, trace.ViaVfork
		ev.Child = p.pid
		ev.DurUS = time.Since(c.start).Microseconds()
		pd.spawnFor = c
		c.attempted = true
	}
	if !t.pol.ExecAllowed(abs) {
		ev.Errno, ev.Policy = int(unix.EACCES), trace.PolicyExecDeny
		t.record(ev)
		t.failSyscall(th, regs, unix.EACCES)
		unix.PtraceCont(th.tid, 0)
		return
	}
	if p.adopted {
		// The library has traced this exec and applied the descriptor
		// policy, keeping file-action targets that only it knows.
		p.adopted = false
		pd.ev, pd.silent = ev, true
		th.pend = pd
		t.resume(th, 0)
		return
	}
	var inherit []fdInfo
	var closeFDs []int
	for _, f := range listFDs(p.pid) {
		switch {
		case f.cloexec():
		case t.pol.Strict() && !t.pol.Kept(f.fd) && !fileActionTarget(p, f.fd):
			closeFDs = append(closeFDs, f.fd)
		default:
			inherit = append(inherit, f)
		}
	}
	ev.FDs, ev.FDsTruncated = traceFDs(inherit)
	ev.StrictClosed = len(closeFDs)
	pd.ev = ev
	th.pend = pd
	if len(closeFDs) > 0 {
		pd.kind = kInject
		pd.saved = *regs
		pd.ranges = closeRanges(closeFDs, inherit)
		r := pd.ranges[0]
		pd.ranges = pd.ranges[1:]
		in := *regs
		in.Orig_rax, in.Rdi, in.Rsi, in.Rdx = unix.SYS_CLOSE_RANGE, uint64(r[0]), uint64(r[1]), unix.CLOSE_RANGE_CLOEXEC
		unix.PtraceSetRegs(th.tid, &in)
		unix.PtraceSyscall(th.tid, 0) // next: the exit of close_range
		return
	}
	t.record(ev)
	t.resume(th, 0)
}

// closeRanges covers the descriptors to close with as few ranges as
// possible that contain no inherited descriptor; the last range runs to
// the end of the table when nothing inherited lies above it.
func closeRanges(closeFDs []int, inherit []fdInfo) [][2]uint {
	slices.Sort(closeFDs)
	blocked := func(lo, hi int) bool {
		for _, f := range inherit {
			if f.fd > lo && f.fd < hi {
				return true
			}
		}
		return false
	}
	var out [][2]uint
	for _, fd := range closeFDs {
		if n := len(out); n > 0 && !blocked(int(out[n-1][1]), fd) {
			out[n-1][1] = uint(fd)
			continue
		}
		out = append(out, [2]uint{uint(fd), uint(fd)})
	}
	last := &out[len(out)-1]
	if !blocked(int(last[1]), math.MaxInt32) {
		last[1] = math.MaxUint32
	}
	return out
}

// injectNext runs at the exit of an injected close_range: the next range,
// or the exec again (which meets the filter again: th.reexec).
func (t *Tracer) injectNext(th *thread) {
	pd := th.pend
	in := pd.saved
	in.Rip -= 2 // the syscall instruction
	if len(pd.ranges) > 0 {
		r := pd.ranges[0]
		pd.ranges = pd.ranges[1:]
		in.Rax, in.Orig_rax, in.Rdi, in.Rsi, in.Rdx = unix.SYS_CLOSE_RANGE, unix.SYS_CLOSE_RANGE, uint64(r[0]), uint64(r[1]), unix.CLOSE_RANGE_CLOEXEC
		pd.atEntry = true
		unix.PtraceSetRegs(th.tid, &in)
		unix.PtraceSyscall(th.tid, 0)
		return
	}
	in.Rax = pd.saved.Orig_rax
	unix.PtraceSetRegs(th.tid, &in)
	pd.kind = kExec
	th.reexec = true
	unix.PtraceCont(th.tid, 0)
}

// onExec handles PTRACE_EVENT_EXEC: the exec succeeded.
func (t *Tracer) onExec(th *thread) {
	p := th.p
	if msg, err := unix.PtraceGetEventMsg(th.tid); err == nil && int(msg) != th.tid {
		// A non-leader thread exec'd and took the leader's id.
		if ft := t.threads[int(msg)]; ft != nil {
			delete(t.threads, ft.tid)
			delete(p.threads, ft.tid)
			ft.tid = th.tid
			t.threads[th.tid] = ft
			p.threads[th.tid] = ft
			th = ft
		}
	}
	// Every other thread is gone.
	for tid, o := range p.threads {
		if o != th {
			delete(p.threads, tid)
			delete(t.threads, tid)
		}
	}
	pd := th.pend
	th.pend, th.reexec = nil, false
	if pd != nil {
		p.stub = false
		t.resend(th, pd)
	}
	if pd == nil && p.stub {
		unix.PtraceCont(th.tid, 0) // the stub's own exec, seen by an early seize
		return
	}
	if pd == nil {
		// An exec that did not pass the filter (an adopted process before
		// it installed it).
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(p.pid) + "/exe")
		t.record(trace.Event{PID: p.pid, PPID: p.ppid, TID: th.tid, Event: trace.EventExec, Via: trace.ViaExec,
			Path: utf8Bytes([]byte(exe))})
	}
	if c := p.vfork; c != nil {
		p.vfork = nil
		t.rep.Settle(c.parent)
	}
	unix.PtraceCont(th.tid, 0)
}

// onPtrace fails a traced program's ptrace with EPERM, saying why once per
// process on the program's standard error.
func (t *Tracer) onPtrace(th *thread, regs *unix.PtraceRegs) {
	p := th.p
	if !p.warned {
		p.warned = true
		t.message(p.pid, fmt.Sprintf("forkless: pid %d (%s) called ptrace: processes on the ptrace platform cannot trace others\n",
			p.pid, comm(p.pid)))
	}
	t.failSyscall(th, regs, unix.EPERM)
	unix.PtraceCont(th.tid, 0)
}

// message writes msg to pid's standard error (the same open file, through
// pidfd_getfd), or to forkless's own when that is not possible.
func (t *Tracer) message(pid int, msg string) {
	if pfd, err := unix.PidfdOpen(pid, 0); err == nil {
		fd, err := unix.PidfdGetfd(pfd, 2, 0)
		unix.Close(pfd)
		if err == nil {
			_, err = unix.Write(fd, []byte(msg))
			unix.Close(fd)
			if err == nil {
				return
			}
		}
	}
	fmt.Fprint(os.Stderr, msg)
}

// kcmpFile is KCMP_FILE: do two descriptors name one open file description?
const kcmpFile = 0

// fileActionTarget tells whether descriptor fd of p, a vfork-style child
// about to exec, was set up by the child itself (posix_spawn's file
// actions, the dup2 calls of Go's os/exec child): strict inheritance keeps
// those, as the library does. The child's table started as a copy of its
// parent's, and the parent waits in its vfork-style clone, so fd is a
// target if it now names another open file description than the parent's
// fd of the same number (or the parent has none), or the same one with
// close-on-exec cleared (adddup2(fd, fd)). Not a vfork-style child, or
// kcmp unavailable (a kernel without CONFIG_KCMP): not a target.
func fileActionTarget(p *proc, fd int) bool {
	c := p.vfork
	if c == nil {
		return false
	}
	// The creating thread: it waits in the clone, while the parent's leader
	// may have exited (a zombie leader has no table to compare).
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(c.ptid), uintptr(p.pid), kcmpFile, uintptr(fd), uintptr(fd), 0)
	switch {
	case e == unix.EBADF:
		return true // the parent has no such descriptor
	case e != 0:
		return false
	case r != 0:
		return true
	}
	flags, ok := fdFlagsOf(c.ptid, fd)
	return ok && flags&unix.O_CLOEXEC != 0
}
