package netcoll

import (
	"github.com/loomhpc/loom/netcoll/internal/simd"
	"math"
	"math/rand/v2"
	"testing"
)

// The SIMD sums must give exactly the Go loop's bits for every length
// (tails included), unaligned starts, aliased destinations and special
// values.
func TestSIMDSumMatchesLoop(t *testing.T) {
	if !simd.AddF32(make([]float32, 1), make([]float32, 1), make([]float32, 1)) {
		t.Skip("no SIMD sum on this CPU")
	}
	r := rand.New(rand.NewPCG(1, 2))
	special := []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), 0, math.MaxFloat32, -math.MaxFloat32, 1e-45}
	val := func() float64 {
		if r.IntN(8) == 0 {
			return special[r.IntN(len(special))]
		}
		return r.NormFloat64() * 1e3
	}
	for n := 0; n <= 300; n++ {
		for _, off := range []int{0, 1, 3} {
			a32, b32 := make([]float32, n+off), make([]float32, n+off)
			a64, b64 := make([]float64, n+off), make([]float64, n+off)
			for i := range a32 {
				a32[i], b32[i] = float32(val()), float32(val())
				a64[i], b64[i] = val(), val()
			}
			a32, b32, a64, b64 = a32[off:], b32[off:], a64[off:], b64[off:]

			want32, got32 := make([]float32, n), make([]float32, n)
			reduceNative(Sum, want32, a32, b32)
			if n > 0 && !simd.AddF32(got32, a32, b32) {
				t.Fatal("addF32 declined")
			}
			for i := range want32 {
				if math.Float32bits(got32[i]) != math.Float32bits(want32[i]) {
					t.Fatalf("float32 n=%d off=%d [%d]: %v + %v = %v, want %v", n, off, i, a32[i], b32[i], got32[i], want32[i])
				}
			}
			want64, got64 := make([]float64, n), make([]float64, n)
			reduceNative(Sum, want64, a64, b64)
			if n > 0 && !simd.AddF64(got64, a64, b64) {
				t.Fatal("addF64 declined")
			}
			for i := range want64 {
				if math.Float64bits(got64[i]) != math.Float64bits(want64[i]) {
					t.Fatalf("float64 n=%d off=%d [%d]: %v + %v = %v, want %v", n, off, i, a64[i], b64[i], got64[i], want64[i])
				}
			}
			// In place, as the ring reduces into its receive buffer.
			inPlace := append([]float32(nil), a32...)
			if n > 0 {
				simd.AddF32(inPlace, inPlace, b32)
			}
			for i := range want32 {
				if math.Float32bits(inPlace[i]) != math.Float32bits(want32[i]) {
					t.Fatalf("in place float32 n=%d [%d] = %v, want %v", n, i, inPlace[i], want32[i])
				}
			}
		}
	}
}
