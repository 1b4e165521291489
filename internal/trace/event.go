// Package trace reads the event stream that lib/libforkless.so writes when
// FORKLESS_TRACE is set (schema v1, docs/trace.md), and turns it into a
// summary and a process tree.
//
// A trace is JSON Lines: one object per line, appended by every traced
// process with a single write. The decoder is strict (unknown fields,
// duplicate fields, wrong types and out-of-range values are errors naming
// the line) and bounded (lines longer than MaxLine are rejected), and a bad
// line never stops the lines after it.
package trace

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Version is the schema version this package reads.
const Version = 1

// Event kinds.
const (
	EventSpawn = "spawn" // a new process running a new program
	EventExec  = "exec"  // this process replaced its program
	EventFork  = "fork"  // a new process copying this one
	EventExit  = "exit"  // a process ended (written by the host, or by the parent that reaped it)
)

// Platforms: who observed the event. Lines without a platform come from
// the preload library.
const (
	PlatformPreload = "preload" // lib/libforkless.so inside the process
	PlatformPtrace  = "ptrace"  // the libos host, tracing the process
)

// Policy names, on a line whose call the host's policy made fail.
const (
	PolicyExecDeny = "exec-deny" // the program is not allowed: EACCES
	PolicyMaxProcs = "max-procs" // the tree is at its process limit: EAGAIN
)

// Entry points: how the traced program asked for the event.
const (
	ViaPosixSpawn  = "posix_spawn"
	ViaPosixSpawnp = "posix_spawnp"
	ViaPidfdSpawn  = "pidfd_spawn"
	ViaSystem      = "system"
	ViaPopen       = "popen"
	ViaWordexp     = "wordexp" // a patched glibc's wordexp (glibcpatch/)
	ViaExec        = "exec"
	ViaVfork       = "vfork"
	ViaFork        = "fork"
	ViaClone       = "clone" // a clone(2)/clone3(2) seen by the ptrace platform
	ViaExit        = "exit"  // only on exit lines
)

// Vias lists the entry points in the order summaries show them.
var Vias = []string{
	ViaPosixSpawn, ViaPosixSpawnp, ViaPidfdSpawn, ViaSystem, ViaPopen, ViaWordexp,
	ViaVfork, ViaFork, ViaClone, ViaExec, ViaExit,
}

// Bounds of the schema.
const (
	MaxArgv   = 32       // entries of argv
	MaxArgLen = 256      // characters of one argv entry (see Validate)
	MaxFDs    = 64       // entries of fds
	MaxLine   = 64 << 10 // bytes of one line, newline excluded
)

// Event is one line of a trace. The first eight fields are always present;
// the others are omitted when zero.
type Event struct {
	V     int    `json:"v"`
	TsNs  int64  `json:"ts_ns"` // CLOCK_REALTIME, nanoseconds
	PID   int    `json:"pid"`   // the process making the call
	PPID  int    `json:"ppid"`
	TID   int    `json:"tid"`
	Event string `json:"event"` // EventSpawn, EventExec or EventFork
	Via   string `json:"via"`   // one of Vias
	Errno int    `json:"errno"` // 0 on success

	Child         int      `json:"child,omitempty"` // spawn, fork: the new pid
	Path          string   `json:"path,omitempty"`  // spawn, exec: the program
	Argv          []string `json:"argv,omitempty"`
	ArgvTruncated bool     `json:"argv_truncated,omitempty"`
	FDs           []FD     `json:"fds,omitempty"` // descriptors the new program inherits
	FDsTruncated  bool     `json:"fds_truncated,omitempty"`
	DurUS         int64    `json:"dur_us,omitempty"`        // spawn, fork: how long the call took
	Threads       int      `json:"threads,omitempty"`       // fork: threads of the process at the fork
	StrictClosed  int      `json:"strict_closed,omitempty"` // descriptors strict mode kept from the child
	// Fallback, on a spawn or fork via vfork, says why a lazy vfork had to
	// make a real child (e.g. "exit", "getpid", "syscall").
	Fallback string `json:"fallback,omitempty"`
	// Platform is PlatformPtrace on lines the libos host wrote for a
	// traced process; empty (or PlatformPreload) otherwise.
	Platform string `json:"platform,omitempty"`
	// Policy names the policy that made the call fail (PolicyExecDeny,
	// PolicyMaxProcs).
	Policy string `json:"policy,omitempty"`
	// Status is the wait status of an exit line (as waitpid reports it).
	Status *int `json:"status,omitempty"`
}

// Policies lists the policy names.
var Policies = []string{PolicyExecDeny, PolicyMaxProcs}

// MaxFallback bounds the length of Fallback.
const MaxFallback = 64

// FD is a descriptor the new program inherits, or (on fork lines) one the
// process held at the fork.
type FD struct {
	FD     int    `json:"fd"`
	Target string `json:"target"`          // what it refers to, as /proc/self/fd shows it
	Flags  int    `json:"flags,omitempty"` // open flags, as /proc/PID/fdinfo shows them (O_CLOEXEC included)
}

// Succeeded reports whether the call succeeded (errno 0). For an exec line
// with errno 0 this only means the exec was attempted; see Tree.
func (e *Event) Succeeded() bool { return e.Errno == 0 }

// Validate checks the values of e: the version, known event and via names
// that fit together, positive ids, non-negative counts and the bounds of
// argv and fds. It reports every problem found. Presence of the required
// fields is the decoder's job (a Go value always has them).
//
// An argv entry may hold at most MaxArgLen characters: the library cuts
// entries at MaxArgLen bytes, and bytes that are not UTF-8 reach Go as one
// U+FFFD character each, so counting characters accepts every entry the
// library can write.
func (e *Event) Validate() error {
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	if e.V != Version {
		bad("v is %d, want %d", e.V, Version)
	}
	switch e.Event {
	case EventSpawn:
		if e.Via == ViaExec {
			bad("via %q does not start processes", e.Via)
		}
	case EventExec:
		if e.Via != ViaExec {
			bad("exec event with via %q, want %q", e.Via, ViaExec)
		}
		if e.Child != 0 {
			bad("exec event with a child")
		}
	case EventFork:
		if e.Via != ViaFork && e.Via != ViaVfork && e.Via != ViaClone {
			bad("fork event with via %q, want fork, vfork or clone", e.Via)
		}
	case EventExit:
		if e.Via != ViaExit {
			bad("exit event with via %q, want %q", e.Via, ViaExit)
		}
		if e.Status == nil {
			bad("exit event without a status")
		}
	default:
		bad("unknown event %q", e.Event)
	}
	if !slices.Contains(Vias, e.Via) {
		bad("unknown via %q", e.Via)
	}
	if e.Event != EventExit && e.Via == ViaExit {
		bad("via %q on a %s event", e.Via, e.Event)
	}
	if e.Event != EventExit && e.Status != nil {
		bad("status on a %s event", e.Event)
	}
	if e.Platform != "" && e.Platform != PlatformPreload && e.Platform != PlatformPtrace {
		bad("unknown platform %q", e.Platform)
	}
	if e.Policy != "" && (!slices.Contains(Policies, e.Policy) || e.Errno == 0) {
		bad("policy %q: want one of %v, on a failed call", e.Policy, Policies)
	}
	if e.PID <= 0 {
		bad("pid %d is not positive", e.PID)
	}
	if e.TID <= 0 {
		bad("tid %d is not positive", e.TID)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"ts_ns", e.TsNs}, {"ppid", int64(e.PPID)}, {"errno", int64(e.Errno)},
		{"child", int64(e.Child)}, {"dur_us", e.DurUS}, {"threads", int64(e.Threads)},
		{"strict_closed", int64(e.StrictClosed)},
	} {
		if f.v < 0 {
			bad("%s %d is negative", f.name, f.v)
		}
	}
	if e.Fallback != "" && (e.Via != ViaVfork || len(e.Fallback) > MaxFallback) {
		bad("fallback %q: only on via vfork, at most %d bytes", e.Fallback, MaxFallback)
	}
	if len(e.Argv) > MaxArgv {
		bad("argv has %d entries, at most %d allowed", len(e.Argv), MaxArgv)
	}
	for i, a := range e.Argv {
		if n := utf8.RuneCountInString(a); n > MaxArgLen {
			bad("argv[%d] has %d characters, at most %d allowed", i, n, MaxArgLen)
		}
	}
	if len(e.FDs) > MaxFDs {
		bad("fds has %d entries, at most %d allowed", len(e.FDs), MaxFDs)
	}
	for i, f := range e.FDs {
		if f.FD < 0 {
			bad("fds[%d].fd %d is negative", i, f.FD)
		}
		if f.Flags < 0 {
			bad("fds[%d].flags %d is negative", i, f.Flags)
		}
	}
	if len(probs) > 0 {
		return errors.New(strings.Join(probs, "; "))
	}
	return nil
}
