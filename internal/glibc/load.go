// Package glibc calls the running glibc's posix_spawn family from Go through
// purego, without cgo. The project uses it as the oracle of differential
// tests and as a benchmark baseline.
//
// Every pointer handed to C points into Go heap memory that this package
// keeps alive for the duration of the call; glibc copies what it keeps (the
// paths of file actions), so nothing Go-owned is retained by C afterwards.
//
// Signal masks: posix_spawn gives the child the signal mask of the calling
// thread unless POSIX_SPAWN_SETSIGMASK is set. A purego call runs on the OS
// thread of the calling goroutine, but a goroutine may move between threads
// between calls. A caller that changes or depends on the thread's mask must
// hold runtime.LockOSThread across the mask change and the Spawn call.
package glibc

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/ebitengine/purego"
	"golang.org/x/sys/unix"
)

// libcName is the soname dlopen'ed once.
const libcName = "libc.so.6"

// compatVersion is the symbol version of the original x86_64 posix_spawn,
// which falls back to /bin/sh when exec fails with ENOEXEC.
const compatVersion = "GLIBC_2.2.5"

// MissingSymbolError reports a function the running glibc does not export.
// errors.Is(err, syscall.ENOSYS) is true for it.
type MissingSymbolError struct {
	Symbol string
}

func (e *MissingSymbolError) Error() string {
	return fmt.Sprintf("glibc: %s is not provided by the running glibc (%s)", e.Symbol, Version())
}

// Is makes errors.Is(err, syscall.ENOSYS) hold.
func (e *MissingSymbolError) Is(target error) bool { return target == syscall.ENOSYS }

// symbol is one resolved libc function; addr is 0 when it is missing.
type symbol struct {
	name    string
	version string // non-empty: resolved with dlvsym
	addr    uintptr
}

var (
	symPosixSpawn       = &symbol{name: "posix_spawn"}
	symPosixSpawnp      = &symbol{name: "posix_spawnp"}
	symPosixSpawnCompat = &symbol{name: "posix_spawn", version: compatVersion}
	symPosixSpawnpCompt = &symbol{name: "posix_spawnp", version: compatVersion}

	symFAInit         = &symbol{name: "posix_spawn_file_actions_init"}
	symFADestroy      = &symbol{name: "posix_spawn_file_actions_destroy"}
	symFAAddOpen      = &symbol{name: "posix_spawn_file_actions_addopen"}
	symFAAddClose     = &symbol{name: "posix_spawn_file_actions_addclose"}
	symFAAddDup2      = &symbol{name: "posix_spawn_file_actions_adddup2"}
	symFAAddChdir     = &symbol{name: "posix_spawn_file_actions_addchdir_np"}
	symFAAddFchdir    = &symbol{name: "posix_spawn_file_actions_addfchdir_np"}
	symFAAddClosefrom = &symbol{name: "posix_spawn_file_actions_addclosefrom_np"}
	symFAAddTcsetpgrp = &symbol{name: "posix_spawn_file_actions_addtcsetpgrp_np"}

	symAttrInit           = &symbol{name: "posix_spawnattr_init"}
	symAttrDestroy        = &symbol{name: "posix_spawnattr_destroy"}
	symAttrSetFlags       = &symbol{name: "posix_spawnattr_setflags"}
	symAttrSetPgroup      = &symbol{name: "posix_spawnattr_setpgroup"}
	symAttrSetSigMask     = &symbol{name: "posix_spawnattr_setsigmask"}
	symAttrSetSigDefault  = &symbol{name: "posix_spawnattr_setsigdefault"}
	symAttrSetSchedParam  = &symbol{name: "posix_spawnattr_setschedparam"}
	symAttrSetSchedPolicy = &symbol{name: "posix_spawnattr_setschedpolicy"}

	symVersion = &symbol{name: "gnu_get_libc_version"}

	allSymbols = []*symbol{
		symPosixSpawn, symPosixSpawnp, symPosixSpawnCompat, symPosixSpawnpCompt,
		symFAInit, symFADestroy, symFAAddOpen, symFAAddClose, symFAAddDup2,
		symFAAddChdir, symFAAddFchdir, symFAAddClosefrom, symFAAddTcsetpgrp,
		symAttrInit, symAttrDestroy, symAttrSetFlags, symAttrSetPgroup,
		symAttrSetSigMask, symAttrSetSigDefault, symAttrSetSchedParam,
		symAttrSetSchedPolicy, symVersion,
	}
)

var (
	loadOnce sync.Once
	loadErr  error
	version  string
)

// Load opens libc.so.6 and resolves the functions this package calls. It
// is idempotent and safe for concurrent use; the other functions call it
// themselves. A function the running glibc lacks is not a Load error: using
// it returns a *MissingSymbolError.
func Load() error {
	loadOnce.Do(func() { loadErr = load() })
	return loadErr
}

func load() error {
	handle, err := purego.Dlopen(libcName, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return fmt.Errorf("glibc: dlopen %s: %w", libcName, err)
	}
	// dlvsym lives in libc.so.6 itself since glibc 2.34 and in libdl.so.2
	// before; RTLD_DEFAULT finds it in either once libc is loaded.
	dlvsym, _ := purego.Dlsym(handle, "dlvsym")
	if dlvsym == 0 {
		dlvsym, _ = purego.Dlsym(purego.RTLD_DEFAULT, "dlvsym")
	}
	// With FORKLESS_GLIBC_GLOBAL=1 the spawn functions are looked up in
	// the global scope, where an LD_PRELOAD library (lib/libforkless.so)
	// comes before libc: that is how the differential tests reach the C
	// engine through this package.
	global := os.Getenv("FORKLESS_GLIBC_GLOBAL") == "1"
	for _, s := range allSymbols {
		h := handle
		if global && s.name == "posix_spawn" || global && s.name == "posix_spawnp" {
			h = purego.RTLD_DEFAULT
		}
		if s.version == "" {
			s.addr, _ = purego.Dlsym(h, s.name)
			continue
		}
		if dlvsym == 0 {
			continue
		}
		name, ver := cString(s.name), cString(s.version)
		r, _, _ := purego.SyscallN(dlvsym, h,
			uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(&ver[0])))
		s.addr = r
	}
	if symVersion.addr == 0 {
		return errors.New("glibc: " + libcName + " has no gnu_get_libc_version: not glibc")
	}
	r, _, _ := purego.SyscallN(symVersion.addr)
	version = unix.BytePtrToString(*(**byte)(unsafe.Pointer(&r)))
	return nil
}

// Version returns gnu_get_libc_version(), e.g. "2.36", or "" when libc
// cannot be loaded.
func Version() string {
	if Load() != nil {
		return ""
	}
	return version
}

// Has reports whether the running glibc exports the named function. The
// compat spawns are named "posix_spawn@GLIBC_2.2.5" and
// "posix_spawnp@GLIBC_2.2.5".
func Has(name string) bool {
	if Load() != nil {
		return false
	}
	for _, s := range allSymbols {
		full := s.name
		if s.version != "" {
			full += "@" + s.version
		}
		if full == name {
			return s.addr != 0
		}
	}
	return false
}

// fullName is the symbol's name as Has and errors spell it.
func (s *symbol) fullName() string {
	if s.version != "" {
		return s.name + "@" + s.version
	}
	return s.name
}

// resolve returns the function's address, or an error when libc cannot be
// loaded or lacks the function.
func (s *symbol) resolve() (uintptr, error) {
	if err := Load(); err != nil {
		return 0, err
	}
	if s.addr == 0 {
		return 0, &MissingSymbolError{Symbol: s.fullName()}
	}
	return s.addr, nil
}

// call calls a function that returns 0 or an error number, as all the
// posix_spawn functions do. Arguments that are pointers converted to uintptr
// in the call expression are kept alive and unmoved until call returns.
//
//go:uintptrescapes
func (s *symbol) call(args ...uintptr) error {
	fn, err := s.resolve()
	if err != nil {
		return err
	}
	r, _, _ := purego.SyscallN(fn, args...)
	if rc := int32(r); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

// cString returns s as a NUL-terminated byte slice in Go heap memory. A
// NUL inside s truncates the C view of it, as C would.
func cString(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

// hasNUL reports whether s cannot be a C string.
func hasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }
