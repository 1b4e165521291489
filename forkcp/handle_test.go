package forkcp

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestHandleClosesOnLastRelease(t *testing.T) {
	fdBaseline(t)
	h, err := newPipeHandle(0)
	require.NoError(t, err)
	fd := h.FD()
	h.Acquire()
	h.Acquire()
	for range 2 {
		require.NoError(t, h.Release())
		assert.True(t, isOpen(fd), "open while a reference remains")
	}
	require.NoError(t, h.Release())
	assert.False(t, isOpen(fd), "closed with the last reference")
	assert.PanicsWithValue(t, "forkcp: Handle released more times than acquired", func() { _ = h.Release() })
}

func TestNewHandleChecks(t *testing.T) {
	tests := []struct {
		name  string
		fd    int
		kind  Kind
		flags Flags
		desc  string
		msg   string
	}{
		{"negative descriptor", -1, KindFile, 0, "", "descriptor -1"},
		{"kind 0", 5, 0, 0, "", "invalid kind 0"},
		{"kind 6", 5, 6, 0, "", "invalid kind 6"},
		{"unknown flags", 5, KindFile, 4, "", "unknown flags 0x4"},
		{"long description", 5, KindFile, 0, strings.Repeat("x", MaxDescription+1), "description of 4097 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := NewHandle(tt.fd, tt.kind, tt.flags, tt.desc)
			assert.Nil(t, h)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.msg)
		})
	}
}

func TestKindOf(t *testing.T) {
	fdBaseline(t)
	f, err := os.Open(t.TempDir())
	require.NoError(t, err)
	defer f.Close()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	reg, err := os.Open("/proc/self/status")
	require.NoError(t, err)
	defer reg.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	null, err := os.Open("/dev/null")
	require.NoError(t, err)
	defer null.Close()
	for _, tt := range []struct {
		fd   uintptr
		want Kind
	}{{f.Fd(), KindDir}, {r.Fd(), KindPipe}, {reg.Fd(), KindFile}, {null.Fd(), KindOther}} {
		k, err := KindOf(int(tt.fd))
		require.NoError(t, err)
		assert.Equal(t, tt.want, k)
	}
	h, err := HandleOf(ln.(*net.TCPListener), FlagCloexec, "listener")
	require.NoError(t, err)
	assert.Equal(t, KindSocket, h.Kind())
	assert.Equal(t, FlagCloexec, h.Flags())
	assert.Equal(t, "listener", h.Description())
	assert.True(t, isCloexec(t, h.FD()), "a handle's own descriptor never leaks into a spawn")
	assert.Equal(t, `socket fd `+itoa(h.FD())+` "listener"`, h.String())
	require.NoError(t, h.Release())
	_, err = KindOf(-1)
	assert.ErrorIs(t, err, unix.EBADF)
	assert.Equal(t, "Kind(9)", Kind(9).String())
}

func TestHandleFile(t *testing.T) {
	fdBaseline(t)
	h, err := DupHandle(1, 0, "stdout")
	require.NoError(t, err)
	f, err := h.File()
	require.NoError(t, err)
	assert.NotEqual(t, uintptr(h.FD()), f.Fd(), "a duplicate the caller owns")
	want, _ := identity(h.FD())
	got, _ := identity(int(f.Fd()))
	assert.Equal(t, want, got)
	require.NoError(t, f.Close())
	assert.True(t, isOpen(h.FD()))
	require.NoError(t, h.Release())
	_, err = DupHandle(-1, 0, "")
	assert.True(t, errors.Is(err, unix.EBADF), "%v", err)
}
