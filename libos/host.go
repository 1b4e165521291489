package libos

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forkless/forkless/internal/trace"
)

// Environment variables the host gives every process of the tree.
const (
	EnvHost    = "FORKLESS_HOST"     // the host's socket (SOCK_SEQPACKET)
	EnvHostPID = "FORKLESS_HOST_PID" // the host's pid (the ptrace platform's tracer)
)

// Config configures a Host.
type Config struct {
	Policy Policy
	// Trace receives every recorded event as one trace line (schema v1);
	// nil: none. Lines are written by one writer at a time.
	Trace io.Writer
	// Dir is where the socket is made; "": a new temporary directory,
	// removed by Close.
	Dir string
	// NoGuard: no guard process (see GuardMain). The cgroup, when there
	// is one, is still ended by Close, but not when the host is killed.
	NoGuard bool
	// GuardExe is the executable started as the guard with GuardArg as
	// its first argument; "": os.Executable().
	GuardExe string
	// NoCgroup: do not make a cgroup for the tree even when possible.
	NoCgroup bool
}

// Exec is one program a process ran (spawned with, or exec'd).
type Exec struct {
	TsNs int64      `json:"ts_ns"`
	Path string     `json:"path"`
	Argv []string   `json:"argv,omitempty"`
	FDs  []trace.FD `json:"fds,omitempty"` // what the program inherited
}

// Process is one entry of the process table.
type Process struct {
	PID      int        `json:"pid"`
	PPID     int        `json:"ppid"`
	Path     string     `json:"path,omitempty"` // the current program
	Argv     []string   `json:"argv,omitempty"`
	Via      string     `json:"via"`      // how it was created; "root" for the root
	Platform string     `json:"platform"` // trace.PlatformPreload or trace.PlatformPtrace
	StartNs  int64      `json:"start_ns"`
	ExitNs   int64      `json:"exit_ns,omitempty"` // 0: not known to have ended
	Status   *int       `json:"status,omitempty"`  // raw wait status, when reported
	ForkFDs  []trace.FD `json:"fork_fds,omitempty"`
	Execs    []Exec     `json:"execs,omitempty"`
}

// ViaRoot is the Via of the process forkless run started.
const ViaRoot = "root"

// Host is the host of a process tree: the process table, the event
// stream, the process limit, the socket the preload platform reports on,
// and the tree's lifetime (cgroup and guard).
type Host struct {
	cfg  Config
	pid  int
	dir  string // socket directory
	tmp  bool   // dir was made by NewHost
	sock string

	mu       sync.Mutex
	procs    map[int]*Process
	order    []int
	live     map[int]bool // pids created (or the root) and not known to have ended
	reserved int          // outstanding Admit reservations
	perPID   map[int]int
	adopter  Adopter
	closed   bool

	traceMu sync.Mutex
	bad     atomic.Int64 // lines from clients dropped

	srv   *server
	watch *watcher
	cg    *cgroup
	guard *guard
}

// NewHost starts a host: the socket server, the exit watcher, the cgroup
// (root only) and the guard.
func NewHost(cfg Config) (*Host, error) {
	if err := cfg.Policy.Validate(); err != nil {
		return nil, err
	}
	h := &Host{cfg: cfg, pid: os.Getpid(), procs: map[int]*Process{}, live: map[int]bool{}, perPID: map[int]int{}}
	h.dir = cfg.Dir
	if h.dir == "" {
		d, err := os.MkdirTemp("", "forkless-host-")
		if err != nil {
			return nil, err
		}
		h.dir, h.tmp = d, true
	}
	h.sock = filepath.Join(h.dir, "host."+strconv.Itoa(h.pid)+".sock")
	var err error
	if h.watch, err = newWatcher(h.exited); err != nil {
		h.cleanupDir()
		return nil, err
	}
	if h.srv, err = newServer(h, h.sock); err != nil {
		h.watch.close()
		h.cleanupDir()
		return nil, err
	}
	if !cfg.NoCgroup {
		h.cg = newCgroup(h.pid) // nil when not possible
	}
	if !cfg.NoGuard {
		cgPath := ""
		if h.cg != nil {
			cgPath = h.cg.path
		}
		if h.guard, err = startGuard(cfg.GuardExe, h.pid, cgPath); err != nil {
			h.Close()
			return nil, fmt.Errorf("guard: %w", err)
		}
	}
	return h, nil
}

func (h *Host) cleanupDir() {
	if h.tmp {
		os.RemoveAll(h.dir)
	}
}

// Socket returns the path of the host's socket.
func (h *Host) Socket() string { return h.sock }

// Env returns what every process of the tree needs in its environment.
func (h *Host) Env() []string {
	env := []string{EnvHost + "=" + h.sock, EnvHostPID + "=" + strconv.Itoa(h.pid)}
	return append(env, h.cfg.Policy.Env()...)
}

// Policy returns the host's policy.
func (h *Host) Policy() Policy { return h.cfg.Policy }

// CgroupFD returns a descriptor of the tree's cgroup v2 directory, for
// CLONE_INTO_CGROUP (spawn.Attr.SetCgroup), or -1 when there is none. It
// stays open until Close.
func (h *Host) CgroupFD() int {
	if h.cg == nil {
		return -1
	}
	return h.cg.fd
}

// CgroupPath returns the tree's cgroup directory, "" when there is none.
func (h *Host) CgroupPath() string {
	if h.cg == nil {
		return ""
	}
	return h.cg.path
}

// SetAdopter sets who moves processes onto the ptrace platform; nil:
// adoption requests are refused.
func (h *Host) SetAdopter(a Adopter) {
	h.mu.Lock()
	h.adopter = a
	h.mu.Unlock()
}

func (h *Host) getAdopter() Adopter {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.adopter
}

// BadLines returns how many lines from clients were dropped as invalid.
func (h *Host) BadLines() int64 { return h.bad.Load() }

// Root records the process forkless run started. When the host has a
// cgroup and pid is not in it yet, pid is moved there (spawning it with
// CLONE_INTO_CGROUP avoids the window before that).
func (h *Host) Root(pid int, path string, argv []string, platform string) {
	if platform == "" {
		platform = trace.PlatformPreload
	}
	if h.cg != nil {
		h.cg.add(pid)
	}
	h.mu.Lock()
	p := h.proc(pid)
	p.PPID = h.pid
	p.Via = ViaRoot
	p.Platform = platform
	p.Path, p.Argv = path, slices.Clone(argv)
	p.StartNs = time.Now().UnixNano()
	if platform != trace.PlatformPtrace {
		// A traced root starts as forkless's stub: its exec line follows.
		p.Execs = append(p.Execs, Exec{TsNs: p.StartNs, Path: path, Argv: slices.Clone(argv)})
	}
	h.mu.Unlock()
	h.started(pid)
}

// proc returns the entry of pid, making it. Called with mu held.
func (h *Host) proc(pid int) *Process {
	p := h.procs[pid]
	if p == nil {
		p = &Process{PID: pid}
		h.procs[pid] = p
		h.order = append(h.order, pid)
	}
	return p
}

// started watches a new process for its exit.
func (h *Host) started(pid int) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.live[pid] = true
	h.mu.Unlock()
	if err := h.watch.add(pid); err != nil {
		// Gone already (reaped before we looked).
		h.exited(pid)
	}
}

// exited is called by the watcher when pid ended.
func (h *Host) exited(pid int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.live, pid)
	if p := h.procs[pid]; p != nil && p.ExitNs == 0 {
		p.ExitNs = time.Now().UnixNano()
	}
}

// Record takes one event: it updates the table and writes the line.
func (h *Host) Record(ev trace.Event) {
	h.write(ev)
	newChild := 0
	h.mu.Lock()
	platform := ev.Platform
	if platform == "" {
		platform = trace.PlatformPreload
	}
	switch ev.Event {
	case trace.EventSpawn, trace.EventFork:
		if ev.Errno != 0 || ev.Child <= 0 {
			break
		}
		c := h.proc(ev.Child)
		c.PPID, c.Via = ev.PID, ev.Via
		c.setPlatform(platform)
		if c.StartNs == 0 {
			c.StartNs = ev.TsNs
		}
		if ev.Event == trace.EventSpawn {
			c.addExec(Exec{TsNs: ev.TsNs, Path: ev.Path, Argv: ev.Argv, FDs: ev.FDs})
		} else {
			// A fork runs its parent's program, with the parent's table.
			if par := h.procs[ev.PID]; par != nil && c.Path == "" {
				c.Path, c.Argv = par.Path, par.Argv
			}
			c.ForkFDs = ev.FDs
		}
		newChild = ev.Child
	case trace.EventExec:
		p := h.proc(ev.PID)
		if p.PPID == 0 {
			p.PPID = ev.PPID
		}
		p.setPlatform(platform)
		if ev.Errno == 0 {
			p.addExec(Exec{TsNs: ev.TsNs, Path: ev.Path, Argv: ev.Argv, FDs: ev.FDs})
		} else if n := len(p.Execs); n > 0 && p.Execs[n-1].Path == ev.Path {
			// The attempt before failed: take it back.
			p.Execs = p.Execs[:n-1]
			if n > 1 {
				p.Path, p.Argv = p.Execs[n-2].Path, p.Execs[n-2].Argv
			}
		}
	case trace.EventExit:
		p := h.proc(ev.PID)
		if p.PPID == 0 {
			p.PPID = ev.PPID
		}
		st := *ev.Status
		p.Status = &st
		if p.ExitNs == 0 {
			p.ExitNs = ev.TsNs
		}
		delete(h.live, ev.PID)
	}
	if ev.Platform == trace.PlatformPtrace {
		h.proc(ev.PID).setPlatform(trace.PlatformPtrace) // the host writes only the lines of traced processes
	}
	h.mu.Unlock()
	if newChild > 0 {
		h.started(newChild)
	}
}

// setPlatform records where the process runs. Once a line showed it
// traced, it stays on the ptrace platform (a traced process cannot leave
// it): lines of different processes arrive in any order, and the
// library's line that created an adopted process may come after the
// host's lines of it.
func (p *Process) setPlatform(platform string) {
	if p.Platform != trace.PlatformPtrace {
		p.Platform = platform
	}
}

// addExec adds a program the process ran, in time order (see setPlatform
// for why lines can come late), and makes the latest its current one.
func (p *Process) addExec(e Exec) {
	i := len(p.Execs)
	for i > 0 && p.Execs[i-1].TsNs > e.TsNs {
		i--
	}
	p.Execs = slices.Insert(p.Execs, i, e)
	last := p.Execs[len(p.Execs)-1]
	p.Path, p.Argv = last.Path, last.Argv
}

// write sends ev to the trace writer.
func (h *Host) write(ev trace.Event) {
	if h.cfg.Trace == nil {
		return
	}
	line, err := trace.Marshal(ev)
	if err != nil {
		return
	}
	line = append(line, '\n')
	h.traceMu.Lock()
	h.cfg.Trace.Write(line)
	h.traceMu.Unlock()
}

// Admit reserves room for a process pid is creating.
func (h *Host) Admit(pid int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	max := h.cfg.Policy.MaxProcs
	if max > 0 && len(h.live)+h.reserved >= max {
		return false
	}
	h.reserved++
	h.perPID[pid]++
	return true
}

// Settle ends one reservation of pid.
func (h *Host) Settle(pid int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.perPID[pid] == 0 {
		return
	}
	h.perPID[pid]--
	if h.perPID[pid] == 0 {
		delete(h.perPID, pid)
	}
	h.reserved--
}

// Live returns the pids believed alive, sorted.
func (h *Host) Live() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	pids := make([]int, 0, len(h.live))
	for pid := range h.live {
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	return pids
}

// Table returns a snapshot of the process table, in order of appearance.
func (h *Host) Table() []Process {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := make([]Process, 0, len(h.order))
	for _, pid := range h.order {
		p := *h.procs[pid]
		p.Argv = slices.Clone(p.Argv)
		p.ForkFDs = slices.Clone(p.ForkFDs)
		p.Execs = slices.Clone(p.Execs)
		if p.Status != nil {
			st := *p.Status
			p.Status = &st
		}
		t = append(t, p)
	}
	return t
}

// tableJSON is the shape WriteTable writes (docs/trace.md, "Process
// table").
type tableJSON struct {
	V         int       `json:"v"`
	HostPID   int       `json:"host_pid"`
	Processes []Process `json:"processes"`
}

// WriteTable writes the table as one JSON object.
func (h *Host) WriteTable(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(tableJSON{V: 1, HostPID: h.pid, Processes: h.Table()})
}

// Close stops serving, removes the socket, ends what remains of the tree
// (the cgroup's processes, then the live processes the host knows of),
// and stops the guard.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	var errs []error
	if h.cg != nil {
		h.cg.kill()
	}
	// Processes outside the cgroup (or without one): the watcher's
	// pidfds name exactly the processes we saw start.
	h.watch.killAll()
	if h.srv != nil {
		// After the kill: the server reads what the tree wrote until
		// each connection's end is closed by its process's death.
		errs = append(errs, h.srv.close())
	}
	h.watch.close()
	if h.cg != nil {
		errs = append(errs, h.cg.remove())
	}
	if h.guard != nil {
		errs = append(errs, h.guard.stop())
	}
	if h.tmp {
		errs = append(errs, os.RemoveAll(h.dir))
	} else {
		os.Remove(h.sock)
	}
	return errors.Join(errs...)
}
