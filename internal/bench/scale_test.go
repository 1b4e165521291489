package bench

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLogScaleMap(t *testing.T) {
	s := LogScale{Lo: 10, Hi: 1000, From: 100, To: 300}
	assert.InDelta(t, 100, s.Map(10), 1e-9)
	assert.InDelta(t, 300, s.Map(1000), 1e-9)
	assert.InDelta(t, 200, s.Map(100), 1e-9, "the geometric mean maps to the middle")

	// A y axis runs downwards.
	y := LogScale{Lo: 1, Hi: 16, From: 400, To: 0}
	assert.InDelta(t, 400, y.Map(1), 1e-9)
	assert.InDelta(t, 300, y.Map(2), 1e-9)
	assert.InDelta(t, 0, y.Map(16), 1e-9)

	flat := LogScale{Lo: 5, Hi: 5, From: 0, To: 10}
	assert.Equal(t, 5.0, flat.Map(5))
}

func TestLogDomain(t *testing.T) {
	lo, hi := LogDomain([]float64{16, 4096, 1024}, 2)
	assert.Equal(t, 8.0, lo)
	assert.Equal(t, 8192.0, hi)

	lo, hi = LogDomain([]float64{16}, 2)
	assert.Equal(t, 8.0, lo)
	assert.Equal(t, 32.0, hi)

	lo, hi = LogDomain([]float64{0, -1, math.Inf(1)}, 2)
	assert.Equal(t, 1.0, lo)
	assert.Equal(t, 10.0, hi)
}

func TestPow2Ticks(t *testing.T) {
	assert.Equal(t, []float64{8, 16, 32}, Pow2Ticks(8, 32, 7))
	// 16..4096 is nine powers of two: every second one, the even exponents.
	assert.Equal(t, []float64{16, 64, 256, 1024, 4096}, Pow2Ticks(10, 6000, 7))
	assert.Empty(t, Pow2Ticks(5, 7, 7))
}

func TestLogTicks(t *testing.T) {
	// Plenty of room: every digit.
	assert.Equal(t, []float64{90, 100, 200, 300, 400, 500}, LogTicks(85, 550, 400, 20))
	// Four decades in 360 pixels: digits would be 4 px apart at 9..10, 1-2-5 fits.
	assert.Equal(t, []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000},
		LogTicks(1, 10000, 360, 24))
	// Too little room even for 1-2-5: powers of ten only.
	assert.Equal(t, []float64{1, 10, 100, 1000, 10000}, LogTicks(1, 10000, 100, 24))
}
