package trace

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzDecode feeds arbitrary traces to the decoder. It must never panic;
// every event it returns must pass Validate and survive Marshal and
// ParseLine unchanged; the summary and the tree must not panic and must
// agree on the processes, each shown once.
//
//	go test -run '^$' -fuzz FuzzDecode ./internal/trace
func FuzzDecode(f *testing.F) {
	sample, err := os.ReadFile("testdata/sample.jsonl")
	require.NoError(f, err)
	f.Add(sample)
	for _, l := range bytes.Split(sample, []byte{'\n'}) {
		f.Add(l)
	}
	f.Add([]byte(`{"v":1,"ts_ns":1,"pid":1,"ppid":0,"tid":1,"event":"fork","via":"fork","errno":0,"child":2}` + "\n" +
		`{"v":1,"ts_ns":1,"pid":2,"ppid":1,"tid":2,"event":"fork","via":"fork","errno":0,"child":1}`))
	f.Add([]byte(`{"v":1,"argv":["\u0000\ud800",1],"fds":[{"fd":1,"target":"x","fd":2}]}`))
	f.Add([]byte("\n\n{}\n[]\nnull\n\"\\u00e9\"\n{\"v\":1e400}"))

	f.Fuzz(func(t *testing.T, data []byte) {
		evs, errs := Decode(bytes.NewReader(data))
		for _, err := range errs {
			var le *LineError
			require.True(t, errors.As(err, &le), "only line errors from a bytes.Reader: %v", err)
			assert.Positive(t, le.Line)
		}
		for _, ev := range evs {
			require.NoError(t, ev.Validate())
			b, err := Marshal(ev)
			require.NoError(t, err)
			back, err := ParseLine(b)
			require.NoError(t, err, "%s", b)
			require.Equal(t, ev, back)
		}
		r := NewReport(evs, errs, true)
		require.NoError(t, r.WriteText(io.Discard))
		require.NoError(t, r.WriteJSON(io.Discard))
		seen := map[int]bool{}
		var walk func(n *Node)
		walk = func(n *Node) {
			require.False(t, seen[n.PID], "pid %d shown twice", n.PID)
			seen[n.PID] = true
			for _, c := range n.Children {
				walk(c)
			}
		}
		for _, n := range r.Tree {
			walk(n)
		}
		require.Equal(t, r.Summary.Processes, len(seen))
	})
}
