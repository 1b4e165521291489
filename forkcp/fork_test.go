package forkcp

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/forkless/forkless/spawn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

var routes = []Route{RouteFileActions, RouteSocket}

// forkVerify forks a child that checks it holds exactly s (see
// roleVerify) and returns its exit state.
func forkVerify(t testing.TB, s *Snapshot, route Route) *spawn.State {
	t.Helper()
	payload, err := json.Marshal(s.Entries())
	require.NoError(t, err)
	env := append(roleEnvFor("verify"), inheritedEnv+"="+inherited(t, s))
	p, err := ForkSnapshot(s, &ForkOptions{Payload: payload, Route: route, Env: env})
	require.NoError(t, err)
	st, err := p.Wait()
	require.NoError(t, err)
	return st
}

// inherited lists the descriptors above 2 that this process holds without
// close-on-exec and that are not s's: any spawn inherits them (this
// machine's job runner leaves some), so the verifying child ignores them.
func inherited(t testing.TB, s *Snapshot) string {
	t.Helper()
	mine := make(map[int]bool)
	for i := range s.Len() {
		mine[s.Handle(i).FD()] = true
	}
	tab, err := fdTable()
	require.NoError(t, err)
	var out []string
	for n := range tab {
		if v, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0); err == nil && v&unix.FD_CLOEXEC == 0 && n > 2 && !mine[n] {
			out = append(out, strconv.Itoa(n))
		}
	}
	return strings.Join(out, ",")
}

func TestFork(t *testing.T) {
	for _, route := range routes {
		for _, n := range []int{0, 1, maxFDsPerMessage + 1, 1000} {
			t.Run(fmt.Sprintf("%s/handles=%d", route, n), func(t *testing.T) {
				fdBaseline(t)
				m := NewHandleMap()
				defer m.CloseAll()
				fillMap(t, m, 3, n)
				s := m.Snapshot()
				defer s.Release()
				assert.True(t, forkVerify(t, s, route).Success())
			})
		}
	}
}

// TestForkNumbersCollide puts handles at numbers that are the parent's own
// descriptors of other handles (a cycle among them), at stdio numbers, and
// descriptors that are not close-on-exec in the parent.
func TestForkNumbersCollide(t *testing.T) {
	for _, route := range routes {
		t.Run(route.String(), func(t *testing.T) {
			fdBaseline(t)
			m := NewHandleMap()
			defer m.CloseAll()
			a, b := mustPipe(t, 0), mustPipe(t, FlagCloexec)
			require.NoError(t, m.InstallAt(b.FD(), a)) // a at b's descriptor
			require.NoError(t, m.InstallAt(a.FD(), b)) // and b at a's: a cycle
			// Not close-on-exec in the parent, at a number nobody targets:
			// the child must not get it.
			var p [2]int
			require.NoError(t, unix.Pipe2(p[:], 0))
			unix.Close(p[1])
			id, err := identity(p[0])
			require.NoError(t, err)
			loose, err := NewHandle(p[0], KindPipe, 0, id)
			require.NoError(t, err)
			require.NoError(t, m.InstallAt(40, loose))
			// stderr replaced in the child by a pipe.
			require.NoError(t, m.InstallAt(2, mustPipe(t, 0)))
			s := m.Snapshot()
			defer s.Release()
			assert.True(t, forkVerify(t, s, route).Success())
		})
	}
}

func TestForkPayloadAndHeader(t *testing.T) {
	// The verify child checks the header pid and the payload (the entry
	// list); this checks argv and env are recorded when asked.
	m := NewHandleMap()
	s := m.Snapshot()
	defer s.Release()
	hdr, err := CaptureHeader(true, true)
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), hdr.Pid)
	assert.Equal(t, os.Getppid(), hdr.Ppid)
	wd, _ := os.Getwd()
	assert.Equal(t, wd, hdr.Cwd)
	old := unix.Umask(0o027)
	defer unix.Umask(old)
	hdr, err = CaptureHeader(false, false)
	require.NoError(t, err)
	assert.EqualValues(t, 0o027, hdr.Umask)
	assert.Nil(t, hdr.Argv)
	assert.Nil(t, hdr.Env)
}

func TestForkRestoreTwice(t *testing.T) {
	p, err := Fork(NewHandleMap(), &ForkOptions{Env: roleEnvFor("restore-twice")})
	require.NoError(t, err)
	st, err := p.Wait()
	require.NoError(t, err)
	assert.True(t, st.Success())
}

func TestRestoreNotForked(t *testing.T) {
	require.False(t, Forked())
	r, err := Restore()
	assert.Nil(t, r)
	assert.ErrorIs(t, err, ErrNotForked)
	assert.EqualError(t, err, "forkcp: this process was not started by forkcp.Fork (FORKCP_CHECKPOINT is not set)")
}

func TestParseCheckpointEnv(t *testing.T) {
	for _, v := range []string{"", "files", "files:", "files:-1", "files:x", "files:04", "pipe:3", "socket:1048576", "files:3:4"} {
		_, _, err := parseCheckpointEnv(v)
		assert.ErrorContains(t, err, "malformed FORKCP_CHECKPOINT", "%q", v)
	}
	r, fd, err := parseCheckpointEnv("socket:17")
	require.NoError(t, err)
	assert.Equal(t, RouteSocket, r)
	assert.Equal(t, 17, fd)
}

// TestRestoreBadCheckpoint: a process whose checkpoint is corrupt gets a
// clear error and no map. Run in-process on a crafted memfd.
func TestRestoreBadCheckpoint(t *testing.T) {
	fdBaseline(t)
	b, err := Encode(&Checkpoint{Entries: []Entry{{Number: 900, Kind: KindFile}}})
	require.NoError(t, err)
	for _, tt := range []struct {
		name   string
		stream []byte
		msg    string
	}{
		{"corrupt", append(b[:len(b)-1:len(b)-1], b[len(b)-1]^1), "checksum mismatch"},
		{"empty", nil, "empty"},
		{"truncated", b[:30], "truncated"},
		{"descriptor not in place", b, "handle 0 (number 900, file \"\") is not in place: bad file descriptor"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mfd, err := sealedMemfd(tt.stream)
			require.NoError(t, err)
			r, err := restoreFiles(mfd, nil)
			assert.Nil(t, r)
			assert.ErrorContains(t, err, tt.msg)
			assert.False(t, isOpen(mfd), "restore closed the checkpoint")
		})
	}
}

func TestForkErrors(t *testing.T) {
	fdBaseline(t)
	m := NewHandleMap()
	defer m.CloseAll()
	_, err := Fork(m, &ForkOptions{Path: "/nonexistent/forkcp-child"})
	assert.ErrorContains(t, err, "forkcp: fork: spawn /nonexistent/forkcp-child")
	assert.ErrorIs(t, err, unix.ENOENT)
	_, err = Fork(m, &ForkOptions{Route: 7})
	assert.ErrorContains(t, err, "unknown route 7")
	s := m.Snapshot()
	require.NoError(t, s.Release())
	_, err = ForkSnapshot(s, nil)
	assert.ErrorIs(t, err, ErrReleased)
}

// TestPlaceReceivedFailure: if one received descriptor cannot be moved
// onto its number, every number of the checkpoint is closed and no map
// is returned.
func TestPlaceReceivedFailure(t *testing.T) {
	fdBaseline(t)
	pipeFD := func() int {
		h := mustPipe(t, 0)
		return h.FD() // the raw descriptor: placeReceived closes it
	}
	holder1, holder2, received := pipeFD(), pipeFD(), pipeFD()
	lo, hi := min(holder1, holder2), max(holder1, holder2)
	src := &HandleMap{}
	src.set(lo, newHandle(received, KindPipe, 0, "fine"))
	src.set(hi, newHandle(MaxNumber+5, KindPipe, 0, "gone")) // not a descriptor
	m, err := placeReceived(src)
	assert.Nil(t, m)
	assert.ErrorContains(t, err, fmt.Sprintf(`forkcp: restore: handle at number %d (pipe "gone"): dup3`, hi))
	assert.ErrorIs(t, err, unix.EBADF)
	for _, fd := range []int{lo, hi, received} {
		assert.False(t, isOpen(fd), "descriptor %d closed", fd)
	}
}
