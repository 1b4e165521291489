package trace

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"golang.org/x/sys/unix"
)

// Program is one program a process ran.
type Program struct {
	Path          string   `json:"path,omitempty"`
	Argv          []string `json:"argv,omitempty"`
	ArgvTruncated bool     `json:"argv_truncated,omitempty"`
}

// Node is one process of the tree.
type Node struct {
	PID int `json:"pid"`
	// Via is how the parent created the process; empty for a root (a
	// process the trace shows running but not being created).
	Via string `json:"via,omitempty"`
	// Programs lists what the process ran: the program it started with
	// (a spawn's path; for a fork, the parent's program at the fork), then
	// each successful exec. Empty when the trace does not say.
	Programs []Program `json:"programs,omitempty"`
	// Platform is PlatformPtrace when the libos host traced the process
	// (some line of its own says so); empty otherwise.
	Platform string `json:"platform,omitempty"`
	// Status is the wait status of its exit line, when the trace has one.
	Status   *int    `json:"status,omitempty"`
	Children []*Node `json:"children,omitempty"`
}

// Tree builds the process tree of a trace: every process that wrote an
// event or was created by one, under the process that created it
// (successful spawn and fork events with a child). Roots come in the order
// they first appear, children in the order they were created.
//
// Lines of different processes are not in time order (a child may write
// before its parent reports the spawn), so parents come from the child
// fields alone; a process's own lines are in order. An exec line with
// errno 0 is an attempt: it succeeded unless the next line of the same
// thread is an exec line with errno set. The same holds for spawn lines
// via vfork, which the vfork child writes around its exec. When a pid is created twice
// (reused, or a damaged trace), the first creation wins; a creation that
// would make a process its own ancestor is ignored.
func Tree(evs []Event) []*Node {
	b := newTreeBuilder(evs)
	return b.roots
}

type proc struct {
	node     *Node
	parent   *proc // nil for a root
	created  int   // index of the creating event, -1 for a root
	start    *Program
	computed bool  // start is set
	execs    []int // indices of its successful execs, in order
}

type treeBuilder struct {
	evs    []Event
	failed map[int]bool // attempts that failed
	procs  map[int]*proc
	roots  []*Node
}

func newTreeBuilder(evs []Event) *treeBuilder {
	b := &treeBuilder{evs: evs, failed: failedAttempts(evs), procs: map[int]*proc{}}
	var order []*proc
	get := func(pid int) *proc {
		p := b.procs[pid]
		if p == nil {
			p = &proc{node: &Node{PID: pid}, created: -1}
			b.procs[pid] = p
			order = append(order, p)
		}
		return p
	}
	for i := range evs {
		e := &evs[i]
		p := get(e.PID)
		if e.Platform == PlatformPtrace {
			p.node.Platform = PlatformPtrace // the host writes only the lines of traced processes
		}
		if e.Event == EventExit {
			p.node.Status = e.Status
			continue
		}
		if e.Event == EventExec && e.Errno == 0 && !b.failed[i] {
			p.execs = append(p.execs, i)
		}
		// A lazy vfork whose exec failed after it had to make a real
		// child still created that child (the fallback rides on the
		// failure line).
		realChild := e.Fallback != "" && e.Child > 0
		if e.Event == EventExec || (e.Errno != 0 || b.failed[i]) && !realChild || e.Child <= 0 {
			continue
		}
		c := get(e.Child)
		if c.created >= 0 || isAncestor(c, p) {
			continue
		}
		c.parent, c.created = p, i
		c.node.Via = e.Via
		p.node.Children = append(p.node.Children, c.node)
	}
	for _, p := range order {
		if s := b.startOf(p); s != nil {
			p.node.Programs = append(p.node.Programs, *s)
		}
		for _, i := range p.execs {
			p.node.Programs = append(p.node.Programs, programOf(&evs[i]))
		}
		if p.parent == nil {
			b.roots = append(b.roots, p.node)
		}
	}
	return b
}

// isAncestor reports whether a is p or one of p's ancestors.
func isAncestor(a, p *proc) bool {
	for ; p != nil; p = p.parent {
		if p == a {
			return true
		}
	}
	return false
}

// isAttempt reports whether e is written before an exec, so that a second
// line with errno set follows if the exec returns: an exec line, or a
// spawn line via vfork (a vfork child reports its exec as its parent's
// spawn, under the parent's pid and tid).
func isAttempt(e *Event) bool {
	return e.Event == EventExec || (e.Event == EventSpawn && e.Via == ViaVfork)
}

// failedAttempts returns the indices of the attempts (see isAttempt) with
// errno 0 that a failure line answered: a line of the same kind (and, for
// vfork, the same child) with errno set, next after the attempt among the
// lines of the same thread.
func failedAttempts(evs []Event) map[int]bool {
	type thread struct{ pid, tid int }
	pending := map[thread]int{}
	failed := map[int]bool{}
	for i := range evs {
		e := &evs[i]
		t := thread{e.PID, e.TID}
		j, ok := pending[t]
		delete(pending, t)
		switch {
		case !isAttempt(e):
		case e.Errno == 0:
			pending[t] = i
		case ok && evs[j].Event == e.Event && evs[j].Via == e.Via && evs[j].Child == e.Child:
			failed[j] = true
		}
	}
	return failed
}

func programOf(e *Event) Program {
	return Program{Path: e.Path, Argv: e.Argv, ArgvTruncated: e.ArgvTruncated}
}

// startOf returns the program p started with, or nil if unknown.
func (b *treeBuilder) startOf(p *proc) *Program {
	if p.computed {
		return p.start
	}
	p.computed = true
	if p.created >= 0 {
		e := &b.evs[p.created]
		if e.Event == EventSpawn && e.Errno == 0 && !b.failed[p.created] {
			prog := programOf(e)
			p.start = &prog
		} else {
			p.start = b.programAt(p.parent, p.created)
		}
	}
	return p.start
}

// programAt returns the program p was running when it wrote event i.
func (b *treeBuilder) programAt(p *proc, i int) *Program {
	for k := len(p.execs) - 1; k >= 0; k-- {
		if j := p.execs[k]; j < i {
			prog := programOf(&b.evs[j])
			return &prog
		}
	}
	// Ancestors only: the parent links are acyclic, so this ends.
	return b.startOf(p)
}

// WriteTree prints the tree, one process a line, children indented by two
// spaces under their parent:
//
//	4000 (program not in the trace)
//	  4001 [posix_spawnp] /bin/sh -c 'cc -c a.c' => /usr/bin/cc -c a.c
//	    4003 [vfork] /usr/bin/static-tool (ptrace) exit 1
//
// The bracket names how the process was created; "=>" separates the
// programs it ran (see Node.Programs); "(ptrace)" marks a process the
// host traced, and the end shows how it ended when the trace says.
func WriteTree(w io.Writer, roots []*Node) error {
	var sb strings.Builder
	var walk func(n *Node, depth int)
	walk = func(n *Node, depth int) {
		sb.WriteString(strings.Repeat("  ", depth))
		sb.WriteString(strconv.Itoa(n.PID))
		if n.Via != "" {
			fmt.Fprintf(&sb, " [%s]", n.Via)
		}
		if len(n.Programs) == 0 {
			sb.WriteString(" (program not in the trace)")
		}
		for i, p := range n.Programs {
			if i > 0 {
				sb.WriteString(" =>")
			}
			sb.WriteByte(' ')
			sb.WriteString(p.String())
		}
		if n.Platform == PlatformPtrace {
			sb.WriteString(" (ptrace)")
		}
		if n.Status != nil {
			sb.WriteByte(' ')
			sb.WriteString(StatusString(*n.Status))
		}
		sb.WriteByte('\n')
		for _, c := range n.Children {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// String shows the program as a shell would: its path, then argv[1:],
// quoted where needed; "..." marks a truncated argv.
func (p Program) String() string {
	path := p.Path
	var args []string
	if len(p.Argv) > 0 {
		args = p.Argv[1:]
		if path == "" {
			path = p.Argv[0]
		}
	}
	if path == "" {
		return "?"
	}
	words := []string{quote(path)}
	for _, a := range args {
		words = append(words, quote(a))
	}
	if p.ArgvTruncated {
		words = append(words, "...")
	}
	return strings.Join(words, " ")
}

// quote returns s unchanged when a shell would read it as one word, in
// single quotes when it is printable, else as a Go string literal.
func quote(s string) string {
	if s == "" {
		return "''"
	}
	plain, printable := true, true
	for _, r := range s {
		switch {
		case r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("@%+=:,./_-", r)):
		case unicode.IsPrint(r):
			plain = false
		default:
			plain, printable = false, false
		}
	}
	switch {
	case plain:
		return s
	case printable:
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	default:
		return strconv.Quote(s)
	}
}

// StatusString describes a wait status: "exit 3", "killed by SIGKILL",
// "killed by SIGSEGV (core dumped)".
func StatusString(status int) string {
	ws := syscall.WaitStatus(status)
	switch {
	case ws.Exited():
		return "exit " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		s := "killed by " + signalName(ws.Signal())
		if ws.CoreDump() {
			s += " (core dumped)"
		}
		return s
	}
	return fmt.Sprintf("status %#x", status)
}

func signalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return "signal " + strconv.Itoa(int(sig))
}
