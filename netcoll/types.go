package netcoll

import (
	"fmt"
	"math"
)

// BFloat16 is a bfloat16 number stored in its 16 bits (the top half of a
// float32). Arithmetic converts to float32 and rounds back to nearest even.
type BFloat16 uint16

// Float16 is an IEEE 754 binary16 number stored in its 16 bits. Arithmetic
// converts to float32 and rounds back to nearest even.
type Float16 uint16

// Elem is the set of element types the collectives accept.
type Elem interface {
	float32 | float64 | int32 | int64 | BFloat16 | Float16
}

// DType names an element type on the wire and in benchmark output.
type DType uint8

// The element types.
const (
	Float32 DType = iota + 1
	Float64
	Int32
	Int64
	BF16
	F16
)

// Size is the width of one element in bytes.
func (d DType) Size() int {
	switch d {
	case Float64, Int64:
		return 8
	case Float32, Int32:
		return 4
	case BF16, F16:
		return 2
	}
	return 0
}

// String returns the name nccl-tests prints for the type.
func (d DType) String() string {
	switch d {
	case Float32:
		return "float"
	case Float64:
		return "double"
	case Int32:
		return "int32"
	case Int64:
		return "int64"
	case BF16:
		return "bfloat16"
	case F16:
		return "half"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// dtypeOf maps the type parameter to its DType without allocating: the zero
// value boxes into a static cell.
func dtypeOf[T Elem]() DType {
	var z T
	switch any(z).(type) {
	case float32:
		return Float32
	case float64:
		return Float64
	case int32:
		return Int32
	case int64:
		return Int64
	case BFloat16:
		return BF16
	case Float16:
		return F16
	}
	panic("netcoll: unreachable element type")
}

// Op is a reduction operator.
type Op uint8

// The reduction operators. Avg is the sum divided by the number of ranks
// (integer division for integer types); it is accepted by AllReduce,
// ReduceScatter and Reduce.
const (
	Sum Op = iota + 1
	Prod
	Min
	Max
	Avg
)

// String returns the name nccl-tests prints for the operator.
func (o Op) String() string {
	switch o {
	case Sum:
		return "sum"
	case Prod:
		return "prod"
	case Min:
		return "min"
	case Max:
		return "max"
	case Avg:
		return "avg"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// ParseOp parses an operator name as String prints it.
func ParseOp(s string) (Op, error) {
	for o := Sum; o <= Avg; o++ {
		if o.String() == s {
			return o, nil
		}
	}
	return 0, fmt.Errorf("netcoll: unknown reduction op %q (want sum, prod, min, max or avg)", s)
}

// Float32 converts b to float32 exactly.
func (b BFloat16) Float32() float32 { return math.Float32frombits(uint32(b) << 16) }

// BFloat16FromFloat32 rounds f to the nearest bfloat16, ties to even.
func BFloat16FromFloat32(f float32) BFloat16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 { // NaN: keep it a quiet NaN
		return BFloat16(u>>16 | 0x40)
	}
	u += 0x7fff + (u>>16)&1
	return BFloat16(u >> 16)
}

// Float32 converts h to float32 exactly.
func (h Float16) Float32() float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	case man == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: normalise.
	e := uint32(113)
	for man&0x400 == 0 {
		man <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (man&0x3ff)<<13)
}

// Float16FromFloat32 rounds f to the nearest binary16, ties to even;
// out-of-range values become infinities.
func Float16FromFloat32(f float32) Float16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	exp := int32(u>>23) & 0xff
	man := u & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return Float16(sign | 0x7e00)
		}
		return Float16(sign | 0x7c00)
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return Float16(sign | 0x7c00)
	}
	if e <= 0 {
		if e < -10 {
			return Float16(sign)
		}
		// Subnormal result: shift the full mantissa, round to nearest even.
		m := man | 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		r := m >> shift
		rem := m & (1<<shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return Float16(sign | uint16(r))
	}
	r := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, which is still correct (up to Inf)
	}
	return Float16(sign | uint16(r))
}
