package forkcp

// move places the open file at descriptor from onto descriptor to.
type move struct{ from, to int }

// step is one file action of a spawned child: dup2(from, to), or
// close(from) when to is -1.
type step struct{ from, to int }

// planMoves orders a set of simultaneous moves into dup2 and close steps
// that a child runs one after another: when they are done, every target
// refers to the open file its source referred to at the start. Targets must
// be distinct; sources may repeat.
//
// A move is run once its target is no longer the source of a pending move.
// When only cycles remain (3->4, 4->3), one target is first saved at a
// scratch number (scratch, scratch+1, ...) and the moves reading it read
// the copy instead; the copies are closed at the end. A move onto itself
// becomes dup2(n, n), which clears FD_CLOEXEC so the descriptor survives
// exec. The plan is O(moves); without conflicts it is one dup2 per move.
func planMoves(moves []move, scratch int) []step {
	if steps, ok := planDisjoint(moves); ok {
		return steps
	}
	// Per-number state lives in slices indexed by descriptor number, up
	// to the scratch numbers (at most one per move): numbers are bounded
	// by the descriptor limit.
	size := scratch + len(moves)
	readers := make([]int32, size)    // pending moves reading each number
	writer := make([]int32, size)     // the pending move writing each number, or -1
	head := make([]int32, size)       // first pending move reading each number, or -1
	next := make([]int32, len(moves)) // the next move reading the same number
	from := make([]int, len(moves))   // current source of each move
	for i := range writer {
		writer[i], head[i] = -1, -1
	}
	steps := make([]step, 0, len(moves)+1)
	done := make([]bool, len(moves))
	for i, mv := range moves {
		from[i] = mv.from
		if mv.from == mv.to {
			steps = append(steps, step(mv)) // clears FD_CLOEXEC; nothing else writes there
			done[i] = true
			continue
		}
		readers[mv.from]++
		next[i], head[mv.from] = head[mv.from], int32(i)
		writer[mv.to] = int32(i)
	}
	var ready []int32
	for i, mv := range moves {
		if !done[i] && readers[mv.to] == 0 {
			ready = append(ready, int32(i))
		}
	}
	nscratch := 0
	cursor := 0 // moves[:cursor] are all done
	for {
		for len(ready) > 0 {
			i := ready[len(ready)-1]
			ready = ready[:len(ready)-1]
			src, to := from[i], moves[i].to
			steps = append(steps, step{src, to})
			done[i] = true
			writer[to] = -1
			if readers[src]--; readers[src] == 0 && writer[src] >= 0 {
				ready = append(ready, writer[src]) // its target is free now
			}
		}
		for cursor < len(moves) && done[cursor] {
			cursor++
		}
		if cursor == len(moves) {
			break
		}
		// Only cycles are left: copy the target of a pending move to a
		// scratch number, and let the moves reading it read the copy.
		t := moves[cursor].to
		s := scratch + nscratch
		nscratch++
		steps = append(steps, step{t, s})
		for j := head[t]; j >= 0; j = next[j] {
			from[j] = s
		}
		head[s], head[t] = head[t], -1
		readers[s], readers[t] = readers[t], 0
		ready = append(ready, int32(cursor))
	}
	for k := range nscratch {
		steps = append(steps, step{scratch + k, -1})
	}
	return steps
}

// planDisjoint is the common case without maps: when no target is the
// source of another move, the moves run in any order. It reports false
// when some target is read by another move.
func planDisjoint(moves []move) ([]step, bool) {
	top := 0
	for _, mv := range moves {
		top = max(top, mv.from)
	}
	sources := make([]uint64, top/64+1) // a bitset: numbers are bounded by the descriptor limit
	for _, mv := range moves {
		if mv.from != mv.to {
			sources[mv.from/64] |= 1 << (mv.from % 64)
		}
	}
	steps := make([]step, len(moves))
	for i, mv := range moves {
		if mv.to <= top && sources[mv.to/64]&(1<<(mv.to%64)) != 0 {
			return nil, false
		}
		steps[i] = step(mv)
	}
	return steps, true
}
