package forkcp

import (
	"fmt"

	"github.com/forkless/forkless/spawn"
)

// fileActions turns a plan into spawn file actions.
func fileActions(steps []step) (*spawn.FileActions, error) {
	fa := &spawn.FileActions{}
	for _, st := range steps {
		if st.to < 0 {
			if err := fa.AddClose(st.from); err != nil {
				return nil, fmt.Errorf("forkcp: fork: close %d in the child: %w", st.from, err)
			}
			continue
		}
		if err := fa.AddDup2(st.from, st.to); err != nil {
			return nil, fmt.Errorf("forkcp: fork: descriptor %d onto %d in the child: %w (is a number at or above RLIMIT_NOFILE?)", st.from, st.to, err)
		}
	}
	return fa, nil
}

// childPlan returns the file actions that give a spawned child the
// snapshot's descriptors at their numbers plus extra (the stream's
// descriptor, or the socket), and close in the child every snapshot
// descriptor that is not close-on-exec at the OS level and not a target,
// so the child holds exactly the snapshot.
//
// With placeholders, every number gets a copy of extra.from instead of its
// handle (the socket route: Restore replaces them with what arrives).
func childPlan(s *Snapshot, extra move, placeholders bool) (*spawn.FileActions, error) {
	moves := make([]move, 0, len(s.entries)+1)
	top := max(extra.from, extra.to)
	loose := false // some descriptor may be inherited by accident
	for _, e := range s.entries {
		from := e.h.fd
		if placeholders {
			from = extra.from
		}
		moves = append(moves, move{from: from, to: e.number})
		top = max(top, e.h.fd, e.number)
		loose = loose || !e.h.osCloexec
	}
	moves = append(moves, extra)
	steps := planMoves(moves, top+1)
	if loose {
		steps = closeLoose(s, steps, extra.to)
	}
	return fileActions(steps)
}

// closeLoose appends a close of every snapshot descriptor that is not
// close-on-exec at the OS level and that no step targets, so that the
// child does not inherit it at its number in this process.
func closeLoose(s *Snapshot, steps []step, streamNum int) []step {
	targets := map[int]bool{streamNum: true}
	for _, e := range s.entries {
		targets[e.number] = true
	}
	for _, e := range s.entries {
		if fd := e.h.fd; !e.h.osCloexec && !targets[fd] {
			steps = append(steps, step{from: fd, to: -1})
			targets[fd] = true // close it once
		}
	}
	return steps
}
