package forkcp

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSnapshotSurvivesMapChanges is the invariant, sequentially: after
// Close, Dup2 and InstallAt on every number it copied, the snapshot still
// has the same numbers on the same open files, and new descriptors cannot
// take over its descriptors' numbers.
func TestSnapshotSurvivesMapChanges(t *testing.T) {
	fdBaseline(t)
	m := NewHandleMap()
	fillMap(t, m, 0, 8)
	require.NoError(t, m.InstallAt(20, mustPipe(t, FlagCloexec)))
	s := m.Snapshot()
	want := s.Entries()
	fds := s.fds()

	require.NoError(t, m.Close(0))
	require.NoError(t, m.Dup2(1, 2))
	require.NoError(t, m.InstallAt(3, mustPipe(t, 0)))
	require.NoError(t, m.SetFlags(4, FlagCloexec))
	require.NoError(t, m.Close(20))
	require.NoError(t, m.CloseAll())
	var fresh []*Handle
	for range 10 {
		h := mustPipe(t, 0) // may get any number the kernel frees
		fresh = append(fresh, h)
	}

	assert.Equal(t, want, s.Entries(), "same numbers, flags, kinds, descriptions")
	assert.Equal(t, fds, s.fds(), "same descriptors")
	for i := range s.Len() {
		require.NoError(t, checkIdentity(s.Handle(i).FD(), want[i].Description), "same open file")
	}
	require.NoError(t, s.Release())
	for _, fd := range fds {
		assert.False(t, isOpen(fd) && !isFresh(fresh, fd), "descriptor %d closed at Release", fd)
	}
	require.NoError(t, s.Release(), "a second Release does nothing")
	require.NoError(t, releaseAll(fresh))
}

func isFresh(hs []*Handle, fd int) bool {
	for _, h := range hs {
		if h.FD() == fd {
			return true
		}
	}
	return false
}

func TestSnapshotOrderAndEntries(t *testing.T) {
	fdBaseline(t)
	m := NewHandleMap()
	defer m.CloseAll()
	for _, n := range []int{9, 2, 5, 0} {
		require.NoError(t, m.InstallAt(n, mustPipe(t, 0)))
	}
	require.NoError(t, m.SetFlags(5, FlagCloexec))
	s := m.Snapshot()
	defer s.Release()
	var numbers []int
	for _, e := range s.Entries() {
		numbers = append(numbers, e.Number)
		assert.Equal(t, KindPipe, e.Kind)
	}
	assert.Equal(t, []int{0, 2, 5, 9}, numbers)
	assert.Equal(t, FlagCloexec, s.Entry(2).Flags)
	require.NoError(t, m.SetFlags(5, 0))
	assert.Equal(t, FlagCloexec, s.Entry(2).Flags, "flags are copied at snapshot time")
}

func TestSnapshotReferences(t *testing.T) {
	fdBaseline(t)
	m := NewHandleMap()
	h := mustPipe(t, 0)
	require.NoError(t, m.InstallAt(0, h))
	s1, s2 := m.Snapshot(), m.Snapshot()
	assert.EqualValues(t, 3, h.refs.Load(), "the map's and one per snapshot")
	require.NoError(t, m.Close(0))
	require.NoError(t, s1.Release())
	assert.True(t, isOpen(h.FD()))
	require.NoError(t, s2.Release())
	assert.False(t, isOpen(h.FD()))
	assert.EqualValues(t, 0, h.refs.Load())
}

func TestSnapshotEmpty(t *testing.T) {
	var m HandleMap
	s := m.Snapshot()
	assert.Equal(t, 0, s.Len())
	assert.Empty(t, s.Entries())
	require.NoError(t, s.Release())
	assert.True(t, s.Released())
	_, err := EncodeSnapshot(s, nil, nil)
	assert.ErrorIs(t, err, ErrReleased)
}
