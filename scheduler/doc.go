// Package scheduler is Loom's placement: a pure, deterministic function
// from a read-only view of the cluster to a Plan of gang placements and
// pending reasons. It does no I/O, reads no clock and starts no goroutines;
// the server's leader loop and the simulator are two shells around it.
package scheduler
