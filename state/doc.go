// Package state is Loom's replicated state: the immutable store that the
// FSM writes and everything else reads (a View is one read-only version of
// it), the transactions the FSM builds the next version with, the FSM
// itself with one apply function per command type, the encoding of
// commands as log entries, and the domain errors those commands return.
// It knows nothing of Raft, gRPC or the scheduler: package raftnode feeds
// it committed entries.
//
// A log entry is one byte of CommandType followed by the command's
// protobuf encoding. Type values are on disk and are never reused.
package state
