package forkcp

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// withNofile sets the soft RLIMIT_NOFILE for the rest of the test.
func withNofile(t *testing.T, soft uint64) {
	t.Helper()
	var old unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &old))
	t.Cleanup(func() { require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &old)) })
	lim := old
	lim.Cur = soft
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &lim))
}

// limitWithRoom returns the soft limit below which exactly n numbers are
// free in this process's table.
func limitWithRoom(t *testing.T, n int) uint64 {
	t.Helper()
	tab, err := fdTable()
	require.NoError(t, err)
	free := 0
	for fd := 0; ; fd++ {
		if _, used := tab[fd]; !used {
			if free++; free == n {
				return uint64(fd + 1)
			}
		}
	}
}

// TestReceiveAtDescriptorLimit receives a checkpoint that fills the
// receiving process's descriptor table to its limit exactly, then one that
// needs one descriptor more than the limit allows: the kernel truncates
// the control data, Receive reports it and closes what it got.
func TestReceiveAtDescriptorLimit(t *testing.T) {
	const n = 300 // more than one message
	fdBaseline(t)
	a, b := socketPair(t)
	m := NewHandleMap()
	defer m.CloseAll()
	fillMap(t, m, 0, n)
	s := m.Snapshot()
	defer s.Release()

	t.Run("exactly at the limit", func(t *testing.T) {
		lim := limitWithRoom(t, n)
		withNofile(t, lim)
		done := sendAsync(a, s, nil, nil)
		r, err := Receive(b, nil)
		require.NoError(t, err)
		require.NoError(t, <-done)
		checkRestored(t, s, r)
		for i := range s.Len() {
			h, _ := r.Map.Lookup(s.Entry(i).Number)
			assert.Less(t, uint64(h.FD()), lim)
			h.Release()
		}
		_, err = unix.Dup(0)
		assert.ErrorIs(t, err, unix.EMFILE, "the table is full")
		require.NoError(t, r.Map.CloseAll())
	})
	t.Run("one over the limit", func(t *testing.T) {
		base, err := fdTable()
		require.NoError(t, err)
		withNofile(t, limitWithRoom(t, n-1))
		done := sendAsync(a, s, nil, nil)
		r, err := Receive(b, nil)
		assert.Nil(t, r)
		assert.ErrorIs(t, err, ErrControlTruncated)
		assert.ErrorContains(t, err, "is the descriptor limit reached?")
		// The sender finished: the rest of the stream is in the socket.
		require.NoError(t, <-done)
		assertFDs(t, base)
	})
}

// TestForkAtDescriptorLimit puts a handle at the highest number the
// child's descriptor limit allows, then one above it.
func TestForkAtDescriptorLimit(t *testing.T) {
	fdBaseline(t)
	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	top := int(min(lim.Cur, MaxNumber+1)) - 1
	for _, route := range routes {
		t.Run(route.String(), func(t *testing.T) {
			m := NewHandleMap()
			defer m.CloseAll()
			fillMap(t, m, 3, 3)
			require.NoError(t, m.InstallAt(top, mustPipe(t, FlagCloexec)))
			s := m.Snapshot()
			st := forkVerify(t, s, route)
			require.NoError(t, s.Release())
			assert.True(t, st.Success(), "a handle at %d, the limit minus one", top)

			if top == MaxNumber {
				return // the map's own bound: checked in TestMapErrors
			}
			require.NoError(t, m.InstallAt(top+1, mustPipe(t, 0)))
			_, err := Fork(m, &ForkOptions{Route: route, Env: roleEnvFor("restore-exit")})
			require.Error(t, err)
			assert.ErrorIs(t, err, unix.EBADF)
			assert.ErrorContains(t, err, fmt.Sprintf("onto %d in the child", top+1))
			assert.ErrorContains(t, err, "RLIMIT_NOFILE")
		})
	}
}
