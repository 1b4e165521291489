package forkcp

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// simulate runs steps on a descriptor table that maps numbers to file
// names, as a child's dup2 and close would, failing on a read of a closed
// number.
func simulate(table map[int]string, steps []step) error {
	for _, st := range steps {
		f, ok := table[st.from]
		if !ok {
			return fmt.Errorf("step %v reads closed descriptor %d", st, st.from)
		}
		if st.to < 0 {
			delete(table, st.from)
		} else {
			table[st.to] = f
		}
	}
	return nil
}

// checkPlan runs a plan and checks every target ends on its source's file,
// no scratch number stays open, and descriptors outside the moves are
// untouched.
func checkPlan(t *testing.T, moves []move, bystanders []int) []step {
	t.Helper()
	table := map[int]string{}
	top := 0
	for _, mv := range moves {
		table[mv.from] = fmt.Sprintf("file%d", mv.from)
		top = max(top, mv.from, mv.to)
	}
	for _, b := range bystanders {
		table[b] = fmt.Sprintf("file%d", b)
		top = max(top, b)
	}
	steps := planMoves(moves, top+1)
	want := map[int]string{}
	for k, v := range table {
		want[k] = v
	}
	require.NoError(t, simulate(table, steps))
	for _, mv := range moves {
		assert.Equal(t, fmt.Sprintf("file%d", mv.from), table[mv.to], "move %v", mv)
	}
	for n := range table {
		assert.LessOrEqual(t, n, top, "scratch %d left open", n)
	}
	for _, b := range bystanders {
		assert.Equal(t, want[b], table[b], "bystander %d", b)
	}
	return steps
}

func TestPlanMoves(t *testing.T) {
	tests := []struct {
		name  string
		moves []move
		steps []step // nil: only checked by simulation
	}{
		{"none", nil, []step{}},
		{"disjoint: in order, no map", []move{{10, 3}, {11, 4}}, []step{{10, 3}, {11, 4}}},
		{"onto itself clears close-on-exec", []move{{3, 3}}, []step{{3, 3}}},
		{"chain", []move{{3, 4}, {4, 5}, {5, 6}}, []step{{5, 6}, {4, 5}, {3, 4}}},
		{"swap", []move{{3, 4}, {4, 3}}, []step{{4, 5}, {3, 4}, {5, 3}, {5, -1}}},
		{"rotation", []move{{3, 4}, {4, 5}, {5, 3}}, nil},
		{"one source, many targets", []move{{3, 4}, {3, 5}, {3, 6}}, nil},
		{"shared source in a cycle", []move{{3, 4}, {4, 3}, {4, 5}, {3, 6}}, nil},
		{"two cycles", []move{{3, 4}, {4, 3}, {5, 6}, {6, 5}}, nil},
		{"cycle with a tail", []move{{3, 4}, {4, 3}, {3, 9}, {9, 10}}, nil},
		{"self plus reader", []move{{3, 3}, {3, 4}}, []step{{3, 3}, {3, 4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := checkPlan(t, tt.moves, []int{0, 1, 2})
			if tt.steps != nil {
				assert.Equal(t, tt.steps, steps)
			}
		})
	}
}

func TestPlanMovesNoConflictIsOneDup2Each(t *testing.T) {
	var moves []move
	for i := range 1000 {
		moves = append(moves, move{from: 5000 + i, to: 3 + i})
	}
	steps := checkPlan(t, moves, nil)
	assert.Len(t, steps, 1000)
}

// TestPlanMovesRandom checks random permutations and overlaps of sources
// and targets against the simulator.
func TestPlanMovesRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := 1 + rng.IntN(12)
		space := n + rng.IntN(8) // small, so sources and targets collide
		targets := rng.Perm(space)[:n]
		moves := make([]move, n)
		for i := range moves {
			moves[i] = move{from: rng.IntN(space), to: targets[i]}
		}
		steps := checkPlan(t, moves, nil)
		if t.Failed() {
			t.Fatalf("moves %v: steps %v", moves, steps)
		}
	}
}
