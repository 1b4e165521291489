package trace

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Summary is what a trace says about process creation.
type Summary struct {
	Events    int   `json:"events"`
	Processes int   `json:"processes"` // distinct pids: writers and created children
	SpanNs    int64 `json:"span_ns"`   // latest ts_ns minus earliest

	// Created counts the processes created, by entry point: successful
	// spawn and fork events.
	Created      map[string]int `json:"created"`
	CreatedTotal int            `json:"created_total"`

	// Latencies in microseconds from dur_us of successful spawn (fork)
	// events; events without dur_us are left out.
	SpawnLatency Latency `json:"spawn_latency_us"`
	ForkLatency  Latency `json:"fork_latency_us"`

	SpawnFailures []Failure `json:"spawn_failures"` // spawn events with errno set
	ExecFailures  []Failure `json:"exec_failures"`  // exec events with errno set

	// ThreadedForks are forks of processes with more than one thread, where
	// only the calling thread survives in the child.
	ThreadedForks []ThreadedFork `json:"threaded_forks"`

	// StrictClosed is the total of strict_closed: descriptors strict mode
	// kept from children.
	StrictClosed int `json:"strict_closed"`

	// Fallbacks counts the real children lazy vfork had to make, by
	// reason.
	Fallbacks map[string]int `json:"vfork_fallbacks"`
}

// Latency is a distribution of durations in microseconds. Percentiles are
// nearest-rank: p50 is the smallest sample at or above half of them.
type Latency struct {
	N   int   `json:"n"`
	P50 int64 `json:"p50"`
	P99 int64 `json:"p99"`
	Max int64 `json:"max"`
}

// Failure is a failed spawn or exec.
type Failure struct {
	PID   int    `json:"pid"`
	Via   string `json:"via"`
	Path  string `json:"path,omitempty"`
	Errno int    `json:"errno"`
	Error string `json:"error"` // e.g. "ENOENT (no such file or directory)"
}

// ThreadedFork is a fork in a multi-threaded process.
type ThreadedFork struct {
	PID     int    `json:"pid"`
	Via     string `json:"via"`
	Child   int    `json:"child,omitempty"`
	Threads int    `json:"threads"`
}

// Summarize computes the summary of a trace's events.
func Summarize(evs []Event) *Summary {
	s := &Summary{
		Events:        len(evs),
		Created:       map[string]int{},
		SpawnFailures: []Failure{},
		ExecFailures:  []Failure{},
		Fallbacks:     map[string]int{},
		ThreadedForks: []ThreadedFork{},
	}
	failed := failedAttempts(evs)
	pids := map[int]bool{}
	var spawnDur, forkDur []int64
	for i := range evs {
		e := &evs[i]
		pids[e.PID] = true
		s.StrictClosed += e.StrictClosed
		if e.Fallback != "" {
			s.Fallbacks[e.Fallback]++
		}
		switch e.Event {
		case EventExit:
			continue
		case EventExec:
			if e.Errno != 0 {
				s.ExecFailures = append(s.ExecFailures, failure(e))
			}
			continue
		case EventFork:
			if e.Threads > 1 {
				s.ThreadedForks = append(s.ThreadedForks, ThreadedFork{PID: e.PID, Via: e.Via, Child: e.Child, Threads: e.Threads})
			}
		}
		if e.Errno != 0 {
			if e.Event == EventSpawn {
				s.SpawnFailures = append(s.SpawnFailures, failure(e))
			}
			continue
		}
		if failed[i] {
			continue // a vfork child's exec attempt that failed
		}
		if e.Child > 0 {
			pids[e.Child] = true
		}
		s.Created[e.Via]++
		s.CreatedTotal++
		if e.DurUS > 0 {
			if e.Event == EventSpawn {
				spawnDur = append(spawnDur, e.DurUS)
			} else {
				forkDur = append(forkDur, e.DurUS)
			}
		}
	}
	s.Processes = len(pids)
	if len(evs) > 0 {
		lo, hi := evs[0].TsNs, evs[0].TsNs
		for i := range evs {
			lo, hi = min(lo, evs[i].TsNs), max(hi, evs[i].TsNs)
		}
		s.SpanNs = hi - lo
	}
	s.SpawnLatency = latency(spawnDur)
	s.ForkLatency = latency(forkDur)
	return s
}

func failure(e *Event) Failure {
	return Failure{PID: e.PID, Via: e.Via, Path: e.Path, Errno: e.Errno, Error: ErrnoString(e.Errno)}
}

// ErrnoString names an errno as "ENOENT (no such file or directory)".
func ErrnoString(n int) string {
	name := unix.ErrnoName(syscall.Errno(n))
	if name == "" {
		return fmt.Sprintf("errno %d", n)
	}
	return fmt.Sprintf("%s (%s)", name, syscall.Errno(n).Error())
}

func latency(d []int64) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	rank := func(p int) int64 { return d[(p*len(d)+99)/100-1] }
	return Latency{N: len(d), P50: rank(50), P99: rank(99), Max: d[len(d)-1]}
}

// WriteText prints the summary for people.
func (s *Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	span := time.Duration(s.SpanNs).Round(time.Microsecond)
	fmt.Fprintf(&b, "events: %d from %d processes over %v\n", s.Events, s.Processes, span)
	fmt.Fprintf(&b, "processes created: %d\n", s.CreatedTotal)
	for _, via := range Vias {
		if n := s.Created[via]; n > 0 {
			fmt.Fprintf(&b, "  %-13s %d\n", via, n)
		}
	}
	writeLatency(&b, "spawn", s.SpawnLatency)
	if s.ForkLatency.N > 0 {
		writeLatency(&b, "fork", s.ForkLatency)
	}
	fmt.Fprintf(&b, "spawn failures: %d\n", len(s.SpawnFailures))
	list(&b, s.SpawnFailures, func(f Failure) string {
		return fmt.Sprintf("pid %d %s %s: %s", f.PID, f.Via, quote(f.Path), f.Error)
	})
	fmt.Fprintf(&b, "exec failures: %d\n", len(s.ExecFailures))
	list(&b, s.ExecFailures, func(f Failure) string {
		return fmt.Sprintf("pid %d %s: %s", f.PID, quote(f.Path), f.Error)
	})
	fmt.Fprintf(&b, "forks in multi-threaded processes: %d\n", len(s.ThreadedForks))
	list(&b, s.ThreadedForks, func(f ThreadedFork) string {
		child := "failed"
		if f.Child > 0 {
			child = fmt.Sprintf("child %d", f.Child)
		}
		return fmt.Sprintf("pid %d %s with %d threads, %s", f.PID, f.Via, f.Threads, child)
	})
	fmt.Fprintf(&b, "descriptors strict mode kept from children: %d\n", s.StrictClosed)
	if len(s.Fallbacks) > 0 {
		reasons := make([]string, 0, len(s.Fallbacks))
		for r := range s.Fallbacks {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		fmt.Fprintf(&b, "lazy vfork real children:")
		for _, r := range reasons {
			fmt.Fprintf(&b, " %s %d", r, s.Fallbacks[r])
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// MaxListed is how many entries of each list the text shows; the JSON
// form has them all.
const MaxListed = 20

func list[T any](b *strings.Builder, items []T, line func(T) string) {
	for i, it := range items {
		if i == MaxListed {
			fmt.Fprintf(b, "  ... and %d more\n", len(items)-MaxListed)
			return
		}
		fmt.Fprintf(b, "  %s\n", line(it))
	}
}

func writeLatency(b *strings.Builder, what string, l Latency) {
	if l.N == 0 {
		fmt.Fprintf(b, "%s latency: no samples\n", what)
		return
	}
	plural := "s"
	if l.N == 1 {
		plural = ""
	}
	fmt.Fprintf(b, "%s latency: p50 %d us, p99 %d us, max %d us (%d %s%s)\n", what, l.P50, l.P99, l.Max, l.N, what, plural)
}

// Report is the output of `forkless trace`: the summary, the process tree
// and the decode errors, if any.
type Report struct {
	Summary *Summary `json:"summary"`
	Tree    []*Node  `json:"tree,omitempty"`
	Errors  []string `json:"errors,omitempty"` // one per bad line
}

// NewReport summarizes evs; with tree it also builds the process tree.
func NewReport(evs []Event, errs []error, tree bool) *Report {
	r := &Report{Summary: Summarize(evs)}
	if tree {
		r.Tree = Tree(evs)
	}
	for _, err := range errs {
		r.Errors = append(r.Errors, err.Error())
	}
	return r
}

// WriteText prints the summary, then the tree if the report has one. The
// errors are left to the caller.
func (r *Report) WriteText(w io.Writer) error {
	if err := r.Summary.WriteText(w); err != nil {
		return err
	}
	if len(r.Tree) == 0 {
		return nil
	}
	if _, err := io.WriteString(w, "\nprocess tree:\n"); err != nil {
		return err
	}
	return WriteTree(w, r.Tree)
}

// WriteJSON prints the report as one indented JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}
