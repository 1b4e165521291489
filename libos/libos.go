// Package libos is the host of a process tree run by forkless run: the
// policy, the process table and the event stream, shared by the two
// platforms that observe processes. The preload platform is
// lib/libforkless.so inside dynamically linked glibc programs, reporting
// over a unix socket; the ptrace platform (libos/ptrace) traces static and
// Go programs from outside.
package libos

import "github.com/forkless/forkless/internal/trace"

// Reporter is what a platform tells the host. Implementations are safe
// for concurrent use.
type Reporter interface {
	// Record takes one event (docs/trace.md): the process table is
	// updated from it and it is written to the trace.
	Record(ev trace.Event)
	// Admit reserves room for one more process that pid is creating. It
	// returns false when the tree is at Policy.MaxProcs: the creation
	// must then fail with EAGAIN (and be recorded with
	// trace.PolicyMaxProcs).
	Admit(pid int) bool
	// Settle ends the reservation Admit made for pid, once the creation
	// succeeded (after its event was recorded) or failed.
	Settle(pid int)
}

// Adopter moves a process onto the ptrace platform: a preloaded process
// about to exec a program the library cannot reach (static, Go) asks the
// host, which asks the Adopter to trace it. When Adopt returns nil, every
// thread of pid is traced; the process then installs the filter Filter
// returns and execs.
type Adopter interface {
	Adopt(pid int) error
	// Filter is the seccomp program (struct sock_filter entries, 8 bytes
	// each, native byte order) that sends the system calls the ptrace
	// platform handles to the tracer.
	Filter() []byte
}
