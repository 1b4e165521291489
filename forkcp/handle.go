package forkcp

import (
	"fmt"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Kind says what sort of open file a Handle holds.
type Kind uint8

// The kinds. The values are those of the stream format.
const (
	KindFile   Kind = 1 // a regular file
	KindDir    Kind = 2 // a directory
	KindPipe   Kind = 3 // a pipe or FIFO
	KindSocket Kind = 4 // a socket
	KindOther  Kind = 5 // anything else: devices, eventfd, memfd-less anon inodes...
)

func (k Kind) valid() bool { return k >= KindFile && k <= KindOther }

func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDir:
		return "dir"
	case KindPipe:
		return "pipe"
	case KindSocket:
		return "socket"
	case KindOther:
		return "other"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// KindOf reports the kind of the open file at descriptor fd.
func KindOf(fd int) (Kind, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("forkcp: fstat %d: %w", fd, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return KindFile, nil
	case unix.S_IFDIR:
		return KindDir, nil
	case unix.S_IFIFO:
		return KindPipe, nil
	case unix.S_IFSOCK:
		return KindSocket, nil
	}
	return KindOther, nil
}

// Flags are the descriptor flags recorded with a Handle: what fcntl
// F_GETFD returns for a descriptor, as opposed to the status flags
// (O_APPEND, O_NONBLOCK...) of the open file, which travel with it.
type Flags uint32

// FlagCloexec records FD_CLOEXEC: the descriptor is closed when the
// process that holds it executes another program.
const FlagCloexec Flags = 1 << 0

// knownFlags are the flags stream version 1 defines.
const knownFlags = FlagCloexec

// MaxDescription is the longest description a Handle may carry, in bytes.
const MaxDescription = 4096

// Handle is one OS descriptor with its metadata and a reference count.
//
// The descriptor is closed when the last reference is dropped, never
// before: whoever holds a reference may use FD without racing a close.
// NewHandle returns a Handle with one reference. A HandleMap holds one for
// each number the handle is installed at, a Snapshot one per entry, and
// Lookup returns one to its caller.
type Handle struct {
	fd    int
	kind  Kind
	desc  string
	flags atomic.Uint32
	refs  atomic.Int64
	// osCloexec is true when fd is known to carry FD_CLOEXEC at the OS
	// level (forkcp created it so), so that a spawned child cannot inherit
	// it by accident.
	osCloexec bool
}

// NewHandle wraps descriptor fd, which the Handle then owns: it is closed
// when the last reference to the Handle is released. desc is a
// description for diagnostics (a path, an address), at most MaxDescription
// bytes.
func NewHandle(fd int, kind Kind, flags Flags, desc string) (*Handle, error) {
	if fd < 0 {
		return nil, fmt.Errorf("forkcp: new handle: descriptor %d: %w", fd, unix.EBADF)
	}
	if !kind.valid() {
		return nil, fmt.Errorf("forkcp: new handle: invalid kind %d", uint8(kind))
	}
	if flags&^knownFlags != 0 {
		return nil, fmt.Errorf("forkcp: new handle: unknown flags %#x", uint32(flags&^knownFlags))
	}
	if len(desc) > MaxDescription {
		return nil, fmt.Errorf("forkcp: new handle: description of %d bytes (at most %d)", len(desc), MaxDescription)
	}
	return newHandle(fd, kind, flags, desc), nil
}

// newHandle is NewHandle without the checks, for values already valid.
func newHandle(fd int, kind Kind, flags Flags, desc string) *Handle {
	h := &Handle{fd: fd, kind: kind, desc: desc}
	h.flags.Store(uint32(flags))
	h.refs.Store(1)
	return h
}

// DupHandle returns a Handle on a duplicate of fd (close-on-exec at the OS
// level); the caller keeps fd. The kind is read with fstat.
func DupHandle(fd int, flags Flags, desc string) (*Handle, error) {
	kind, err := KindOf(fd)
	if err != nil {
		return nil, err
	}
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("forkcp: dup %d: %w", fd, err)
	}
	h, err := NewHandle(nfd, kind, flags, desc)
	if err != nil {
		unix.Close(nfd)
		return nil, err
	}
	h.osCloexec = true
	return h, nil
}

// HandleOf returns a Handle on a duplicate of the descriptor behind c: an
// *os.File, a *net.TCPListener, a *net.UnixConn... The caller keeps c.
func HandleOf(c syscall.Conn, flags Flags, desc string) (*Handle, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("forkcp: handle of %T: %w", c, err)
	}
	var h *Handle
	var herr error
	if err := rc.Control(func(fd uintptr) { h, herr = DupHandle(int(fd), flags, desc) }); err != nil {
		return nil, fmt.Errorf("forkcp: handle of %T: %w", c, err)
	}
	return h, herr
}

// FD returns the descriptor. It is open as long as the caller holds a
// reference to the Handle.
func (h *Handle) FD() int { return h.fd }

// Kind returns the kind of the open file.
func (h *Handle) Kind() Kind { return h.kind }

// Flags returns the recorded descriptor flags.
func (h *Handle) Flags() Flags { return Flags(h.flags.Load()) }

// Description returns the description given at creation.
func (h *Handle) Description() string { return h.desc }

// String describes the handle for diagnostics.
func (h *Handle) String() string {
	return fmt.Sprintf("%s fd %d %q", h.kind, h.fd, h.desc)
}

// File returns an *os.File on a duplicate of the descriptor, for use with
// net.FileListener, net.FileConn and the like. The caller owns the file
// and must close it; the Handle is not affected.
func (h *Handle) File() (*os.File, error) {
	nfd, err := unix.FcntlInt(uintptr(h.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("forkcp: dup %d: %w", h.fd, err)
	}
	return os.NewFile(uintptr(nfd), h.desc), nil
}

// Acquire takes a reference. The caller must already hold one (directly,
// or through a map or a snapshot it knows to be alive).
func (h *Handle) Acquire() *Handle {
	if h.refs.Add(1) <= 1 {
		panic("forkcp: Acquire on a Handle whose descriptor was already closed")
	}
	return h
}

// Release drops a reference. Dropping the last one closes the descriptor
// and returns close's error.
func (h *Handle) Release() error {
	switch n := h.refs.Add(-1); {
	case n > 0:
		return nil
	case n == 0:
		if err := unix.Close(h.fd); err != nil {
			return fmt.Errorf("forkcp: close %s: %w", h, err)
		}
		return nil
	default:
		panic("forkcp: Handle released more times than acquired")
	}
}

// releaseAll releases every handle, returning the first error.
func releaseAll(hs []*Handle) error {
	var first error
	for _, h := range hs {
		if err := h.Release(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
