// Package cgroup confines a node's ranks with kernel control groups: one
// group per job under the agent's root, one per rank or step task below
// it, each with the rank's CPUs (cpuset), memory limit, device rules and
// process tracking (freezer, pids). It speaks both the unified hierarchy
// (cgroup v2, devices through its eBPF filter) and the split v1 hierarchy
// (cpuset, memory, devices, freezer and pids mounted separately), through
// github.com/containerd/cgroups/v3.
package cgroup
