package forkcp

import "sync/atomic"

// Snapshot is a point-in-time copy of a HandleMap that holds a reference
// on every handle it copied.
//
// The invariant: a snapshot stays fully usable after any number of
// concurrent Close, Dup2, InstallAt or Install calls on its map. Each entry
// keeps the number, flags and handle it had at the moment of the copy, and
// each handle's descriptor stays open (the same open file, never EBADF,
// never a reused number) until Release. This is what a checkpoint that
// records descriptors now and sends them later needs.
type Snapshot struct {
	entries  []snapEntry
	released atomic.Bool
}

type snapEntry struct {
	number int
	flags  Flags
	h      *Handle
}

// Snapshot copies the map. The map lock is held for the copy only: one
// pass over the numbers up to the highest in use, recording each entry and
// taking a reference on its handle; that is O(handles) when numbers are
// dense, as Install and Dup keep them. The copy's memory is allocated
// before the lock is taken, and Release takes no lock at all.
func (m *HandleMap) Snapshot() *Snapshot {
	n := m.Len()
	ents := make([]snapEntry, 0, n+n/8+8)
	m.mu.Lock()
	if c := int(m.count.Load()); c > cap(ents) {
		ents = make([]snapEntry, 0, c) // the map grew in between; rare
	}
	for num, h := range m.table[:m.top] {
		if h != nil {
			h.refs.Add(1) // the map's reference keeps the count above zero
			ents = append(ents, snapEntry{number: num, flags: Flags(h.flags.Load()), h: h})
		}
	}
	m.mu.Unlock()
	return &Snapshot{entries: ents}
}

// Len returns the number of entries.
func (s *Snapshot) Len() int { return len(s.entries) }

// Entry returns the i-th entry, in increasing number order, as the stream
// records it.
func (s *Snapshot) Entry(i int) Entry {
	e := s.entries[i]
	return Entry{Number: e.number, Flags: e.flags, Kind: e.h.kind, Description: e.h.desc}
}

// Handle returns the i-th entry's handle. Its descriptor stays open until
// Release; to keep the handle longer, Acquire it.
func (s *Snapshot) Handle(i int) *Handle { return s.entries[i].h }

// Entries returns every entry, in increasing number order.
func (s *Snapshot) Entries() []Entry {
	out := make([]Entry, len(s.entries))
	for i := range s.entries {
		out[i] = s.Entry(i)
	}
	return out
}

// Released reports whether Release was called.
func (s *Snapshot) Released() bool { return s.released.Load() }

// Release drops the snapshot's references. Descriptors whose map entries
// were closed meanwhile are closed now. Calling Release again does
// nothing.
func (s *Snapshot) Release() error {
	if !s.released.CompareAndSwap(false, true) {
		return nil
	}
	var first error
	for _, e := range s.entries {
		if err := e.h.Release(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// fds returns the entries' descriptors in order.
func (s *Snapshot) fds() []int {
	fds := make([]int, len(s.entries))
	for i, e := range s.entries {
		fds[i] = e.h.fd
	}
	return fds
}
