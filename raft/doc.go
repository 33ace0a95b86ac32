// Package raft is Loom's replicated state: the FSM that applies commands
// (one function per command type, dispatched on a one-byte type), the
// immutable state store the FSM writes and everything else reads, the bbolt
// log and stable store, snapshots, and the hashicorp/raft node setup. It
// knows nothing of gRPC or of the scheduler.
package raft
