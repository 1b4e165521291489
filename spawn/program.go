package spawn

import (
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The child runs a program: a list of ops interpreted by assembly
// (child_linux_amd64.s). The ops and everything they point to live in Go
// heap memory, which the CLONE_VM child shares; the Go GC never moves heap
// objects, and the builder keeps every buffer reachable until the parent
// has resumed.

// Op kinds. Keep in sync with child_linux_amd64.s.
const (
	opSys        = 1 // r := syscall(nr, a...); error -> fail unless ctlIgnErr
	opSkipEq     = 2 // if r == a0, skip the next a1 ops
	opFail       = 3 // fail with errno a0
	opExec       = 4 // execve(a0, a1, a2); error -> fail, or continue the PATH search (ctlSearch)
	opSearchEnd  = 5 // fail with EACCES if the search saw it, else with the last error
	opResetSig   = 6 // every caught signal -> SIG_DFL (only without CLONE_CLEAR_SIGHAND)
	opCloseRange = 7 // close_range(a0, ~0U, 0), or close(a0..a1-1) where close_range is missing
)

// Op control bits.
const (
	ctlArgR   = 1 << 0 // bits 0-5: argument i is replaced by r
	ctlIgnErr = 1 << 8 // errors are ignored
	ctlSave   = 1 << 9 // the result is stored in r
	ctlSearch = 1 << 10
)

// op is one child step; 80 bytes, laid out for the assembly.
type op struct {
	kind uint64
	nr   uint64
	a    [6]uint64
	ctl  uint64
	step uint64 // index into program.steps, reported on failure
}

// childState is shared by parent and child. Offsets are used by the
// assembly and checked by TestChildStateLayout.
type childState struct {
	ops      uintptr // 0: first op
	nops     uint64  // 8
	errno    uint64  // 16: set by a failing child
	step     uint64  // 24: the failing op's step
	r        uint64  // 32: result register
	eacces   uint64  // 40: the PATH search saw EACCES
	lasterr  uint64  // 48: the PATH search's last error
	blockall uint64  // 56: all signals, for rt_sigprocmask
	oldmask  uint64  // 64: the calling thread's mask, saved by the parent
	pidfd    int32   // 72: written by the kernel (CLONE_PIDFD)
	_        int32
}

// program is a compiled spawn.
type program struct {
	st    *childState
	ops   []op
	steps []step
	arena []byte // strings and buffers the ops point into; never moved
	chunk []byte // the free tail of the current arena chunk
	keep  [][]byte
}

// step names what an op does, for the error message. File actions are
// named only when one fails.
type step struct {
	name   string
	action int // index into the file actions, or -1
}

func newProgram(size int) *program {
	p := &program{st: &childState{blockall: ^uint64(0), pidfd: -1}}
	p.ops = make([]op, 0, 16)
	p.steps = make([]step, 0, 8)
	p.chunk = make([]byte, 0, size+256)
	return p
}

// step registers a step description and returns its index.
func (p *program) step(name string) uint64 {
	p.steps = append(p.steps, step{name: name, action: -1})
	return uint64(len(p.steps) - 1)
}

// actionStep registers file action i as a step.
func (p *program) actionStep(i int) uint64 {
	p.steps = append(p.steps, step{action: i})
	return uint64(len(p.steps) - 1)
}

func (p *program) add(o op) { p.ops = append(p.ops, o) }

// sys appends a syscall op.
func (p *program) sys(step uint64, ctl uint64, nr uintptr, args ...uintptr) {
	o := op{kind: opSys, nr: uint64(nr), ctl: ctl, step: step}
	for i, a := range args {
		o.a[i] = uint64(a)
	}
	p.add(o)
}

// alloc returns n zeroed, 8-byte aligned bytes that stay put: a full chunk
// is kept and a new one started, never grown in place.
func (p *program) alloc(n int) []byte {
	n = (n + 7) &^ 7
	if cap(p.chunk)-len(p.chunk) < n {
		p.keep = append(p.keep, p.chunk)
		p.chunk = make([]byte, 0, max(n, 4096))
	}
	start := len(p.chunk)
	p.chunk = p.chunk[:start+n]
	return p.chunk[start : start+n : start+n]
}

func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }

// buf returns a pointer to n zero bytes.
func (p *program) buf(n int) []byte { return p.alloc(n) }

// word returns a pointer to an 8-byte word holding v.
func (p *program) word(v uint64) uintptr {
	b := p.alloc(8)
	*(*uint64)(unsafe.Pointer(&b[0])) = v
	return addr(b)
}

// cstr returns a pointer to a NUL-terminated copy of s. Strings holding NUL
// cannot be passed to the kernel.
func (p *program) cstr(s string) (uintptr, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return 0, unix.EINVAL
	}
	b := p.alloc(len(s) + 1)
	copy(b, s)
	return addr(b), nil
}

// cstrv returns a pointer to a NULL-terminated array of C strings.
func (p *program) cstrv(ss []string) (uintptr, error) {
	ptrs := p.alloc(8 * (len(ss) + 1))
	for i, s := range ss {
		c, err := p.cstr(s)
		if err != nil {
			return 0, err
		}
		*(*uintptr)(unsafe.Pointer(&ptrs[8*i])) = c
	}
	return addr(ptrs), nil
}

// finish seals the program: a trailing fail op guards against running off
// the end, and the state points at the ops.
func (p *program) finish() {
	p.add(op{kind: opFail, a: [6]uint64{uint64(unix.ECHILD)}, step: p.step("internal: no exec")})
	p.st.ops = uintptr(unsafe.Pointer(&p.ops[0]))
	p.st.nops = uint64(len(p.ops))
}
