package glibc

import (
	"errors"
	"syscall"
	"unsafe"
)

// errDestroyed is returned by methods of a FileActions or Attr that was
// never initialised by its constructor or was destroyed.
var errDestroyed = errors.New("glibc: use of an uninitialised or destroyed object")

// FileActions owns a C posix_spawn_file_actions_t. glibc keeps the actions
// in memory it mallocs; Destroy frees it. A FileActions is not safe for
// concurrent modification.
type FileActions struct {
	raw    [10]uint64 // posix_spawn_file_actions_t: 80 bytes on x86_64, 8-aligned
	inited bool
}

// NewFileActions returns an initialised, empty list of file actions.
func NewFileActions() (*FileActions, error) {
	f := new(FileActions)
	if err := symFAInit.call(uintptr(unsafe.Pointer(&f.raw))); err != nil {
		return nil, err
	}
	f.inited = true
	return f, nil
}

// ok returns an error unless f holds an initialised C object.
func (f *FileActions) ok() error {
	if f == nil || !f.inited {
		return errDestroyed
	}
	return nil
}

// AddOpen calls posix_spawn_file_actions_addopen. A path holding a NUL
// byte gives EINVAL.
func (f *FileActions) AddOpen(fd int, path string, flags int, mode uint32) error {
	if err := f.ok(); err != nil {
		return err
	}
	if hasNUL(path) {
		return syscall.EINVAL
	}
	p := cString(path)
	return symFAAddOpen.call(uintptr(unsafe.Pointer(&f.raw)), uintptr(fd),
		uintptr(unsafe.Pointer(&p[0])), uintptr(flags), uintptr(mode))
}

// AddClose calls posix_spawn_file_actions_addclose.
func (f *FileActions) AddClose(fd int) error {
	if err := f.ok(); err != nil {
		return err
	}
	return symFAAddClose.call(uintptr(unsafe.Pointer(&f.raw)), uintptr(fd))
}

// AddDup2 calls posix_spawn_file_actions_adddup2.
func (f *FileActions) AddDup2(fd, newfd int) error {
	if err := f.ok(); err != nil {
		return err
	}
	return symFAAddDup2.call(uintptr(unsafe.Pointer(&f.raw)), uintptr(fd), uintptr(newfd))
}

// AddChdir calls posix_spawn_file_actions_addchdir_np (glibc 2.29).
func (f *FileActions) AddChdir(path string) error {
	if err := f.ok(); err != nil {
		return err
	}
	if hasNUL(path) {
		return syscall.EINVAL
	}
	p := cString(path)
	return symFAAddChdir.call(uintptr(unsafe.Pointer(&f.raw)), uintptr(unsafe.Pointer(&p[0])))
}

// AddFchdir calls posix_spawn_file_actions_addfchdir_np (glibc 2.29).
func (f *FileActions) AddFchdir(fd int) error {
	if err := f.ok(); err != nil {
		return err
	}
	return symFAAddFchdir.call(uintptr(unsafe.Pointer(&f.raw)), uintptr(fd))
}

// AddClosefrom calls posix_spawn_file_actions_addclosefrom_np (glibc 2.34).
func (f *FileActions) AddClosefrom(from int) error {
	if err := f.ok(); err != nil {
		return err
	}
	return symFAAddClosefrom.call(uintptr(unsafe.Pointer(&f.raw)), uintptr(from))
}

// AddTcsetpgrp calls posix_spawn_file_actions_addtcsetpgrp_np (glibc 2.35).
func (f *FileActions) AddTcsetpgrp(fd int) error {
	if err := f.ok(); err != nil {
		return err
	}
	return symFAAddTcsetpgrp.call(uintptr(unsafe.Pointer(&f.raw)), uintptr(fd))
}

// Destroy calls posix_spawn_file_actions_destroy, freeing glibc's memory.
// Destroying twice, or a nil FileActions, does nothing.
func (f *FileActions) Destroy() {
	if f.ok() != nil {
		return
	}
	_ = symFADestroy.call(uintptr(unsafe.Pointer(&f.raw)))
	f.inited = false
}
