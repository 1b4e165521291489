// Package spawn creates processes with exact posix_spawn semantics at the cost
// floor of a vfork-style clone, independent of the parent's memory size.
//
// A spawn is described by FileActions and an Attr, exactly as with
// posix_spawn(3). The child is created with clone3(CLONE_VM|CLONE_VFORK|
// CLONE_PIDFD|CLONE_CLEAR_SIGHAND) on a reused mmap'd stack and runs a
// precompiled list of raw system calls in assembly: it never executes Go
// code. Its operations run in glibc's order: signal dispositions,
// scheduling, setsid, setpgid, reset ids, file actions, signal mask, exec.
// A failure in the child is reported through memory shared with the parent,
// which then reaps the child and returns a typed *Error.
//
// The result is a Process built on a pidfd, so Wait and Signal never race
// with pid reuse. Cmd offers an os/exec-like convenience on top.
package spawn
