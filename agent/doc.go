// Package agent is the node agent: it discovers the node's GPUs, registers
// with the servers, watches the allocations placed on its node, runs each
// rank through a driver with the rank environment contract, enforces time
// limits and cancellation, reports every rank's state, and serves rank
// output to the servers. It makes no scheduling decisions.
package agent
