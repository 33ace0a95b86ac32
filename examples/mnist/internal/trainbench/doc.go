// Package trainbench is `mnist bench`, which `loom bench train` runs (loom
// does not link the example learner): it measures the MNIST learner's
// training throughput with 1, 2, 4, ... ranks launched as local processes
// through the launcher contract (RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT on a loopback rendezvous port), and prints
// samples/s per configuration and the scaling efficiency as key=value
// lines.
//
// Scaling is weak: every rank keeps its batch, so N ranks train on N times
// as many examples per step. Efficiency is samples/s with N ranks divided
// by N times samples/s with one. On a machine with fewer cores than ranks
// the ranks share cores and the efficiency says so.
package trainbench
