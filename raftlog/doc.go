// Package raftlog is where a Loom server keeps its Raft log and its Raft
// stable store: WAL, a write-ahead log of checksummed records in segment
// files (hashicorp/raft's LogStore), and StableStore, the current term and
// vote in a bbolt file (its StableStore). It knows nothing of what the
// entries mean.
package raftlog
