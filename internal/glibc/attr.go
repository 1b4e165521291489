package glibc

import "unsafe"

// sigsetWords is glibc's sigset_t size in 64-bit words: 1024 bits, 128 bytes.
const sigsetWords = 16

// Attr owns a C posix_spawnattr_t. It is not safe for concurrent
// modification.
type Attr struct {
	raw    [42]uint64 // posix_spawnattr_t: 336 bytes on x86_64, 8-aligned
	inited bool
}

// NewAttr returns an attribute object initialised by posix_spawnattr_init.
func NewAttr() (*Attr, error) {
	a := new(Attr)
	if err := symAttrInit.call(uintptr(unsafe.Pointer(&a.raw))); err != nil {
		return nil, err
	}
	a.inited = true
	return a, nil
}

func (a *Attr) ok() error {
	if a == nil || !a.inited {
		return errDestroyed
	}
	return nil
}

// SetFlags calls posix_spawnattr_setflags. glibc rejects unknown bits with
// EINVAL.
func (a *Attr) SetFlags(flags int16) error {
	if err := a.ok(); err != nil {
		return err
	}
	return symAttrSetFlags.call(uintptr(unsafe.Pointer(&a.raw)), uintptr(int64(flags)))
}

// SetPgroup calls posix_spawnattr_setpgroup.
func (a *Attr) SetPgroup(pgid int) error {
	if err := a.ok(); err != nil {
		return err
	}
	return symAttrSetPgroup.call(uintptr(unsafe.Pointer(&a.raw)), uintptr(pgid))
}

// newSigset returns a glibc sigset_t holding set: bit n-1 is signal n.
func newSigset(set uint64) *[sigsetWords]uint64 {
	s := new([sigsetWords]uint64)
	s[0] = set
	return s
}

// SetSigMask calls posix_spawnattr_setsigmask with the signals of set
// (bit n-1 = signal n).
func (a *Attr) SetSigMask(set uint64) error {
	if err := a.ok(); err != nil {
		return err
	}
	s := newSigset(set)
	return symAttrSetSigMask.call(uintptr(unsafe.Pointer(&a.raw)), uintptr(unsafe.Pointer(s)))
}

// SetSigDefault calls posix_spawnattr_setsigdefault with the signals of set
// (bit n-1 = signal n).
func (a *Attr) SetSigDefault(set uint64) error {
	if err := a.ok(); err != nil {
		return err
	}
	s := newSigset(set)
	return symAttrSetSigDefault.call(uintptr(unsafe.Pointer(&a.raw)), uintptr(unsafe.Pointer(s)))
}

// SetSchedPolicy calls posix_spawnattr_setschedpolicy; glibc accepts only
// SCHED_OTHER, SCHED_FIFO and SCHED_RR.
func (a *Attr) SetSchedPolicy(policy int) error {
	if err := a.ok(); err != nil {
		return err
	}
	return symAttrSetSchedPolicy.call(uintptr(unsafe.Pointer(&a.raw)), uintptr(policy))
}

// SetSchedParam calls posix_spawnattr_setschedparam with a struct
// sched_param whose sched_priority is priority.
func (a *Attr) SetSchedParam(priority int) error {
	if err := a.ok(); err != nil {
		return err
	}
	param := new(int32) // struct sched_param { int sched_priority; }
	*param = int32(priority)
	return symAttrSetSchedParam.call(uintptr(unsafe.Pointer(&a.raw)), uintptr(unsafe.Pointer(param)))
}

// Destroy calls posix_spawnattr_destroy. Destroying twice, or a nil Attr,
// does nothing.
func (a *Attr) Destroy() {
	if a.ok() != nil {
		return
	}
	_ = symAttrDestroy.call(uintptr(unsafe.Pointer(&a.raw)))
	a.inited = false
}
