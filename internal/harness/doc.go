// Package harness is Loom's one test-and-bench harness: free loopback
// ports, a bounded wait with a CI multiplier, real loom server and agent
// processes with their data dirs and logs, and finding the current leader.
//
// test/cluster (the end-to-end tests), devcluster's tests and the submit
// and failover benchmarks build on it. The benchmarks run inside the loom
// binary, so nothing here imports package testing: the helpers that fail a
// test take the small TB interface, which *testing.T satisfies.
package harness
