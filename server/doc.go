// Package server is Loom's control plane process: the gRPC services users
// and agents call, the Raft node behind them, and the leader's duties (the
// scheduling loop that turns snapshots into committed plans). Placement
// itself lives in package scheduler.
package server
