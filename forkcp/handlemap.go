package forkcp

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// MaxNumber is the largest number a HandleMap accepts, one less than the
// kernel's default nr_open (the ceiling of RLIMIT_NOFILE).
const MaxNumber = 1<<20 - 1

// HandleMap maps numbers to Handles, like a process's descriptor table. It
// is safe for concurrent use. Numbers are the map's own: in the process
// that built the map they need not equal the handles' OS descriptors; in a
// process restored by Fork they do.
//
// Like the kernel's table it is an array indexed by number, so numbers
// should stay dense, as Install and Dup keep them.
//
// The zero value is an empty map ready to use.
type HandleMap struct {
	mu    sync.Mutex
	table []*Handle // indexed by number; nil where free
	top   int       // table[top:] holds no handle
	next  int       // every number below next is in use
	count atomic.Int64
	limit int // numbers must be below limit; 0 means MaxNumber+1
}

// NewHandleMap returns an empty map.
func NewHandleMap() *HandleMap { return &HandleMap{} }

func (m *HandleMap) maxNumbers() int {
	if m.limit > 0 {
		return m.limit
	}
	return MaxNumber + 1
}

func (m *HandleMap) checkNumber(op string, n int) error {
	if n < 0 || n >= m.maxNumbers() {
		return &NumberError{Op: op, Number: n, Err: ErrNumberRange}
	}
	return nil
}

// Len returns the number of entries.
func (m *HandleMap) Len() int { return int(m.count.Load()) }

// Install installs h at the lowest free number, as open(2) would, and
// returns that number. The map takes over the caller's reference.
func (m *HandleMap) Install(h *Handle) (int, error) {
	if h == nil {
		return -1, errors.New("forkcp: install: nil Handle")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.next
	for n < m.top && m.table[n] != nil {
		n++
	}
	if n >= m.maxNumbers() {
		return -1, &NumberError{Op: "install", Number: n, Err: ErrMapFull}
	}
	m.set(n, h)
	m.next = n + 1
	return n, nil
}

// InstallAt installs h at number n, replacing what was there as dup2(2)
// does: the map drops its reference to the replaced handle. The map takes
// over the caller's reference to h.
func (m *HandleMap) InstallAt(n int, h *Handle) error {
	if h == nil {
		return errors.New("forkcp: install: nil Handle")
	}
	if err := m.checkNumber("install", n); err != nil {
		return err
	}
	m.mu.Lock()
	old := m.set(n, h)
	m.mu.Unlock()
	if old != nil {
		_ = old.Release() // dup2 ignores the close of the replaced descriptor too
	}
	return nil
}

// Close removes the entry at n and drops the map's reference. The
// descriptor is closed if nothing else (a snapshot, a Lookup caller)
// holds the handle; close's error is returned in that case.
func (m *HandleMap) Close(n int) error {
	m.mu.Lock()
	h := m.remove(n)
	m.mu.Unlock()
	if h == nil {
		return &NumberError{Op: "close", Number: n, Err: ErrBadNumber}
	}
	return h.Release()
}

// CloseAll removes every entry, as Close does for each.
func (m *HandleMap) CloseAll() error {
	m.mu.Lock()
	var hs []*Handle
	for _, h := range m.table[:m.top] {
		if h != nil {
			hs = append(hs, h)
		}
	}
	m.table, m.top, m.next = nil, 0, 0
	m.count.Store(0)
	m.mu.Unlock()
	return releaseAll(hs)
}

// Lookup returns the handle at n with a reference taken for the caller,
// who must Release it.
func (m *HandleMap) Lookup(n int) (*Handle, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n < 0 || n >= m.top || m.table[n] == nil {
		return nil, &NumberError{Op: "lookup", Number: n, Err: ErrBadNumber}
	}
	h := m.table[n]
	h.refs.Add(1) // the map's reference keeps the count above zero
	return h, nil
}

// SetFlags sets the recorded descriptor flags of the handle at n, as
// fcntl(F_SETFD) does. A Handle installed at several numbers shares them.
func (m *HandleMap) SetFlags(n int, f Flags) error {
	if f&^knownFlags != 0 {
		return fmt.Errorf("forkcp: set flags %d: unknown flags %#x", n, uint32(f&^knownFlags))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if n < 0 || n >= m.top || m.table[n] == nil {
		return &NumberError{Op: "set flags", Number: n, Err: ErrBadNumber}
	}
	m.table[n].flags.Store(uint32(f))
	return nil
}

// Dup duplicates the handle at n onto the lowest free number and returns
// it. As with dup(2) the copy is a new descriptor on the same open file,
// without FlagCloexec.
func (m *HandleMap) Dup(n int) (int, error) {
	nh, err := m.dupOf("dup", n)
	if err != nil {
		return -1, err
	}
	to, err := m.Install(nh)
	if err != nil {
		_ = nh.Release()
		return -1, err
	}
	return to, nil
}

// Dup2 duplicates the handle at from onto number to, replacing what was
// there, as dup2(2) does. Dup2(n, n) only checks that n is in use.
func (m *HandleMap) Dup2(from, to int) error {
	if err := m.checkNumber("dup2", to); err != nil {
		return err
	}
	if from == to {
		h, err := m.Lookup(from)
		if err != nil {
			return &NumberError{Op: "dup2", Number: from, Err: ErrBadNumber}
		}
		return h.Release()
	}
	nh, err := m.dupOf("dup2", from)
	if err != nil {
		return err
	}
	return m.InstallAt(to, nh)
}

// dupOf makes a new Handle on a duplicate of the descriptor at n. The
// system call runs outside the map lock.
func (m *HandleMap) dupOf(op string, n int) (*Handle, error) {
	h, err := m.Lookup(n)
	if err != nil {
		return nil, &NumberError{Op: op, Number: n, Err: ErrBadNumber}
	}
	defer h.Release()
	nfd, err := unix.FcntlInt(uintptr(h.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("forkcp: %s %d: %w", op, n, err)
	}
	nh := newHandle(nfd, h.kind, h.Flags()&^FlagCloexec, h.desc)
	nh.osCloexec = true
	return nh, nil
}

// set installs h at n under the lock and returns the replaced handle.
func (m *HandleMap) set(n int, h *Handle) *Handle {
	if n >= len(m.table) {
		size := max(n+1, 2*len(m.table), 64)
		size = min(size, m.maxNumbers())
		t := make([]*Handle, size)
		copy(t, m.table[:m.top])
		m.table = t
	}
	old := m.table[n]
	m.table[n] = h
	if old == nil {
		m.count.Add(1)
	}
	if n >= m.top {
		m.top = n + 1
	}
	return old
}

// remove clears n under the lock and returns the handle that was there.
func (m *HandleMap) remove(n int) *Handle {
	if n < 0 || n >= m.top || m.table[n] == nil {
		return nil
	}
	h := m.table[n]
	m.table[n] = nil
	m.count.Add(-1)
	if n < m.next {
		m.next = n
	}
	for m.top > 0 && m.table[m.top-1] == nil {
		m.top--
	}
	return h
}
