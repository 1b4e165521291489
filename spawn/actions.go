package spawn

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

type actionKind uint8

const (
	actClose actionKind = iota + 1
	actDup2
	actOpen
	actChdir
	actFchdir
	actClosefrom
	actTcsetpgrp
)

// action is one recorded file action. Paths are copied at add time, as
// posix_spawn_file_actions_addopen requires.
type action struct {
	kind  actionKind
	fd    int // close, dup2 source, open target, fchdir, closefrom, tcsetpgrp
	newfd int // dup2 target
	path  string
	flags int
	mode  uint32
}

func (a action) String() string {
	switch a.kind {
	case actClose:
		return fmt.Sprintf("close %d", a.fd)
	case actDup2:
		return fmt.Sprintf("dup2 %d %d", a.fd, a.newfd)
	case actOpen:
		return fmt.Sprintf("open %s", a.path)
	case actChdir:
		return fmt.Sprintf("chdir %s", a.path)
	case actFchdir:
		return fmt.Sprintf("fchdir %d", a.fd)
	case actClosefrom:
		return fmt.Sprintf("closefrom %d", a.fd)
	case actTcsetpgrp:
		return fmt.Sprintf("tcsetpgrp %d", a.fd)
	}
	return "unknown"
}

// FileActions is the ordered list of descriptor operations the child
// performs before exec, like posix_spawn_file_actions_t. The zero value is
// an empty list ready to use. A FileActions may be reused for many spawns
// but must not be modified concurrently with a spawn that uses it.
type FileActions struct {
	acts []action
}

// validFD reports whether every fd may name a descriptor: glibc checks
// 0 <= fd < sysconf(_SC_OPEN_MAX), which is the soft RLIMIT_NOFILE, read
// once per call as glibc does.
func validFD(fds ...int) bool {
	for _, fd := range fds {
		if fd < 0 {
			return false
		}
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return true // cannot tell; let the kernel decide at spawn time
	}
	for _, fd := range fds {
		if uint64(fd) >= lim.Cur {
			return false
		}
	}
	return true
}

// AddClose closes fd in the child. An fd that is not open at spawn time is
// not an error (as in glibc).
func (fa *FileActions) AddClose(fd int) error {
	if !validFD(fd) {
		return unix.EBADF
	}
	fa.acts = append(fa.acts, action{kind: actClose, fd: fd})
	return nil
}

// AddDup2 duplicates fd onto newfd in the child. AddDup2(fd, fd) clears
// FD_CLOEXEC on fd, so a close-on-exec descriptor can be passed on as is.
func (fa *FileActions) AddDup2(fd, newfd int) error {
	if !validFD(fd, newfd) {
		return unix.EBADF
	}
	fa.acts = append(fa.acts, action{kind: actDup2, fd: fd, newfd: newfd})
	return nil
}

// AddOpen opens path with flags and mode in the child and places it at fd,
// closing whatever fd was first. The path is evaluated in the child, after
// any earlier chdir action.
func (fa *FileActions) AddOpen(fd int, path string, flags int, mode uint32) error {
	if !validFD(fd) {
		return unix.EBADF
	}
	fa.acts = append(fa.acts, action{kind: actOpen, fd: fd, path: strings.Clone(path), flags: flags, mode: mode})
	return nil
}

// AddChdir changes the child's working directory. It affects later relative
// opens and a relative executable path.
func (fa *FileActions) AddChdir(path string) error {
	fa.acts = append(fa.acts, action{kind: actChdir, path: strings.Clone(path)})
	return nil
}

// AddFchdir changes the child's working directory to the directory open at
// fd. As in glibc the number is not checked here: a bad one fails the spawn
// with EBADF.
func (fa *FileActions) AddFchdir(fd int) error {
	fa.acts = append(fa.acts, action{kind: actFchdir, fd: fd})
	return nil
}

// AddClosefrom closes every descriptor >= from in the child.
func (fa *FileActions) AddClosefrom(from int) error {
	if !validFD(from) {
		return unix.EBADF
	}
	fa.acts = append(fa.acts, action{kind: actClosefrom, fd: from})
	return nil
}

// AddTcsetpgrp makes the child's process group the foreground group of the
// terminal at fd: the group set with Attr.SetPgroup, or the child's own.
func (fa *FileActions) AddTcsetpgrp(fd int) error {
	if !validFD(fd) {
		return unix.EBADF
	}
	fa.acts = append(fa.acts, action{kind: actTcsetpgrp, fd: fd})
	return nil
}

// Len returns the number of recorded actions.
func (fa *FileActions) Len() int { return len(fa.acts) }

// Reset removes every action.
func (fa *FileActions) Reset() { fa.acts = fa.acts[:0] }
