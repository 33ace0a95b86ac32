// Package gpu is Loom's model of a node's GPUs: the devices themselves
// (index, UUID, model, memory, PCI bus id, NUMA node, compute capability,
// MIG instances, health), the link matrix between every pair of GPUs and
// between GPUs and NICs in the classes `nvidia-smi topo -m` prints
// (X, NV#, PIX, PXB, PHB, NODE, SYS), and a bandwidth estimate per class.
//
// Simulated profiles (dgx-h100, dgx-a100, dgx1-v100, pcie-4, pcie-8, or a
// flat profile of N PCIe GPUs) describe machines without their hardware,
// and ParseTopo and Topology.WriteTopo read and write the `nvidia-smi topo
// -m` format, so that an admin can describe a node by pasting what the
// tool prints. A Sampler reports utilization, memory, power, temperature,
// clocks and XID errors; SimSampler makes them up for simulated GPUs.
//
// The package is the pure part of Loom's GPU support: it imports neither
// NVML nor Prometheus, so that the scheduler and `loom sim` can share its
// bandwidth table and profiles. Package gpu/probe reads a real node
// through NVML and sysfs, and gpu/metrics exports samples to Prometheus.
// The package depends on nothing of Loom but api.
package gpu
