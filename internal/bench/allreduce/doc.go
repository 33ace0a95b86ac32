// Package allreduce is netcoll's benchmark, in the manner of nccl-tests:
// `loom bench allreduce -np 4 -b 1K -e 256M -f 4` starts N local ranks as
// processes, sweeps message sizes and prints size, count, type, redop,
// time, algbw and busbw, then summary figures as key=value lines: the raw
// ring bandwidth measured over the same sockets in the same run, and
// busbw_ratio (bus bandwidth over raw ring bandwidth at the largest size)
// last.
package allreduce
