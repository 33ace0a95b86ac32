// Package isolation holds the end-to-end tests of bare-metal isolation:
// a real server and an agent whose exec driver confines each rank in its
// own cgroup (root and the host's cgroup layout required), checked from
// inside the ranks: devices, memory, CPUs, leftover processes, private
// /tmp, and re-attaching after the agent is killed.
package isolation
