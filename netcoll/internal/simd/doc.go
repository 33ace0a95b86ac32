// Package simd holds netcoll's vector kernels. It is a package of its own
// because Go assembly cannot live in a package that uses cgo, and netcoll
// does under the rdma build tag.
package simd
