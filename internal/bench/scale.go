package bench

import "math"

// LogScale maps a positive domain [Lo, Hi] logarithmically onto a pixel
// range [From, To] (To may be below From, as for a y axis).
type LogScale struct {
	Lo, Hi   float64
	From, To float64
}

// Map returns the pixel position of v (> 0).
func (s LogScale) Map(v float64) float64 {
	span := math.Log(s.Hi) - math.Log(s.Lo)
	if span == 0 {
		return (s.From + s.To) / 2
	}
	t := (math.Log(v) - math.Log(s.Lo)) / span
	return s.From + t*(s.To-s.From)
}

// LogDomain returns a domain holding every positive value of vals, widened
// by the factor pad (>= 1) on each side. A single value v gives
// [v/2, 2v]; no positive value gives [1, 10].
func LogDomain(vals []float64, pad float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if v > 0 && !math.IsInf(v, 0) {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		return 1, 10
	}
	if lo == hi {
		return lo / 2, hi * 2
	}
	pad = math.Max(pad, 1)
	return lo / pad, hi * pad
}

// Pow2Ticks returns the powers of two in [lo, hi]. When there are more than
// maxTicks it keeps every k-th exponent, the exponents that are multiples
// of k, for the smallest k that fits.
func Pow2Ticks(lo, hi float64, maxTicks int) []float64 {
	e0 := int(math.Ceil(math.Log2(lo) - 1e-9))
	e1 := int(math.Floor(math.Log2(hi) + 1e-9))
	maxTicks = max(maxTicks, 1)
	for k := 1; ; k++ {
		var ticks []float64
		for e := e0; e <= e1; e++ {
			if e%k == 0 {
				ticks = append(ticks, math.Ldexp(1, e))
			}
		}
		if len(ticks) <= maxTicks {
			return ticks
		}
	}
}

// tickSets are the mantissas of log-axis ticks from densest to sparsest,
// each with the smallest ratio between two of its neighbouring ticks.
var tickSets = []struct {
	mantissas []float64
	minRatio  float64
}{
	{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9}, 10.0 / 9},
	{[]float64{1, 2, 5}, 2},
	{[]float64{1}, 10},
}

// LogTicks returns "nice" values in [lo, hi] for a log axis of the given
// length in pixels: every digit (1..9 per decade), 1-2-5 steps or powers of
// ten, the densest of these whose ticks are at least minGap pixels apart
// (the powers of ten when none is).
func LogTicks(lo, hi, pixels, minGap float64) []float64 {
	span := math.Log(hi / lo)
	var ticks []float64
	for _, set := range tickSets {
		ticks = nil
		for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
			for _, m := range set.mantissas {
				v := m * math.Pow(10, e)
				if v >= lo*(1-1e-9) && v <= hi*(1+1e-9) {
					ticks = append(ticks, v)
				}
			}
		}
		if span <= 0 || math.Log(set.minRatio)/span*pixels >= minGap {
			break
		}
	}
	return ticks
}
