// Package netcoll is Loom's collective-communication library for learners: an
// NCCL-style communicator over TCP, shared memory and (behind the rdma build
// tag) RDMA verbs.
//
// A job's ranks rendezvous through a small TCP store hosted by rank 0 (the
// torch env:// contract: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, as
// package rankenv names them), build a full mesh of connections, and then
// run AllReduce, ReduceScatter, AllGather, Broadcast, Reduce and Barrier
// over float32, float64, int32, int64, BFloat16 and Float16 slices. Large
// messages use a chunked, pipelined ring; small ones recursive doubling
// (with the usual fold for a rank count that is not a power of two),
// binomial trees and Bruck's all-gather. Every call takes a context; a dead or stalled peer makes every
// rank fail with an *Error that names the peer and the operation, and the
// communicator then stays failed.
//
// Every connection, to the store or between ranks, starts with a mutual
// HMAC-SHA256 challenge-response over the job's secret (LOOM_JOB_SECRET),
// so a process that does not know it can neither join nor touch the store.
//
// A Comm is used by one goroutine at a time (like a CUDA stream); only Abort
// may be called concurrently with a collective.
//
// See docs/netcoll.md for the environment knobs, thresholds and measured
// performance.
package netcoll
