package netcoll

import "testing"

func BenchmarkReduceFloat32(b *testing.B) {
	const n = 1 << 20
	d, x := make([]byte, n*4), make([]byte, n*4)
	b.SetBytes(n * 4)
	for b.Loop() {
		reduceBytes(Float32, Sum, d, d, x)
	}
}

func BenchmarkReduceBF16(b *testing.B) {
	const n = 1 << 20
	d, x := make([]byte, n*2), make([]byte, n*2)
	b.SetBytes(n * 2)
	for b.Loop() {
		reduceBytes(BF16, Sum, d, d, x)
	}
}
