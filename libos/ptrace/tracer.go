// Package ptrace is the libos ptrace platform: it runs static, non-glibc
// and Go programs (and everything they start) under ptrace plus a seccomp
// filter, so that only process creation, exec and ptrace stop in the
// tracer while every other system call runs natively. See
// docs/design.md, "The ptrace platform".
//
// All ptrace requests and the wait loop run on one locked OS thread. Other
// goroutines (Adopt, Close) queue work for it and wake it through a
// "doorbell": a small traced child (the stub in doorbell mode) that the
// tracer signals with SIGUSR1; its signal-delivery-stop makes the blocked
// wait return, the queue is served, and the doorbell resumes with the
// signal suppressed.
package ptrace

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/forkless/forkless/internal/trace"
	"github.com/forkless/forkless/libos"
	"golang.org/x/sys/unix"
)

// options are the PTRACE_SEIZE options of every traced thread.
// TRACESYSGOOD marks the syscall-exit stops the tracer asks for after a
// process creation or an exec, to learn their result.
const options = unix.PTRACE_O_TRACESECCOMP | unix.PTRACE_O_TRACEFORK |
	unix.PTRACE_O_TRACEVFORK | unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEEXEC |
	unix.PTRACE_O_EXITKILL | unix.PTRACE_O_TRACESYSGOOD

// Spec describes the root of a tree.
type Spec struct {
	Path                  string
	Argv                  []string
	Env                   []string // nil: this process's environment
	Dir                   string
	Stdin, Stdout, Stderr *os.File
	// Traced: start on the ptrace platform (through the stub); false:
	// start plainly (the root is a preload-platform program), but still
	// reap and report it here.
	Traced bool
	// Stub is the executable run as the stub (argv[1] = StubArg); empty:
	// /proc/self/exe.
	Stub string
	// UseCgroupFD starts the root in the cgroup v2 directory CgroupFD
	// (CLONE_INTO_CGROUP), so that it never runs outside the tree's
	// cgroup.
	UseCgroupFD bool
	CgroupFD    int
	// Started, when set, is called on the tracer thread with the root's
	// pid once it exists, before any of its events.
	Started func(pid int)
}

// Tracer traces one tree. Create it with New.
type Tracer struct {
	rep libos.Reporter
	pol libos.Policy

	mu      sync.Mutex
	queue   []func()
	wake    chan struct{}
	looping bool // the tracer thread is in its wait loop
	bell    int  // doorbell pid, 0 when there is none
	closed  bool
	pidfd   int // root's pidfd, -1 when none
	// early holds signals forwarded before root's pidfd exists: root may
	// already run CMD (ForkExec returns after the exec) and must get them.
	early    []unix.Signal
	rootOver bool // root has ended (or never started)
	done     chan struct{}

	// Tracer-thread state.
	quit      bool
	closing   bool
	running   bool
	procs     map[int]*proc
	threads   map[int]*thread
	newborn   map[int]unix.WaitStatus // stops of threads whose creator has not reported them
	root      int
	rootTrace bool
	rootRes   chan runResult
	self      int
}

type runResult struct {
	ws  unix.WaitStatus
	err error
}

// proc is a traced process.
type proc struct {
	pid, ppid int
	threads   map[int]*thread
	vfork     *pending // creation of this vfork-style child, until it execs or exits
	freeze    *freeze  // other threads being stopped for a fork
	warned    bool     // the ptrace message was written
	// adopted: the library of a preloaded process asked for it to be
	// traced for its next exec, which the library itself has traced and
	// put under the policy (strict with its file-action targets kept).
	adopted bool
	// stub: the root's stub, until its exec of the program. The seize can
	// land while the stub's own exec is finishing (ForkExec returns once
	// the exec has closed its pipe), and the exec event that follows is
	// not the program's.
	stub bool
}

// thread is a traced thread.
type thread struct {
	tid      int
	p        *proc
	pend     *pending
	reexec   bool             // the next exec seccomp stop is the re-executed exec after injection
	deferred *unix.WaitStatus // a stop held while the process is frozen
}

// freeze is a fork waiting for the other threads of its process to stop.
type freeze struct {
	forker  *thread
	waiting map[*thread]bool
	ready   bool // all stopped; the fork runs
}

// Kinds of pending work on a thread.
const (
	kCreate = iota + 1 // a process creation, until its creation event (or, failed, its syscall exit)
	kExec              // an exec, until its exec event or failure
	kInject            // close_range calls injected before an exec
)

type pending struct {
	kind  int
	start time.Time

	// kCreate
	flags     uint64
	via       string
	vforkish  bool // CLONE_VM|CLONE_VFORK: the child shares memory until it execs
	attempted bool // the vfork-style child recorded an exec attempt
	parent    int  // creating process and thread
	ptid      int
	fds       []trace.FD // fork snapshot
	fdsTrunc  bool
	nthreads  int

	// kExec, kInject
	ev       trace.Event // the attempt line
	saved    unix.PtraceRegs
	ranges   [][2]uint
	atEntry  bool          // an injected call is about to enter
	heldSigs []unix.Signal // signals that arrived between injected calls
	spawnFor *pending
	silent   bool // the library traced this exec (an adopted process's first)
}

// New returns a tracer reporting to r and enforcing p. Its tracer thread
// starts at once and ends with Close.
func New(r libos.Reporter, p libos.Policy) *Tracer {
	t := &Tracer{
		rep:     r,
		pol:     p,
		wake:    make(chan struct{}, 1),
		pidfd:   -1,
		done:    make(chan struct{}),
		procs:   map[int]*proc{},
		threads: map[int]*thread{},
		newborn: map[int]unix.WaitStatus{},
		self:    os.Getpid(),
	}
	go t.serve()
	return t
}

// Filter returns the seccomp BPF program (struct sock_filter entries)
// that the stub installs (libos.Adopter).
func (t *Tracer) Filter() []byte { return filterBytes() }

var errClosed = errors.New("ptrace: tracer closed")

var _ libos.Adopter = (*Tracer)(nil)

// serve is the tracer thread: it runs queued work until Close.
func (t *Tracer) serve() {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	defer close(t.done)
	for !t.quit {
		<-t.wake
		t.drain()
	}
}

// submit queues f for the tracer thread and wakes it.
func (t *Tracer) submit(f func()) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return errClosed
	}
	t.queue = append(t.queue, f)
	bell, looping := t.bell, t.looping
	t.mu.Unlock()
	if looping && bell > 0 {
		return unix.Tgkill(bell, bell, unix.SIGUSR1)
	}
	select {
	case t.wake <- struct{}{}:
	default:
	}
	return nil
}

func (t *Tracer) drain() {
	for {
		t.mu.Lock()
		q := t.queue
		t.queue = nil
		t.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, f := range q {
			f()
		}
	}
}

// Run starts root and services the whole traced tree; it returns root's
// wait status when root has ended. The tracer goes on serving the rest of
// the tree until Close.
func (t *Tracer) Run(root Spec) (unix.WaitStatus, error) {
	res := make(chan runResult, 1)
	if err := t.submit(func() { t.start(root, res) }); err != nil {
		return 0, err
	}
	r := <-res
	return r.ws, r.err
}

// Signal forwards sig to root. A signal that comes before root is known
// is held and sent as soon as it is.
func (t *Tracer) Signal(sig unix.Signal) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.pidfd >= 0:
		return unix.PidfdSendSignal(t.pidfd, sig, nil, 0)
	case t.rootOver || t.closed:
		return errors.New("ptrace: no root process")
	}
	t.early = append(t.early, sig)
	return nil
}

// Close kills whatever traced processes remain (and root, if it still
// runs), waits for them and stops the tracer thread.
func (t *Tracer) Close() error {
	err := t.submit(func() {
		t.closing = true
		t.killAll()
		if !t.running {
			t.quit = true
		}
	})
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	if err != nil {
		return nil // already closed
	}
	<-t.done
	t.mu.Lock()
	if t.pidfd >= 0 {
		unix.Close(t.pidfd)
		t.pidfd = -1
	}
	t.mu.Unlock()
	return nil
}

// Adopt seizes every thread of pid (libos.Adopter). It returns nil once
// the process is traced. Adopt, Run and Close wait for the tracer thread:
// do not call them from the Reporter's methods, which run on it.
func (t *Tracer) Adopt(pid int) error {
	errc := make(chan error, 1)
	if err := t.submit(func() { errc <- t.adopt(pid) }); err != nil {
		return err
	}
	return <-errc
}

func (t *Tracer) adopt(pid int) error {
	if t.procs[pid] != nil {
		return nil
	}
	if t.closing {
		return errClosed
	}
	ppid := statusField(pid, "PPid")
	if ppid < 0 {
		return fmt.Errorf("ptrace: adopt %d: %w", pid, unix.ESRCH)
	}
	p := t.addProc(pid, ppid)
	p.adopted = true
	if err := t.seizeAll(p, options); err != nil {
		delete(t.procs, pid)
		for tid := range p.threads {
			delete(t.threads, tid)
		}
		return fmt.Errorf("ptrace: adopt %d: %w", pid, err)
	}
	return nil
}

// seize attaches to one thread with the platform's options.
func seize(tid int, opts uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(tid), 0, opts, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func ptraceListen(tid int) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_LISTEN, uintptr(tid), 0, 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// seizeAll seizes every thread of p until a pass over /proc/PID/task finds
// no new one (threads that seized threads create are attached by the
// kernel).
func (t *Tracer) seizeAll(p *proc, opts uintptr) error {
	seen := map[int]bool{}
	for {
		found := false
		for _, tid := range tasks(p.pid) {
			if seen[tid] {
				continue
			}
			seen[tid] = true
			found = true
			if err := seize(tid, opts); err != nil && err != unix.ESRCH {
				if err != unix.EPERM || !t.tracedByUs(tid) {
					if tid == p.pid {
						return err
					}
					continue
				}
			}
			t.addThread(p, tid)
		}
		if !found {
			break
		}
	}
	if len(p.threads) == 0 {
		return unix.ESRCH
	}
	return nil
}

func (t *Tracer) tracedByUs(tid int) bool {
	tp := statusField(tid, "TracerPid")
	return tp == t.self || tp == unix.Gettid()
}

func (t *Tracer) addProc(pid, ppid int) *proc {
	p := &proc{pid: pid, ppid: ppid, threads: map[int]*thread{}}
	t.procs[pid] = p
	return p
}

func (t *Tracer) addThread(p *proc, tid int) *thread {
	if th := t.threads[tid]; th != nil {
		return th
	}
	th := &thread{tid: tid, p: p}
	t.threads[tid] = th
	p.threads[tid] = th
	return th
}

// devNull returns f or /dev/null.
func devNull(f *os.File, flag int) (*os.File, error) {
	if f != nil {
		return f, nil
	}
	return os.OpenFile(os.DevNull, flag, 0)
}

// start runs on the tracer thread: the doorbell, then root, then the loop.
func (t *Tracer) start(spec Spec, res chan runResult) {
	if t.running || t.closing {
		res <- runResult{err: errors.New("ptrace: Run called twice")}
		return
	}
	stub := spec.Stub
	if stub == "" {
		stub = "/proc/self/exe"
	}
	if err := t.startDoorbell(stub); err != nil {
		t.setRootOver()
		res <- runResult{err: fmt.Errorf("ptrace: doorbell: %w", err)}
		return
	}
	pid, err := t.startRoot(spec, stub)
	if err != nil {
		t.mu.Lock()
		bell := t.bell
		t.bell = 0
		t.mu.Unlock()
		unix.Kill(bell, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(bell, &ws, unix.WALL, nil)
		t.setRootOver()
		res <- runResult{err: err}
		return
	}
	if spec.Started != nil {
		spec.Started(pid)
	}
	t.root = pid
	t.rootTrace = spec.Traced
	t.rootRes = res
	t.running = true
	t.loop()
}

func (t *Tracer) startDoorbell(stub string) error {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	pid, err := syscall.ForkExec(stub, []string{stub, StubArg, stubDoorbell}, &syscall.ProcAttr{
		Env:   []string{},
		Files: []uintptr{null.Fd(), null.Fd(), null.Fd()},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return err
	}
	if err := seize(pid, unix.PTRACE_O_EXITKILL); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, 0, nil)
		return err
	}
	t.mu.Lock()
	t.bell = pid
	t.mu.Unlock()
	return nil
}

func (t *Tracer) startRoot(spec Spec, stub string) (int, error) {
	var files []uintptr
	for i, f := range []*os.File{spec.Stdin, spec.Stdout, spec.Stderr} {
		flag := os.O_WRONLY
		if i == 0 {
			flag = os.O_RDONLY
		}
		g, err := devNull(f, flag)
		if err != nil {
			return 0, err
		}
		if g != f {
			defer g.Close()
		}
		files = append(files, g.Fd())
	}
	// Pdeathsig: an untraced root dies with the tracer thread as traced
	// processes do through PTRACE_O_EXITKILL.
	attr := &syscall.ProcAttr{Dir: spec.Dir, Env: spec.Env, Files: files,
		Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, UseCgroupFD: spec.UseCgroupFD, CgroupFD: spec.CgroupFD}}
	if attr.Env == nil {
		attr.Env = os.Environ()
	}
	if !spec.Traced {
		pid, err := syscall.ForkExec(spec.Path, spec.Argv, attr)
		if err != nil {
			return 0, fmt.Errorf("start %s: %w", spec.Path, err)
		}
		t.openPidfd(pid)
		return pid, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	defer w.Close()
	attr.Files = append(attr.Files, r.Fd())
	argv := append([]string{stub, StubArg, stubExec, spec.Path}, spec.Argv...)
	pid, err := syscall.ForkExec(stub, argv, attr)
	if err != nil {
		return 0, fmt.Errorf("start the ptrace stub %s: %w", stub, err)
	}
	p := t.addProc(pid, t.self)
	if err := t.seizeAll(p, options); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, unix.WALL, nil)
		delete(t.procs, pid)
		return 0, fmt.Errorf("ptrace: seize stub: %w", err)
	}
	p.stub = true
	t.openPidfd(pid) // after the seize: an early signal must not kill the stub first
	if _, err := w.Write([]byte{0}); err != nil {
		return 0, err
	}
	return pid, nil
}

func (t *Tracer) openPidfd(pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	t.mu.Lock()
	defer t.mu.Unlock()
	early := t.early
	t.early = nil
	if err != nil {
		// Our unreaped child: its pid cannot be reused yet.
		for _, sig := range early {
			unix.Kill(pid, sig)
		}
		return
	}
	t.pidfd = fd
	for _, sig := range early {
		unix.PidfdSendSignal(fd, sig, nil, 0)
	}
}

// killAll sends SIGKILL to every process the tracer knows.
func (t *Tracer) killAll() {
	for pid := range t.procs {
		unix.Kill(pid, unix.SIGKILL)
	}
	for tid := range t.newborn {
		unix.Kill(tid, unix.SIGKILL)
	}
	if t.root > 0 && !t.rootTrace && t.rootRes != nil {
		unix.Kill(t.root, unix.SIGKILL)
	}
	t.mu.Lock()
	bell := t.bell
	t.mu.Unlock()
	if bell > 0 {
		unix.Kill(bell, unix.SIGKILL)
	}
}

// loop is the wait loop.
func (t *Tracer) loop() {
	t.mu.Lock()
	t.looping = true
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.looping = false
		t.mu.Unlock()
		t.quit = true
	}()
	for {
		t.drain()
		if t.closing && t.nothingLeft() {
			return
		}
		var ws unix.WaitStatus
		tid, err := unix.Wait4(-1, &ws, unix.WALL|unix.WNOTHREAD, nil)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ECHILD {
			if t.closing {
				return
			}
			// Nothing to wait for (cannot happen while the doorbell
			// lives); serve requests until there is.
			t.mu.Lock()
			t.looping = false
			t.mu.Unlock()
			<-t.wake
			t.mu.Lock()
			t.looping = true
			t.mu.Unlock()
			continue
		}
		if err != nil {
			panic("ptrace: wait4: " + err.Error())
		}
		t.handle(tid, ws)
		if t.closing && t.nothingLeft() {
			// Not ECHILD: the thread may have children that are not the
			// tracer's (a process another goroutine started while this OS
			// thread ran it, before it was locked), which it must neither
			// wait for nor reap.
			return
		}
	}
}

// nothingLeft reports whether every process of the tracer's is gone: the
// traced ones, new threads not yet claimed, the doorbell and an untraced
// root.
func (t *Tracer) nothingLeft() bool {
	t.mu.Lock()
	bell := t.bell
	t.mu.Unlock()
	return len(t.procs) == 0 && len(t.newborn) == 0 && bell == 0 && t.rootRes == nil
}

func isStopSignal(sig unix.Signal) bool {
	return sig == unix.SIGSTOP || sig == unix.SIGTSTP || sig == unix.SIGTTIN || sig == unix.SIGTTOU
}

// handle dispatches one wait result.
func (t *Tracer) handle(tid int, ws unix.WaitStatus) {
	t.mu.Lock()
	bell := t.bell
	t.mu.Unlock()
	if tid == bell {
		t.handleBell(tid, ws)
		return
	}
	th := t.threads[tid]
	if th == nil {
		if tid == t.root && !t.rootTrace && (ws.Exited() || ws.Signaled()) {
			// The untraced root is on the preload platform: its exit line,
			// which only its parent (this thread) can write, says so.
			st := int(ws)
			t.rep.Record(trace.Event{V: trace.Version, TsNs: time.Now().UnixNano(), PID: tid, PPID: t.self, TID: tid,
				Event: trace.EventExit, Via: trace.ViaExit, Status: &st})
			t.rootEnded(ws)
			return
		}
		if ws.Stopped() {
			t.newborn[tid] = ws // its creator's event names it later
		} else {
			delete(t.newborn, tid)
		}
		return
	}
	if ws.Exited() || ws.Signaled() {
		t.threadExit(th, ws)
		return
	}
	if !ws.Stopped() {
		return
	}
	if f := th.p.freeze; f != nil && th != f.forker {
		w := ws
		th.deferred = &w
		delete(f.waiting, th)
		t.freezeProgress(th.p)
		return
	}
	t.dispatch(th, ws)
}

func (t *Tracer) handleBell(tid int, ws unix.WaitStatus) {
	switch {
	case ws.Exited() || ws.Signaled():
		t.mu.Lock()
		t.bell = 0
		t.mu.Unlock()
	case ws.Stopped():
		sig := ws.StopSignal()
		ev := int(ws) >> 16
		if sig == unix.SIGUSR1 || ev != 0 || sig == unix.SIGTRAP {
			sig = 0
		}
		if ev == unix.PTRACE_EVENT_STOP && isStopSignal(ws.StopSignal()) {
			ptraceListen(tid)
			return
		}
		unix.PtraceCont(tid, int(sig))
	}
}

// dispatch handles a stop of a traced thread.
func (t *Tracer) dispatch(th *thread, ws unix.WaitStatus) {
	sig := unix.Signal(int(ws)>>8) & 0xff
	ev := int(ws) >> 16
	switch {
	case sig == unix.SIGTRAP|0x80:
		t.onSyscallStop(th)
	case sig == unix.SIGTRAP && ev == unix.PTRACE_EVENT_SECCOMP:
		t.onSeccomp(th)
	case sig == unix.SIGTRAP && (ev == unix.PTRACE_EVENT_FORK || ev == unix.PTRACE_EVENT_VFORK || ev == unix.PTRACE_EVENT_CLONE):
		t.onNew(th)
	case sig == unix.SIGTRAP && ev == unix.PTRACE_EVENT_EXEC:
		t.onExec(th)
	case ev == unix.PTRACE_EVENT_STOP:
		if isStopSignal(sig) {
			// Group stop: stay stopped but let the kernel report it to
			// the real parent and wake on SIGCONT.
			ptraceListen(th.tid)
			return
		}
		t.resume(th, 0) // interrupt, or the first stop of a new thread
	case ev != 0:
		t.resume(th, 0)
	default:
		if pd := th.pend; pd != nil && pd.kind == kInject {
			// Between two injected calls the registers point at the
			// rewound syscall instruction: a handler run now would return
			// into the injected call and past the exec. Hold the signal
			// and send it again once the exec succeeded or failed.
			pd.heldSigs = append(pd.heldSigs, sig)
			unix.PtraceSyscall(th.tid, 0)
			return
		}
		// Signal-delivery-stop: deliver the signal unchanged.
		t.resume(th, int(sig))
	}
}

// resend sends the signals held during an injection to th again.
func (t *Tracer) resend(th *thread, pd *pending) {
	for _, sig := range pd.heldSigs {
		unix.Tgkill(th.p.pid, th.tid, sig)
	}
}

// resume continues th: with PTRACE_SYSCALL while it has a creation or an
// exec whose result the tracer waits for, else PTRACE_CONT.
func (t *Tracer) resume(th *thread, sig int) {
	if th.reexec {
		unix.PtraceCont(th.tid, sig) // no syscall-entry stop before the re-executed exec
		return
	}
	if th.pend != nil && (th.pend.kind == kCreate || th.pend.kind == kExec) {
		unix.PtraceSyscall(th.tid, sig)
		return
	}
	unix.PtraceCont(th.tid, sig)
}

func (t *Tracer) record(ev trace.Event) {
	ev.V = trace.Version
	ev.Platform = trace.PlatformPtrace
	ev.TsNs = time.Now().UnixNano()
	t.rep.Record(ev)
}

func (t *Tracer) ppidOf(pid int) int {
	if p := t.procs[pid]; p != nil {
		return p.ppid
	}
	if pid == t.root {
		return t.self
	}
	if n := statusField(pid, "PPid"); n >= 0 {
		return n
	}
	return 0
}

func (t *Tracer) recordExit(pid, ppid int, ws unix.WaitStatus) {
	st := int(ws)
	t.record(trace.Event{PID: pid, PPID: ppid, TID: pid, Event: trace.EventExit, Via: trace.ViaExit, Status: &st})
}

func (t *Tracer) rootEnded(ws unix.WaitStatus) {
	if t.rootRes != nil {
		t.rootRes <- runResult{ws: ws}
		t.rootRes = nil
	}
	t.setRootOver()
}

// setRootOver ends signal forwarding: root has ended or never started.
func (t *Tracer) setRootOver() {
	t.mu.Lock()
	if t.pidfd >= 0 {
		unix.Close(t.pidfd)
		t.pidfd = -1
	}
	t.rootOver = true
	t.early = nil
	t.mu.Unlock()
}

// threadExit handles the death of a traced thread; the leader's death
// ends the process.
func (t *Tracer) threadExit(th *thread, ws unix.WaitStatus) {
	p := th.p
	delete(t.threads, th.tid)
	delete(p.threads, th.tid)
	if pd := th.pend; pd != nil && pd.kind == kCreate {
		t.rep.Settle(pd.parent) // killed inside the creation
	}
	if f := p.freeze; f != nil {
		delete(f.waiting, th)
		if th == f.forker {
			t.unfreeze(p)
		} else {
			t.freezeProgress(p)
		}
	}
	if th.tid != p.pid {
		return
	}
	t.procEnded(p, ws)
}

// procEnded records the end of p and forgets it.
func (t *Tracer) procEnded(p *proc, ws unix.WaitStatus) {
	for tid := range p.threads {
		delete(t.threads, tid)
	}
	delete(t.procs, p.pid)
	if c := p.vfork; c != nil {
		// A vfork-style child that never exec'd: a fork via vfork, unless
		// its failed exec attempts (spawn failure lines) already told.
		if !c.attempted {
			t.record(trace.Event{PID: c.parent, PPID: t.ppidOf(c.parent), TID: c.ptid,
				Event: trace.EventFork, Via: trace.ViaVfork, Child: p.pid,
				DurUS: time.Since(c.start).Microseconds()})
		}
		p.vfork = nil
		t.rep.Settle(c.parent)
	}
	t.recordExit(p.pid, p.ppid, ws)
	if p.pid == t.root {
		t.rootEnded(ws)
	}
}
