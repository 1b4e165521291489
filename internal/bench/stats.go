package bench

import (
	"math"
	"slices"
	"time"
)

// Stats summarises the samples of one cell, in microseconds.
type Stats struct {
	N   int
	P50 float64
	P10 float64
	P90 float64
	Min float64
}

// Summarize computes Stats of samples (which it does not modify).
// Percentiles interpolate linearly between the closest ranks.
func Summarize(samples []time.Duration) Stats {
	if len(samples) == 0 {
		return Stats{}
	}
	us := make([]float64, len(samples))
	for i, d := range samples {
		us[i] = float64(d) / float64(time.Microsecond)
	}
	slices.Sort(us)
	return Stats{
		N:   len(us),
		P50: Percentile(us, 0.50),
		P10: Percentile(us, 0.10),
		P90: Percentile(us, 0.90),
		Min: us[0],
	}
}

// Percentile returns the p-quantile (0 <= p <= 1) of sorted values, by
// linear interpolation between closest ranks: rank h = (n-1)p. It returns
// NaN for no values.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	p = math.Max(0, math.Min(1, p))
	h := float64(n-1) * p
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return sorted[n-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}
