package forkcp

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// fdTable lists this process's descriptors and what they refer to.
func fdTable() (map[int]string, error) {
	dir := "/proc/self/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make(map[int]string, len(ents))
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		out[n] = target
	}
	return out, nil
}

// fdBaseline returns the descriptor table after warming up what the Go
// runtime opens lazily (the network poller), and registers a check that
// the test leaves the table exactly as it found it.
func fdBaseline(t testing.TB) map[int]string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	r.Close()
	w.Close()
	base, err := fdTable()
	require.NoError(t, err)
	t.Cleanup(func() { assertFDs(t, base) })
	return base
}

// assertFDs checks the descriptor table against a baseline.
func assertFDs(t testing.TB, base map[int]string) {
	t.Helper()
	now, err := fdTable()
	require.NoError(t, err)
	var extra, missing []string
	for n, target := range now {
		if base[n] != target {
			extra = append(extra, fmt.Sprintf("%d->%s", n, target))
		}
	}
	for n, target := range base {
		if _, ok := now[n]; !ok {
			missing = append(missing, fmt.Sprintf("%d->%s", n, target))
		}
	}
	slices.Sort(extra)
	slices.Sort(missing)
	assert.Empty(t, extra, "descriptors leaked")
	assert.Empty(t, missing, "descriptors closed that the test did not own")
}

// identity names the open file at fd: "ino=<dev>:<ino>". Tests use it as
// the handle description, so the receiving side can check that a number
// still refers to the file it was recorded with.
func identity(fd int) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("ino=%d:%d", st.Dev, st.Ino), nil
}

// checkIdentity reports whether fd is the file its description names.
// Descriptions not made by identity are not checked.
func checkIdentity(fd int, desc string) error {
	if !strings.HasPrefix(desc, "ino=") {
		return nil
	}
	got, err := identity(fd)
	if err != nil {
		return fmt.Errorf("descriptor %d (%s): %w", fd, desc, err)
	}
	if got != desc {
		return fmt.Errorf("descriptor %d is %s, recorded as %s", fd, got, desc)
	}
	return nil
}

// newPipeHandle returns a Handle on the read end of a new pipe (the write
// end is closed), described by its identity.
func newPipeHandle(flags Flags) (*Handle, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	unix.Close(p[1])
	id, err := identity(p[0])
	if err != nil {
		unix.Close(p[0])
		return nil, err
	}
	h, err := NewHandle(p[0], KindPipe, flags, id)
	if err != nil {
		unix.Close(p[0])
		return nil, err
	}
	h.osCloexec = true
	return h, nil
}

// fillMap installs n pipe handles at numbers first, first+1, ...;
// every third is close-on-exec.
func fillMap(t testing.TB, m *HandleMap, first, n int) {
	t.Helper()
	for i := range n {
		var f Flags
		if i%3 == 0 {
			f = FlagCloexec
		}
		h, err := newPipeHandle(f)
		require.NoError(t, err)
		require.NoError(t, m.InstallAt(first+i, h))
	}
}

// socketPair returns two connected AF_UNIX stream sockets.
func socketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		require.NoError(t, err)
		return c.(*net.UnixConn)
	}
	a, b := conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// isCloexec reports the OS-level FD_CLOEXEC of fd.
func isCloexec(t testing.TB, fd int) bool {
	t.Helper()
	v, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	require.NoError(t, err)
	return v&unix.FD_CLOEXEC != 0
}

// isOpen reports whether fd is open.
func isOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

func itoa(n int) string { return strconv.Itoa(n) }

type syscallRawConn = syscall.RawConn
