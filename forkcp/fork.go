package forkcp

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/forkless/forkless/spawn"
	"golang.org/x/sys/unix"
)

// EnvCheckpoint is the environment variable through which Fork tells the
// child where its checkpoint is: "files:N" (a sealed memfd at descriptor
// N, the handles already at their numbers) or "socket:N" (an AF_UNIX
// socket at N on which the checkpoint and its descriptors arrive).
// Restore removes it from the environment.
const EnvCheckpoint = "FORKCP_CHECKPOINT"

// Route says how Fork hands the descriptors to the child.
type Route uint8

const (
	// RouteFileActions places every descriptor at its number with a dup2
	// file action of the spawn, and the stream in a sealed memfd: no
	// socket, no SCM_RIGHTS, and Fork returns as soon as the child runs.
	RouteFileActions Route = iota
	// RouteSocket passes the descriptors with SCM_RIGHTS over a socket
	// pair, as Send does for any process. The spawn reserves each number
	// with a placeholder, which Restore replaces atomically (dup3) with
	// what arrived. Fork returns once the whole checkpoint is in the
	// socket.
	RouteSocket
)

func (r Route) String() string {
	switch r {
	case RouteFileActions:
		return "files"
	case RouteSocket:
		return "socket"
	}
	return fmt.Sprintf("Route(%d)", uint8(r))
}

// ForkOptions configure Fork. The zero value forks the current executable
// with the same arguments and environment over RouteFileActions.
type ForkOptions struct {
	Path    string   // the program; default os.Executable()
	Args    []string // argv; default os.Args
	Env     []string // environment; default os.Environ(). EnvCheckpoint is set by Fork.
	Payload []byte   // application state, returned by Restore in the child
	Route   Route
	// RecordArgv and RecordEnv add argv and the environment to the
	// checkpoint header.
	RecordArgv, RecordEnv bool
	// Attr are spawn attributes for the child (process group, signal
	// mask...); nil for none.
	Attr *spawn.Attr
}

// Fork starts a copy of the current program holding a copy of m: it
// snapshots m, spawns the executable with the spawn engine and hands it
// the checkpoint and the descriptors. In the child, Restore returns a map
// with the same numbers, each at the OS descriptor of that number, on the
// same open files, with FD_CLOEXEC set as the entry's FlagCloexec says;
// and the payload.
//
// The child also inherits descriptors 0, 1 and 2 unless the map has
// entries there, and whatever else the process holds without
// close-on-exec (Go opens everything close-on-exec). A number that is not
// below the child's RLIMIT_NOFILE is an error.
//
// Fork returns the child's process handle; the caller must Wait for it.
func Fork(m *HandleMap, opts *ForkOptions) (*spawn.Process, error) {
	s := m.Snapshot()
	defer s.Release()
	return ForkSnapshot(s, opts)
}

// ForkSnapshot is Fork from a snapshot the caller took (and releases).
func ForkSnapshot(s *Snapshot, opts *ForkOptions) (*spawn.Process, error) {
	if opts == nil {
		opts = &ForkOptions{}
	}
	if s.Released() {
		return nil, ErrReleased
	}
	hdr, err := CaptureHeader(opts.RecordArgv, opts.RecordEnv)
	if err != nil {
		return nil, err
	}
	stream, err := EncodeSnapshot(s, &hdr, opts.Payload)
	if err != nil {
		return nil, err
	}
	path := opts.Path
	if path == "" {
		if path, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("forkcp: fork: %w", err)
		}
	}
	args := opts.Args
	if args == nil {
		args = os.Args
	}
	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	streamNum := streamNumber(s)
	switch opts.Route {
	case RouteFileActions:
		return forkFiles(s, stream, path, args, env, streamNum, opts.Attr)
	case RouteSocket:
		return forkSocket(s, stream, path, args, env, streamNum, opts.Attr)
	}
	return nil, fmt.Errorf("forkcp: fork: unknown route %d", opts.Route)
}

func forkFiles(s *Snapshot, stream []byte, path string, args, env []string, streamNum int, attr *spawn.Attr) (*spawn.Process, error) {
	mfd, err := sealedMemfd(stream)
	if err != nil {
		return nil, err
	}
	defer unix.Close(mfd)
	fa, err := childPlan(s, move{from: mfd, to: streamNum}, false)
	if err != nil {
		return nil, err
	}
	env = withEnv(env, EnvCheckpoint, fmt.Sprintf("files:%d", streamNum))
	p, err := spawn.Spawn(path, fa, attr, args, env)
	if err != nil {
		return nil, fmt.Errorf("forkcp: fork: %w", err)
	}
	return p, nil
}

func forkSocket(s *Snapshot, stream []byte, path string, args, env []string, streamNum int, attr *spawn.Attr) (*spawn.Process, error) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("forkcp: fork: socketpair: %w", err)
	}
	parent := os.NewFile(uintptr(sp[0]), "forkcp socket")
	defer parent.Close()
	fa, err := childPlan(s, move{from: sp[1], to: streamNum}, true)
	if err != nil {
		unix.Close(sp[1])
		return nil, err
	}
	reserveTable(fa, s, sp[1], streamNum)
	env = withEnv(env, EnvCheckpoint, fmt.Sprintf("socket:%d", streamNum))
	p, err := spawn.Spawn(path, fa, attr, args, env)
	unix.Close(sp[1]) // the child has its copies: the parent sees EPIPE if it dies
	if err != nil {
		return nil, fmt.Errorf("forkcp: fork: %w", err)
	}
	rc, err := parent.SyscallConn()
	if err == nil {
		err = sendStream(rc, stream, s.fds())
	}
	if err != nil {
		_ = p.Kill()
		_, _ = p.Wait()
		return nil, &TransportError{Op: "send", Err: err}
	}
	return p, nil
}

// reserveTable makes the child's descriptor table large enough, before it
// executes, for the descriptors that will arrive on the socket: it opens
// a number they could reach and closes it again (the table does not
// shrink, and exec keeps a table nobody shares). Otherwise the kernel
// grows the table while receiving them, and growing the table of a
// multithreaded process (the Go runtime has started its threads by then)
// waits for an RCU grace period: about 10 ms for 1,000 handles here.
//
// The number is one this process does not have open, so no inherited
// descriptor is touched; nothing is reserved when no such number lies
// below RLIMIT_NOFILE.
func reserveTable(fa *spawn.FileActions, s *Snapshot, sock, streamNum int) {
	top := streamNum
	if n := len(s.entries); n > 0 {
		top = max(top, s.entries[n-1].number)
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return
	}
	first := top + len(s.entries) + 64 // room for the received copies, and the runtime's own
	for n := first; n < first+64 && uint64(n) < lim.Cur; n++ {
		if _, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0); err == unix.EBADF {
			if fa.AddDup2(sock, n) == nil {
				_ = fa.AddClose(n)
			}
			return
		}
	}
}

// streamNumber picks the child's number for the stream's descriptor: the
// lowest number from 3 up that the table does not use, so that it stays
// below the descriptor limit whenever the table does.
func streamNumber(s *Snapshot) int {
	n := 3
	for _, e := range s.entries { // increasing numbers
		if e.number == n {
			n++
		} else if e.number > n {
			break
		}
	}
	return n
}

// sealedMemfd returns a close-on-exec memfd holding b, sealed against any
// change.
func sealedMemfd(b []byte) (int, error) {
	fd, err := unix.MemfdCreate("forkcp-checkpoint", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("forkcp: fork: memfd_create: %w", err)
	}
	for off := 0; off < len(b); {
		n, err := unix.Write(fd, b[off:])
		if err == unix.EINTR {
			continue
		}
		if err == nil && n == 0 {
			err = io.ErrShortWrite
		}
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("forkcp: fork: write checkpoint: %w", err)
		}
		off += n
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("forkcp: fork: seal checkpoint: %w", err)
	}
	return fd, nil
}

// withEnv returns env with key set to value, any earlier setting removed.
func withEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}
