package forkcp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// sendAsync sends in a goroutine (the socket buffer may not hold the whole
// checkpoint) and returns a channel with Send's error.
func sendAsync(c *net.UnixConn, s *Snapshot, hdr *Header, payload []byte) <-chan error {
	done := make(chan error, 1)
	go func() { done <- Send(c, s, hdr, payload) }()
	return done
}

// checkRestored compares a received map with the snapshot it came from.
func checkRestored(t *testing.T, s *Snapshot, r *Restored) {
	t.Helper()
	require.Equal(t, s.Len(), r.Map.Len())
	for i, e := range s.Entries() {
		h, err := r.Map.Lookup(e.Number)
		require.NoError(t, err, "entry %d", i)
		assert.Equal(t, e, Entry{Number: e.Number, Flags: h.Flags(), Kind: h.Kind(), Description: h.Description()})
		assert.NoError(t, checkIdentity(h.FD(), e.Description))
		assert.True(t, isCloexec(t, h.FD()), "received with MSG_CMSG_CLOEXEC")
		require.NoError(t, h.Release())
	}
}

func TestSendReceive(t *testing.T) {
	for _, n := range []int{0, 1, 2, maxFDsPerMessage, maxFDsPerMessage + 1, 1000} {
		t.Run(fmt.Sprintf("handles=%d", n), func(t *testing.T) {
			fdBaseline(t)
			a, b := socketPair(t)
			m := NewHandleMap()
			fillMap(t, m, 5, n)
			s := m.Snapshot()
			hdr := Header{Pid: 1, Cwd: "/", Argv: []string{"x"}}
			done := sendAsync(a, s, &hdr, []byte("payload"))
			r, err := Receive(b, nil)
			require.NoError(t, err)
			require.NoError(t, <-done)
			assert.Equal(t, hdr, r.Header)
			assert.Equal(t, []byte("payload"), r.Payload)
			checkRestored(t, s, r)
			require.NoError(t, r.Map.CloseAll())
			require.NoError(t, s.Release())
			require.NoError(t, m.CloseAll())
		})
	}
}

func TestReceiveSeveralThenEOF(t *testing.T) {
	fdBaseline(t)
	a, b := socketPair(t)
	for _, n := range []int{300, 0, 5} {
		m := NewHandleMap()
		fillMap(t, m, 0, n)
		s := m.Snapshot()
		done := sendAsync(a, s, nil, nil)
		r, err := Receive(b, nil)
		require.NoError(t, err)
		require.NoError(t, <-done)
		checkRestored(t, s, r)
		require.NoError(t, r.Map.CloseAll())
		require.NoError(t, s.Release())
		require.NoError(t, m.CloseAll())
	}
	require.NoError(t, a.Close())
	r, err := Receive(b, nil)
	assert.Nil(t, r)
	assert.Equal(t, io.EOF, err, "a close between streams is a clean end")
}

// TestSendAfterEverythingClosed: a handle whose open file is gone by send
// time cannot occur. Every entry of the map is closed after the snapshot,
// new descriptors are opened (they cannot take the snapshot's numbers),
// and the receiver still gets exactly the recorded files.
func TestSendAfterEverythingClosed(t *testing.T) {
	fdBaseline(t)
	a, b := socketPair(t)
	m := NewHandleMap()
	fillMap(t, m, 0, 50)
	s := m.Snapshot()
	require.NoError(t, m.CloseAll())
	fillMap(t, m, 0, 50)
	done := sendAsync(a, s, nil, nil)
	r, err := Receive(b, nil)
	require.NoError(t, err)
	require.NoError(t, <-done)
	checkRestored(t, s, r)
	require.NoError(t, r.Map.CloseAll())
	require.NoError(t, s.Release())
	require.NoError(t, m.CloseAll())
}

func TestSendReleased(t *testing.T) {
	a, _ := socketPair(t)
	s := NewHandleMap().Snapshot()
	require.NoError(t, s.Release())
	assert.ErrorIs(t, Send(a, s, nil, nil), ErrReleased)
}

// rawSend writes stream bytes with fds, then closes the socket: a sender
// that lies or dies. The receiver may hang up first.
func rawSend(c *net.UnixConn, stream []byte, fds []int) <-chan error {
	done := make(chan error, 1)
	go func() {
		rc, err := c.SyscallConn()
		if err == nil {
			err = sendStream(rc, stream, fds)
		}
		c.Close()
		done <- err
	}()
	return done
}

// pipeFDs opens n pipes (read ends kept) for rawSend; the caller closes
// them.
func pipeFDs(t *testing.T, n int) []int {
	t.Helper()
	fds := make([]int, n)
	for i := range fds {
		h, err := newPipeHandle(0)
		require.NoError(t, err)
		fds[i] = h.FD()
	}
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	return fds
}

func streamOf(t *testing.T, n int) []byte {
	t.Helper()
	es := make([]Entry, n)
	for i := range es {
		es[i] = Entry{Number: i, Kind: KindPipe}
	}
	b, err := Encode(&Checkpoint{Entries: es, Payload: make([]byte, 100)})
	require.NoError(t, err)
	return b
}

// TestReceiveFailuresCloseEverything: whatever goes wrong, Receive returns
// no map, a clear error, and closes every descriptor that arrived.
func TestReceiveFailuresCloseEverything(t *testing.T) {
	tests := []struct {
		name   string
		stream func(t *testing.T) []byte
		nfds   int
		lim    *Limits
		class  error
		msg    string
	}{
		{"truncated", func(t *testing.T) []byte { return streamOf(t, 300)[:2000] }, 300, nil, ErrTruncated, "connection closed after 2000 of"},
		{"truncated preamble", func(t *testing.T) []byte { return streamOf(t, 3)[:10] }, 3, nil, ErrTruncated, "after 10 of 16 bytes"},
		{"checksum", func(t *testing.T) []byte { b := streamOf(t, 300); b[len(b)-1] ^= 1; return b }, 300, nil, ErrChecksum, "checksum mismatch"},
		{"wrong version", func(t *testing.T) []byte { b := streamOf(t, 3); b[offVersion] = 2; return b }, 3, nil, ErrVersion, "version 2"},
		{"oversized", func(t *testing.T) []byte { return streamOf(t, 300) }, 300, &Limits{MaxStreamBytes: 1000}, ErrTooLarge, "limit 1000"},
		{"fewer descriptors than entries", func(t *testing.T) []byte { return streamOf(t, 300) }, 299, nil, nil, "lists 300 descriptors, 299 arrived"},
		{"more descriptors than entries", func(t *testing.T) []byte { return streamOf(t, 2) }, 3, nil, nil, "lists 2 descriptors, 3 arrived"},
		{"more descriptors than the limit", func(t *testing.T) []byte { return streamOf(t, 300) }, 300, &Limits{MaxHandles: 10}, ErrTooLarge, "more than 10 arrived"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fds := pipeFDs(t, tt.nfds)
			stream := tt.stream(t)
			base, err := fdTable()
			require.NoError(t, err)
			a, b := socketPair(t) // both closed by the end
			sent := rawSend(a, stream, fds)
			r, err := Receive(b, tt.lim)
			b.Close()
			<-sent // done, or EPIPE once the receiver hung up
			assert.Nil(t, r)
			require.Error(t, err)
			var te *TransportError
			require.ErrorAs(t, err, &te)
			assert.Equal(t, "receive", te.Op)
			if tt.class != nil {
				assert.ErrorIs(t, err, tt.class)
			}
			assert.Contains(t, err.Error(), tt.msg)
			assertFDs(t, base)
		})
	}
}

// TestReceiveCtrunc: a control buffer too small for a batch makes the
// kernel truncate it; that is an error, and what did arrive is closed.
func TestReceiveCtrunc(t *testing.T) {
	fdBaseline(t)
	a, b := socketPair(t)
	m := NewHandleMap()
	defer m.CloseAll()
	fillMap(t, m, 0, 100)
	s := m.Snapshot()
	defer s.Release()
	base, err := fdTable()
	require.NoError(t, err)
	done := sendAsync(a, s, nil, nil)
	r, err := receive(b, nil, unix.CmsgSpace(10*4))
	assert.Nil(t, r)
	assert.ErrorIs(t, err, ErrControlTruncated)
	assert.Contains(t, err.Error(), "forkcp: receive: control message truncated (MSG_CTRUNC)")
	require.NoError(t, <-done)
	assertFDs(t, base)
}

func TestReceiveBadConn(t *testing.T) {
	_, err := Receive(badConn{}, nil)
	var te *TransportError
	require.ErrorAs(t, err, &te)
	assert.Contains(t, err.Error(), "forkcp: receive: no raw conn")
	s := NewHandleMap().Snapshot()
	defer s.Release()
	assert.ErrorContains(t, Send(badConn{}, s, nil, nil), "forkcp: send: no raw conn")
}

type badConn struct{}

func (badConn) SyscallConn() (syscallRawConn, error) { return nil, errors.New("no raw conn") }
