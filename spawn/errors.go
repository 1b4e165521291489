package spawn

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Error is a failed spawn: which program, which step of the child's work
// failed, and the errno. errors.Is(err, unix.ENOENT) and the like work.
type Error struct {
	Path  string        // the program as given to Spawn or SpawnP
	Step  string        // e.g. "exec", "file action 2 (open /y)", "setsid"
	Errno syscall.Errno // the error the step returned
}

func (e *Error) Error() string {
	name := unix.ErrnoName(e.Errno)
	if name == "" {
		name = fmt.Sprintf("errno %d", int(e.Errno))
	}
	return fmt.Sprintf("spawn %s: %s: %s (%s)", e.Path, e.Step, name, e.Errno.Error())
}

// Unwrap returns the errno.
func (e *Error) Unwrap() error { return e.Errno }
