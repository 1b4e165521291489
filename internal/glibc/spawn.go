package glibc

import (
	"runtime"
	"syscall"
	"unsafe"

	"github.com/ebitengine/purego"
)

// pidSentinel is stored in the pid before the call; glibc never writes a
// negative pid, so the value still being there means it wrote nothing.
const pidSentinel int32 = -0x21524111 // 0xdeadbeef

// Options selects which glibc entry point Spawn calls.
type Options struct {
	Search bool // posix_spawnp: search PATH (the caller's environment) for path
	Compat bool // the GLIBC_2.2.5 symbol version, which runs ENOEXEC files with /bin/sh
}

// entry returns the symbol Options selects.
func (o Options) entry() *symbol {
	switch {
	case o.Search && o.Compat:
		return symPosixSpawnpCompt
	case o.Search:
		return symPosixSpawnp
	case o.Compat:
		return symPosixSpawnCompat
	}
	return symPosixSpawn
}

// cStringArray builds a NULL-terminated array of C strings. The strings are
// referenced by the array, so keeping the array alive keeps them alive.
func cStringArray(ss []string) []*byte {
	arr := make([]*byte, len(ss)+1)
	for i, s := range ss {
		arr[i] = &cString(s)[0]
	}
	return arr
}

// Spawn calls glibc's posix_spawn (or posix_spawnp, or a compat version, as
// opt says) with path, fa and attr (nil passes NULL), and argv and envv as
// NULL-terminated arrays (a nil slice gives an empty array, never NULL).
//
// It returns the pid glibc stored, whether glibc stored a pid at all, and
// glibc's return value (0 on success). A string holding a NUL byte gives
// EINVAL without calling glibc; a libc without the entry point gives ENOSYS.
// The caller reaps the child. See the package documentation about the
// calling thread's signal mask.
func Spawn(path string, fa *FileActions, attr *Attr, argv, envv []string, opt Options) (pid int, pidWritten bool, errno syscall.Errno) {
	fn, err := opt.entry().resolve()
	if err != nil {
		return 0, false, syscall.ENOSYS
	}
	if hasNUL(path) {
		return 0, false, syscall.EINVAL
	}
	for _, list := range [][]string{argv, envv} {
		for _, s := range list {
			if hasNUL(s) {
				return 0, false, syscall.EINVAL
			}
		}
	}
	var faPtr, attrPtr *uint64
	if fa != nil {
		if fa.ok() != nil {
			return 0, false, syscall.EINVAL
		}
		faPtr = &fa.raw[0]
	}
	if attr != nil {
		if attr.ok() != nil {
			return 0, false, syscall.EINVAL
		}
		attrPtr = &attr.raw[0]
	}
	cpath := cString(path)
	cargv := cStringArray(argv)
	cenv := cStringArray(envv)
	pidBuf := new(int32)
	*pidBuf = pidSentinel

	rc := callSpawn(fn, uintptr(unsafe.Pointer(pidBuf)), uintptr(unsafe.Pointer(&cpath[0])),
		uintptr(unsafe.Pointer(faPtr)), uintptr(unsafe.Pointer(attrPtr)),
		uintptr(unsafe.Pointer(&cargv[0])), uintptr(unsafe.Pointer(&cenv[0])))

	runtime.KeepAlive(cpath)
	runtime.KeepAlive(cargv)
	runtime.KeepAlive(cenv)
	runtime.KeepAlive(fa)
	runtime.KeepAlive(attr)
	if *pidBuf != pidSentinel {
		pid, pidWritten = int(*pidBuf), true
	}
	return pid, pidWritten, syscall.Errno(rc)
}

// callSpawn calls a posix_spawn-shaped function; the pointer arguments are
// kept alive and in place until it returns.
//
//go:uintptrescapes
func callSpawn(fn uintptr, args ...uintptr) int32 {
	r, _, _ := purego.SyscallN(fn, args...)
	return int32(r)
}
