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
//
// Rolling upgrades: servers of different versions may share a log, so a
// server can meet an entry of a type added after it was built. The high
// bit of the type byte, CmdIgnorable, says what it must do then. A type
// with the bit set changes nothing the other commands depend on, so a
// server that does not know it skips the entry (logging once per type)
// and its applied index still moves past it. A type without the bit may
// change what later entries do, and skipping it would make this replica
// diverge from the others, so a server that does not know it stops with a
// message naming the type and the index: upgrade it and it carries on
// from that entry. A new command therefore takes a value with the bit set
// only if older servers may safely behave as if it had never been written.
package state
