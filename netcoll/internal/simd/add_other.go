//go:build !amd64

package simd

// AddF32 has no vector kernel on this architecture.
func AddF32(d, a, b []float32) bool { return false }

// AddF64 has no vector kernel on this architecture.
func AddF64(d, a, b []float64) bool { return false }
