// Package raftnode runs one Loom server's hashicorp/raft node: it wires
// Raft to the log and stable store of package raftlog, feeds committed
// entries to the FSM of package state, snapshots that state, and offers
// the node's operations (apply a command, bootstrap, add or remove a
// server, verify leadership) to the server.
package raftnode
