package bench

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPercentileInterpolates(t *testing.T) {
	// 1..10: rank h = 9p.
	vals := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	assert.InDelta(t, 5.5, Percentile(vals, 0.5), 1e-12)
	assert.InDelta(t, 1.9, Percentile(vals, 0.1), 1e-12)
	assert.InDelta(t, 9.1, Percentile(vals, 0.9), 1e-12)
	assert.Equal(t, 1.0, Percentile(vals, 0))
	assert.Equal(t, 10.0, Percentile(vals, 1))
	assert.Equal(t, 10.0, Percentile(vals, 1.5), "p is clamped")

	assert.Equal(t, 7.0, Percentile([]float64{7}, 0.5))
	assert.InDelta(t, 15.0, Percentile([]float64{10, 20}, 0.5), 1e-12)
	assert.True(t, math.IsNaN(Percentile(nil, 0.5)))
}

func TestSummarize(t *testing.T) {
	// Unsorted durations of 1..11 µs; the input must stay as it was.
	var samples []time.Duration
	for _, us := range []int{11, 3, 7, 1, 9, 5, 2, 10, 4, 8, 6} {
		samples = append(samples, time.Duration(us)*time.Microsecond)
	}
	orig := append([]time.Duration(nil), samples...)
	s := Summarize(samples)
	require.Equal(t, orig, samples)
	assert.Equal(t, 11, s.N)
	assert.InDelta(t, 6.0, s.P50, 1e-9)
	assert.InDelta(t, 2.0, s.P10, 1e-9)
	assert.InDelta(t, 10.0, s.P90, 1e-9)
	assert.InDelta(t, 1.0, s.Min, 1e-9)

	sub := Summarize([]time.Duration{1500 * time.Nanosecond})
	assert.InDelta(t, 1.5, sub.P50, 1e-9, "microseconds keep their fraction")

	assert.Equal(t, Stats{}, Summarize(nil))
}
