package spawn

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Flag selects which Attr settings a spawn applies. The values are glibc's
// POSIX_SPAWN_* values.
type Flag uint16

const (
	FlagResetIDs      Flag = 0x01  // POSIX_SPAWN_RESETIDS: effective ids := real ids
	FlagSetPgroup     Flag = 0x02  // POSIX_SPAWN_SETPGROUP: setpgid(0, Pgroup)
	FlagSetSigDefault Flag = 0x04  // POSIX_SPAWN_SETSIGDEF: listed signals to SIG_DFL
	FlagSetSigMask    Flag = 0x08  // POSIX_SPAWN_SETSIGMASK: child's mask := SigMask
	FlagSetSchedParam Flag = 0x10  // POSIX_SPAWN_SETSCHEDPARAM: sched_setparam
	FlagSetScheduler  Flag = 0x20  // POSIX_SPAWN_SETSCHEDULER: sched_setscheduler
	FlagUseVfork      Flag = 0x40  // POSIX_SPAWN_USEVFORK: accepted, no effect
	FlagSetSid        Flag = 0x80  // POSIX_SPAWN_SETSID: setsid()
	FlagSetCgroup     Flag = 0x100 // POSIX_SPAWN_SETCGROUP: CLONE_INTO_CGROUP

	allFlags = FlagResetIDs | FlagSetPgroup | FlagSetSigDefault | FlagSetSigMask |
		FlagSetSchedParam | FlagSetScheduler | FlagUseVfork | FlagSetSid | FlagSetCgroup
)

// SignalSet is a set of the kernel's signals 1..64.
type SignalSet uint64

// AllSignals holds every signal.
const AllSignals = ^SignalSet(0)

// NewSignalSet returns the set of the given signals.
func NewSignalSet(sigs ...syscall.Signal) SignalSet {
	var s SignalSet
	for _, sig := range sigs {
		s = s.Add(sig)
	}
	return s
}

// Add returns s with sig added. Signals outside 1..64 are ignored.
func (s SignalSet) Add(sig syscall.Signal) SignalSet {
	if sig < 1 || sig > 64 {
		return s
	}
	return s | 1<<(uint(sig)-1)
}

// Has reports whether sig is in s.
func (s SignalSet) Has(sig syscall.Signal) bool {
	return sig >= 1 && sig <= 64 && s&(1<<(uint(sig)-1)) != 0
}

// Attr holds the process attributes of a spawn, like posix_spawnattr_t.
// The zero value applies nothing: the child inherits what posix_spawn says
// it inherits. Settings take effect only when their Flag is set.
type Attr struct {
	flags      Flag
	pgroup     int
	sigDefault SignalSet
	sigMask    SignalSet
	policy     int
	priority   int
	cgroupFD   int
	hasCgroup  bool
}

// SetFlags sets the flags. Unknown bits are rejected with EINVAL.
func (a *Attr) SetFlags(f Flag) error {
	if f&^allFlags != 0 {
		return unix.EINVAL
	}
	a.flags = f
	return nil
}

// Flags returns the flags.
func (a *Attr) Flags() Flag { return a.flags }

// SetPgroup sets the process group FlagSetPgroup joins; 0 means a new group
// led by the child. As in glibc any value is accepted here; setpgid in the
// child decides (a negative group fails the spawn with EINVAL).
func (a *Attr) SetPgroup(pgid int) error {
	a.pgroup = pgid
	return nil
}

// SetSigDefault sets the signals FlagSetSigDefault resets to SIG_DFL, on top
// of the reset of every caught signal that always happens.
func (a *Attr) SetSigDefault(s SignalSet) { a.sigDefault = s }

// SetSigMask sets the signal mask FlagSetSigMask gives the child. Without
// the flag the child starts with the calling thread's mask.
func (a *Attr) SetSigMask(s SignalSet) { a.sigMask = s }

// SetSchedPolicy sets the policy for FlagSetScheduler. As in glibc only
// SCHED_OTHER, SCHED_FIFO and SCHED_RR are accepted; others get EINVAL.
func (a *Attr) SetSchedPolicy(policy int) error {
	switch policy {
	case schedOther, schedFIFO, schedRR:
		a.policy = policy
		return nil
	}
	return unix.EINVAL
}

// SetSchedPriority sets sched_param.sched_priority for FlagSetSchedParam and
// FlagSetScheduler.
func (a *Attr) SetSchedPriority(priority int) { a.priority = priority }

// SetCgroup sets the cgroup v2 directory descriptor FlagSetCgroup places
// the child into (CLONE_INTO_CGROUP). It needs clone3: where clone3 is
// refused the spawn fails with EOPNOTSUPP.
func (a *Attr) SetCgroup(fd int) error {
	if fd < 0 {
		return unix.EBADF
	}
	a.cgroupFD = fd
	a.hasCgroup = true
	return nil
}

// Scheduling policies (sched.h).
const (
	schedOther = 0
	schedFIFO  = 1
	schedRR    = 2
)
