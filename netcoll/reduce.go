package netcoll

import (
	"unsafe"

	"github.com/loomhpc/loom/netcoll/internal/simd"
)

// asT views a byte slice as a slice of T. The caller guarantees that b's
// length is a multiple of T's size; the buffers netcoll views this way come
// from slices of T (or from internal buffers allocated as []uint64), so
// they are aligned.
func asT[T any](b []byte) []T {
	var z T
	n := len(b) / int(unsafe.Sizeof(z))
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// asBytes views a slice of T as bytes.
func asBytes[T any](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(z)))
}

type native interface {
	float32 | float64 | int32 | int64
}

// reduceBytes sets dst = a op b element-wise. dst may alias a or b exactly.
// Avg reduces as Sum; the division happens once at the end (scaleAvg).
func reduceBytes(dt DType, op Op, dst, a, b []byte) {
	switch dt {
	case Float32:
		if (op == Sum || op == Avg) && simd.AddF32(asT[float32](dst), asT[float32](a), asT[float32](b)) {
			return
		}
		reduceNative(op, asT[float32](dst), asT[float32](a), asT[float32](b))
	case Float64:
		if (op == Sum || op == Avg) && simd.AddF64(asT[float64](dst), asT[float64](a), asT[float64](b)) {
			return
		}
		reduceNative(op, asT[float64](dst), asT[float64](a), asT[float64](b))
	case Int32:
		reduceNative(op, asT[int32](dst), asT[int32](a), asT[int32](b))
	case Int64:
		reduceNative(op, asT[int64](dst), asT[int64](a), asT[int64](b))
	case BF16:
		reduceBF16(op, asT[uint16](dst), asT[uint16](a), asT[uint16](b))
	case F16:
		reduceF16(op, asT[uint16](dst), asT[uint16](a), asT[uint16](b))
	}
}

func reduceNative[T native](op Op, d, a, b []T) {
	a = a[:len(d)]
	b = b[:len(d)]
	switch op {
	case Sum, Avg:
		// Unrolled: four independent adds per iteration keep the CPU's
		// pipelines busy (Go does not vectorise).
		i := 0
		for ; i+4 <= len(d); i += 4 {
			d0, a0, b0 := d[i:i+4:i+4], a[i:i+4:i+4], b[i:i+4:i+4]
			d0[0], d0[1], d0[2], d0[3] = a0[0]+b0[0], a0[1]+b0[1], a0[2]+b0[2], a0[3]+b0[3]
		}
		for ; i < len(d); i++ {
			d[i] = a[i] + b[i]
		}
	case Prod:
		for i := range d {
			d[i] = a[i] * b[i]
		}
	case Min:
		for i := range d {
			d[i] = min(a[i], b[i])
		}
	case Max:
		for i := range d {
			d[i] = max(a[i], b[i])
		}
	}
}

func bf16To(h uint16) float32   { return BFloat16(h).Float32() }
func bf16From(f float32) uint16 { return uint16(BFloat16FromFloat32(f)) }
func f16To(h uint16) float32    { return Float16(h).Float32() }
func f16From(f float32) uint16  { return uint16(Float16FromFloat32(f)) }

func reduceBF16(op Op, d, a, b []uint16) {
	a = a[:len(d)]
	b = b[:len(d)]
	switch op {
	case Sum, Avg:
		for i := range d {
			d[i] = bf16From(bf16To(a[i]) + bf16To(b[i]))
		}
	case Prod:
		for i := range d {
			d[i] = bf16From(bf16To(a[i]) * bf16To(b[i]))
		}
	case Min:
		for i := range d {
			d[i] = bf16From(min(bf16To(a[i]), bf16To(b[i])))
		}
	case Max:
		for i := range d {
			d[i] = bf16From(max(bf16To(a[i]), bf16To(b[i])))
		}
	}
}

func reduceF16(op Op, d, a, b []uint16) {
	a = a[:len(d)]
	b = b[:len(d)]
	switch op {
	case Sum, Avg:
		for i := range d {
			d[i] = f16From(f16To(a[i]) + f16To(b[i]))
		}
	case Prod:
		for i := range d {
			d[i] = f16From(f16To(a[i]) * f16To(b[i]))
		}
	case Min:
		for i := range d {
			d[i] = f16From(min(f16To(a[i]), f16To(b[i])))
		}
	case Max:
		for i := range d {
			d[i] = f16From(max(f16To(a[i]), f16To(b[i])))
		}
	}
}

// scaleAvg divides every element of buf by n, finishing an Avg reduction.
func scaleAvg(dt DType, buf []byte, n int) {
	switch dt {
	case Float32:
		divNative(asT[float32](buf), float32(n))
	case Float64:
		divNative(asT[float64](buf), float64(n))
	case Int32:
		divNative(asT[int32](buf), int32(n))
	case Int64:
		divNative(asT[int64](buf), int64(n))
	case BF16:
		divHalf(asT[uint16](buf), float32(n), bf16To, bf16From)
	case F16:
		divHalf(asT[uint16](buf), float32(n), f16To, f16From)
	}
}

func divNative[T native](s []T, n T) {
	for i := range s {
		s[i] /= n
	}
}

func divHalf(s []uint16, n float32, to func(uint16) float32, from func(float32) uint16) {
	for i := range s {
		s[i] = from(to(s[i]) / n)
	}
}
