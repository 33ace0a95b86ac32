// Package gpu is Loom's model of a node's GPUs: the devices themselves
// (index, UUID, model, memory, PCI bus id, NUMA node, compute capability,
// MIG instances, health), the link matrix between every pair of GPUs and
// between GPUs and NICs in the classes `nvidia-smi topo -m` prints
// (X, NV#, PIX, PXB, PHB, NODE, SYS), and a bandwidth estimate per class.
//
// Discover fills the model from NVML when the driver library is present,
// and otherwise from a simulated profile (dgx-h100, dgx-a100, dgx1-v100,
// pcie-4, pcie-8, or a flat profile of N PCIe GPUs) or from a saved
// `nvidia-smi topo -m` output, so that an admin can describe a node by
// pasting what the tool prints. ParseTopo and Topology.WriteTopo read and
// write that format. A Sampler reports utilization, memory, power,
// temperature, clocks and XID errors, and NewCollector exports them under
// the DCGM exporter's metric names.
//
// The package depends on nothing of Loom but api.
package gpu
