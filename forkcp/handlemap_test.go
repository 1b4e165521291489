package forkcp

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func mustPipe(t *testing.T, flags Flags) *Handle {
	t.Helper()
	h, err := newPipeHandle(flags)
	require.NoError(t, err)
	return h
}

func TestInstallLowestFree(t *testing.T) {
	fdBaseline(t)
	var m HandleMap // the zero value is ready
	defer m.CloseAll()
	for want := range 5 {
		n, err := m.Install(mustPipe(t, 0))
		require.NoError(t, err)
		assert.Equal(t, want, n)
	}
	require.NoError(t, m.Close(1))
	require.NoError(t, m.Close(3))
	n, err := m.Install(mustPipe(t, 0))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = m.Install(mustPipe(t, 0))
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	n, err = m.Install(mustPipe(t, 0))
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	assert.Equal(t, 6, m.Len())
	_, err = m.Install(nil)
	assert.Error(t, err)
}

func TestInstallAtReplaces(t *testing.T) {
	fdBaseline(t)
	m := NewHandleMap()
	defer m.CloseAll()
	old := mustPipe(t, 0)
	oldFD := old.FD()
	require.NoError(t, m.InstallAt(10, old))
	h := mustPipe(t, FlagCloexec)
	require.NoError(t, m.InstallAt(10, h))
	assert.False(t, isOpen(oldFD), "the replaced handle's last reference was the map's")
	got, err := m.Lookup(10)
	require.NoError(t, err)
	assert.Same(t, h, got)
	require.NoError(t, got.Release())
	assert.Equal(t, 1, m.Len())
	n, err := m.Install(mustPipe(t, 0))
	require.NoError(t, err)
	assert.Equal(t, 0, n, "numbers below 10 are still free")
}

func TestMapErrors(t *testing.T) {
	fdBaseline(t)
	m := NewHandleMap()
	defer m.CloseAll()
	h := mustPipe(t, 0)
	defer h.Release()
	tests := []struct {
		name  string
		err   error
		class error
		msg   string
	}{
		{"close empty", m.Close(4), ErrBadNumber, "forkcp: close 4: no handle at this number (bad file descriptor)"},
		{"close negative", m.Close(-1), ErrBadNumber, "forkcp: close -1"},
		{"lookup empty", func() error { _, err := m.Lookup(0); return err }(), ErrBadNumber, "forkcp: lookup 0"},
		{"install at negative", m.InstallAt(-1, h), ErrNumberRange, "forkcp: install -1: number outside 0..1048575"},
		{"install above MaxNumber", m.InstallAt(MaxNumber+1, h), ErrNumberRange, "install 1048576"},
		{"dup empty", func() error { _, err := m.Dup(2); return err }(), ErrBadNumber, "forkcp: dup 2"},
		{"dup2 from empty", m.Dup2(2, 3), ErrBadNumber, "forkcp: dup2 2"},
		{"dup2 to itself, empty", m.Dup2(2, 2), ErrBadNumber, "forkcp: dup2 2"},
		{"dup2 out of range", m.Dup2(2, MaxNumber+1), ErrNumberRange, "dup2 1048576"},
		{"set flags empty", m.SetFlags(0, FlagCloexec), ErrBadNumber, "forkcp: set flags 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Error(t, tt.err)
			assert.ErrorIs(t, tt.err, tt.class)
			assert.ErrorIs(t, tt.err, unix.EBADF)
			assert.Contains(t, tt.err.Error(), tt.msg)
		})
	}
	assert.Error(t, m.SetFlags(0, 8), "unknown flags")
	assert.Equal(t, 0, m.Len())
}

func TestMapFull(t *testing.T) {
	fdBaseline(t)
	m := &HandleMap{limit: 3}
	defer m.CloseAll()
	for range 3 {
		_, err := m.Install(mustPipe(t, 0))
		require.NoError(t, err)
	}
	h := mustPipe(t, 0)
	defer h.Release()
	_, err := m.Install(h)
	assert.ErrorIs(t, err, ErrMapFull)
	assert.ErrorIs(t, err, unix.EMFILE)
	assert.ErrorIs(t, m.InstallAt(3, h), ErrNumberRange)
	_, err = m.Dup(0)
	assert.ErrorIs(t, err, ErrMapFull)
}

func TestDup(t *testing.T) {
	fdBaseline(t)
	m := NewHandleMap()
	defer m.CloseAll()
	h := mustPipe(t, FlagCloexec)
	require.NoError(t, m.InstallAt(0, h))
	n, err := m.Dup(0)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	d, err := m.Lookup(1)
	require.NoError(t, err)
	defer d.Release()
	assert.NotEqual(t, h.FD(), d.FD(), "a new descriptor")
	assert.Equal(t, h.Description(), d.Description())
	assert.Equal(t, h.Kind(), d.Kind())
	assert.Equal(t, Flags(0), d.Flags(), "dup clears FD_CLOEXEC")
	assert.True(t, isCloexec(t, d.FD()), "at the OS level the map's descriptors stay close-on-exec")
	require.NoError(t, checkIdentity(d.FD(), h.Description()), "the same open file")
}

func TestDup2(t *testing.T) {
	fdBaseline(t)
	m := NewHandleMap()
	defer m.CloseAll()
	a, b := mustPipe(t, 0), mustPipe(t, 0)
	bFD := b.FD()
	require.NoError(t, m.InstallAt(1, a))
	require.NoError(t, m.InstallAt(2, b))
	require.NoError(t, m.Dup2(1, 1), "dup2 onto itself is a check")
	require.NoError(t, m.Dup2(1, 2))
	assert.False(t, isOpen(bFD), "the replaced handle is closed")
	got, err := m.Lookup(2)
	require.NoError(t, err)
	require.NoError(t, checkIdentity(got.FD(), a.Description()))
	require.NoError(t, got.Release())
	require.NoError(t, m.Dup2(1, 500))
	assert.Equal(t, 3, m.Len())
}

func TestLookupKeepsHandleAfterClose(t *testing.T) {
	fdBaseline(t)
	m := NewHandleMap()
	h := mustPipe(t, 0)
	require.NoError(t, m.InstallAt(0, h))
	got, err := m.Lookup(0)
	require.NoError(t, err)
	require.NoError(t, m.Close(0))
	assert.True(t, isOpen(got.FD()), "the caller's reference keeps it open")
	require.NoError(t, checkIdentity(got.FD(), got.Description()))
	require.NoError(t, got.Release())
	assert.False(t, isOpen(h.FD()))
}

func TestSetFlags(t *testing.T) {
	fdBaseline(t)
	m := NewHandleMap()
	defer m.CloseAll()
	require.NoError(t, m.InstallAt(0, mustPipe(t, 0)))
	require.NoError(t, m.SetFlags(0, FlagCloexec))
	h, err := m.Lookup(0)
	require.NoError(t, err)
	assert.Equal(t, FlagCloexec, h.Flags())
	require.NoError(t, h.Release())
}

func TestCloseAll(t *testing.T) {
	fdBaseline(t)
	m := NewHandleMap()
	fillMap(t, m, 0, 10)
	s := m.Snapshot()
	require.NoError(t, m.CloseAll())
	assert.Equal(t, 0, m.Len())
	n, err := m.Install(mustPipe(t, 0))
	require.NoError(t, err)
	assert.Equal(t, 0, n)
	for i := range s.Len() {
		assert.True(t, isOpen(s.Handle(i).FD()))
	}
	require.NoError(t, s.Release())
	require.NoError(t, m.CloseAll())
	var ne *NumberError
	assert.True(t, errors.As(m.Close(0), &ne))
}
