// Package topocmd implements `loom gpu topo`: print a node's GPU topology
// matrix exactly as `nvidia-smi topo -m` does, from NVML, a simulated
// profile, or a saved output (which it checks and normalizes).
package topocmd
