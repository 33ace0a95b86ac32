// Package probe finds and watches the GPUs of the machine it runs on.
//
// Discover fills a gpu.Topology from NVML when the driver library is
// present, reading the PCIe tree and the RDMA NICs from sysfs, and
// otherwise from a saved `nvidia-smi topo -m` output or one of gpu's
// simulated profiles. ReadNVML reads the driver without falling back, and
// NVMLSampler implements gpu.Sampler over NVML: utilization, memory,
// power, temperature, clocks and XID events.
//
// NVML is loaded with dlopen when first used, so a binary that imports
// probe still starts on a node without the NVIDIA driver.
package probe
