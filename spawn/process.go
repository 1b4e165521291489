package spawn

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

var (
	// ErrReleased is returned by a Process method after Release.
	ErrReleased = errors.New("spawn: process released")
	// ErrWaited is returned by Wait after a successful Wait.
	ErrWaited = errors.New("spawn: process already waited for")
	// ErrFinished is returned by Signal once the process has exited.
	ErrFinished = errors.New("spawn: process already finished")
)

// Process is a started child, held through a pidfd: Signal and Wait address
// exactly this process even after its pid is reused.
type Process struct {
	pid int

	mu       sync.Mutex
	pidfd    int // -1 once closed, or where pidfds are unavailable
	users    int // methods using pidfd right now
	waited   bool
	released bool
}

func newProcess(pid, pidfd int) *Process {
	return &Process{pid: pid, pidfd: pidfd}
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.pid }

// acquire pins the pidfd for one method call.
func (p *Process) acquire() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.released {
		return -1, ErrReleased
	}
	p.users++
	return p.pidfd, nil
}

// drop ends a method call and closes the pidfd once nothing needs it.
func (p *Process) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users--
	if p.users == 0 && (p.waited || p.released) && p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
}

// State is how a process ended.
type State struct {
	Pid    int
	Status unix.WaitStatus
	Rusage unix.Rusage
}

// Exited reports whether the process called exit.
func (s *State) Exited() bool { return s.Status.Exited() }

// ExitCode returns the exit status, or -1 if a signal ended the process.
func (s *State) ExitCode() int {
	if !s.Status.Exited() {
		return -1
	}
	return s.Status.ExitStatus()
}

// Signaled reports whether a signal ended the process.
func (s *State) Signaled() bool { return s.Status.Signaled() }

// Signal returns the signal that ended the process, if any.
func (s *State) Signal() syscall.Signal { return s.Status.Signal() }

// CoreDump reports whether the process dumped core.
func (s *State) CoreDump() bool { return s.Status.CoreDump() }

// Success reports whether the process exited with status 0.
func (s *State) Success() bool { return s.Status.Exited() && s.Status.ExitStatus() == 0 }

func (s *State) String() string {
	switch {
	case s.Status.Exited():
		return fmt.Sprintf("exit status %d", s.Status.ExitStatus())
	case s.Status.Signaled():
		core := ""
		if s.Status.CoreDump() {
			core = " (core dumped)"
		}
		return fmt.Sprintf("signal: %v%s", s.Status.Signal(), core)
	}
	return fmt.Sprintf("status %#x", int(s.Status))
}

// Wait waits for the process to exit, reaps it and returns its full status
// and resource usage. It may be called once.
func (p *Process) Wait() (*State, error) {
	fd, err := p.acquire()
	if err != nil {
		return nil, err
	}
	defer p.drop()
	p.mu.Lock()
	waited := p.waited
	p.mu.Unlock()
	if waited {
		return nil, ErrWaited
	}
	st := &State{Pid: p.pid}
	if fd >= 0 {
		// One waitid on the pidfd reaps exactly this process.
		var info unix.Siginfo
		for {
			err = unix.Waitid(unix.P_PIDFD, fd, &info, unix.WEXITED|unix.WALL, &st.Rusage)
			if err != unix.EINTR {
				break
			}
		}
		st.Status = statusOf(&info)
	} else {
		for {
			_, err = unix.Wait4(p.pid, &st.Status, unix.WALL, &st.Rusage)
			if err != unix.EINTR {
				break
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("spawn: wait %d: %w", p.pid, err)
	}
	p.mu.Lock()
	p.waited = true
	p.mu.Unlock()
	return st, nil
}

// statusOf encodes waitid's siginfo as a wait4 status.
func statusOf(info *unix.Siginfo) unix.WaitStatus {
	// siginfo_t for SIGCHLD: si_code at 8, si_status at 24.
	code := info.Code
	status := *(*int32)(unsafe.Pointer(uintptr(unsafe.Pointer(info)) + 24))
	switch code {
	case cldExited:
		return unix.WaitStatus((status & 0xff) << 8)
	case cldKilled:
		return unix.WaitStatus(status & 0x7f)
	case cldDumped:
		return unix.WaitStatus(status&0x7f | 0x80)
	}
	return unix.WaitStatus(0xffff)
}

// si_code values of SIGCHLD.
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// Signal sends sig to the process with pidfd_send_signal.
func (p *Process) Signal(sig syscall.Signal) error {
	fd, err := p.acquire()
	if err != nil {
		return err
	}
	defer p.drop()
	p.mu.Lock()
	waited := p.waited
	p.mu.Unlock()
	if waited {
		return ErrFinished
	}
	if fd < 0 {
		err = unix.Kill(p.pid, sig)
	} else {
		err = unix.PidfdSendSignal(fd, sig, nil, 0)
	}
	if err == unix.ESRCH {
		return ErrFinished
	}
	return err
}

// Kill sends SIGKILL.
func (p *Process) Kill() error { return p.Signal(unix.SIGKILL) }

// PidFD returns the pidfd, for use with poll or epoll (readable once the
// process has exited), or -1. It stays valid until Wait returns or Release.
func (p *Process) PidFD() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pidfd
}

// Release closes the pidfd without waiting. A process released before it
// was waited for remains a zombie until someone reaps its pid.
func (p *Process) Release() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.released {
		return ErrReleased
	}
	p.released = true
	if p.users == 0 && p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
	return nil
}
