package netcoll

import "testing"

func benchReduce(b *testing.B, dt DType, op Op, bytes int) {
	d, x := make([]byte, bytes), make([]byte, bytes)
	b.SetBytes(int64(bytes))
	for b.Loop() {
		reduceBytes(dt, op, d, d, x)
	}
}

func BenchmarkReduceFloat32Sum256K(b *testing.B) { benchReduce(b, Float32, Sum, 256<<10) }
func BenchmarkReduceFloat32Sum4M(b *testing.B)   { benchReduce(b, Float32, Sum, 4<<20) }
func BenchmarkReduceFloat64Max256K(b *testing.B) { benchReduce(b, Float64, Max, 256<<10) }
func BenchmarkReduceBF16Sum256K(b *testing.B)    { benchReduce(b, BF16, Sum, 256<<10) }
