package probe

import (
	"context"
	"fmt"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/loomhpc/loom/gpu"
)

// newNVML returns the NVML entry point; tests replace it with go-nvml's
// mock servers.
var newNVML = func() nvml.Interface { return nvml.New() }

// sysRoot is where sysfs is mounted; tests point it at a fake tree.
var sysRoot = "/sys"

// discoverNVML reads the topology from the driver: the GPUs, their common
// PCIe ancestors, NVLinks, MIG instances, and the NICs from sysfs.
func discoverNVML(ctx context.Context, _ string) (*gpu.Topology, error) {
	lib := newNVML()
	if err := nvmlInit(lib); err != nil {
		return nil, err
	}
	defer lib.Shutdown()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return readNVML(lib, sysfs{sysRoot})
}

// nvmlInit initializes lib. go-nvml loads libnvidia-ml.so.1 with dlopen
// inside Init, so a node without the driver gets an error here, not a
// crash at startup.
func nvmlInit(lib nvml.Interface) (err error) {
	defer func() {
		if r := recover(); r != nil { // be safe against a broken library
			err = fmt.Errorf("%w: nvml.Init: %v", ErrNVMLUnavailable, r)
		}
	}()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return fmt.Errorf("%w: nvml.Init: %s", ErrNVMLUnavailable, errString(ret))
	}
	return nil
}

func errString(ret nvml.Return) string {
	defer func() { _ = recover() }() // ErrorString needs the library loaded
	s := nvml.ErrorString(ret)
	if s == "" {
		return fmt.Sprintf("NVML return %d", int32(ret))
	}
	return s
}

// nvmlError wraps a failed NVML call.
type nvmlError struct {
	Op  string
	Ret nvml.Return
}

func (e *nvmlError) Error() string { return "gpu: nvml " + e.Op + ": " + errString(e.Ret) }

func busIDString(p nvml.PciInfo) string {
	var b strings.Builder
	for _, c := range p.BusId {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return strings.ToUpper(b.String())
}

func readNVML(lib nvml.Interface, sys sysfs) (*gpu.Topology, error) {
	count, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, &nvmlError{"DeviceGetCount", ret}
	}
	t := &gpu.Topology{Source: "nvml"}
	devs := make([]nvml.Device, count)
	paths := make([][]string, count)
	for i := range count {
		d, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, &nvmlError{fmt.Sprintf("DeviceGetHandleByIndex(%d)", i), ret}
		}
		devs[i] = d
		g, err := readDevice(d, i, sys)
		if err != nil {
			return nil, err
		}
		paths[i] = sys.pciPath(g.PCIBusID)
		t.GPUs = append(t.GPUs, g)
	}
	nics := sys.nics()
	for _, n := range nics {
		t.NICs = append(t.NICs, n.NIC)
	}
	n := t.NumDevices()
	t.Links = gpu.NewLinkMatrix(n, gpu.Link{Class: gpu.LinkSYS})
	for i := range count {
		for j := i + 1; j < count; j++ {
			t.SetLink(i, j, gpu.Link{Class: commonAncestor(devs[i], devs[j], paths[i], paths[j], t.GPUs[i].NUMANode, t.GPUs[j].NUMANode)})
		}
		for k, nic := range nics {
			t.SetLink(i, count+k, gpu.Link{Class: sysfsClass(paths[i], nic.path, t.GPUs[i].NUMANode, nic.NUMANode)})
		}
	}
	for k := range nics {
		for m := k + 1; m < len(nics); m++ {
			t.SetLink(count+k, count+m, gpu.Link{Class: sysfsClass(nics[k].path, nics[m].path, nics[k].NUMANode, nics[m].NUMANode)})
		}
	}
	for p, nv := range nvlinkCounts(devs, t.GPUs) {
		if nv > 0 {
			t.SetLink(p[0], p[1], gpu.Link{Class: gpu.LinkNV, NVLinks: nv})
		}
	}
	return t, nil
}

// readDevice reads one GPU's identity, memory, placement and MIG devices.
func readDevice(d nvml.Device, i int, sys sysfs) (gpu.GPU, error) {
	g := gpu.GPU{Index: i, NUMANode: -1, Healthy: true}
	var ret nvml.Return
	if g.UUID, ret = d.GetUUID(); ret != nvml.SUCCESS {
		return g, &nvmlError{fmt.Sprintf("GetUUID(GPU%d)", i), ret}
	}
	if g.Name, ret = d.GetName(); ret != nvml.SUCCESS {
		g.Name = "unknown"
	}
	if m, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
		g.MemoryMiB = m.Total >> 20
	}
	if p, ret := d.GetPciInfo(); ret == nvml.SUCCESS {
		g.PCIBusID = busIDString(p)
	}
	if major, minor, ret := d.GetCudaComputeCapability(); ret == nvml.SUCCESS {
		g.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
	}
	if g.PCIBusID != "" {
		g.NUMANode = sys.numaNode(g.PCIBusID)
		g.CPUAffinity = sys.cpuList(g.PCIBusID)
	}
	if cur, _, ret := d.GetMigMode(); ret == nvml.SUCCESS && cur == nvml.DEVICE_MIG_ENABLE {
		g.MIGEnabled = true
		g.MIG = readMIG(d)
	}
	return g, nil
}

// readMIG lists the MIG devices of a GPU in MIG mode.
func readMIG(d nvml.Device) []gpu.MIGInstance {
	slots, ret := d.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return nil
	}
	var out []gpu.MIGInstance
	for k := range slots {
		md, ret := d.GetMigDeviceHandleByIndex(k)
		if ret != nvml.SUCCESS {
			continue // an empty slot
		}
		var m gpu.MIGInstance
		if m.UUID, ret = md.GetUUID(); ret != nvml.SUCCESS {
			continue
		}
		m.GPUInstance, _ = md.GetGpuInstanceId()
		m.ComputeInstance, _ = md.GetComputeInstanceId()
		if a, ret := md.GetAttributes(); ret == nvml.SUCCESS {
			m.MemoryMiB = a.MemorySizeMB
			m.Profile = fmt.Sprintf("%dg.%dgb", a.GpuInstanceSliceCount, (a.MemorySizeMB+1023)/1024)
		}
		out = append(out, m)
	}
	return out
}

// commonAncestor classifies the PCIe path between two GPUs with NVML's
// common-ancestor query, falling back to sysfs.
func commonAncestor(a, b nvml.Device, pa, pb []string, na, nb int) gpu.LinkClass {
	lvl, ret := a.GetTopologyCommonAncestor(b)
	if ret != nvml.SUCCESS {
		return sysfsClass(pa, pb, na, nb)
	}
	switch lvl {
	case nvml.TOPOLOGY_INTERNAL, nvml.TOPOLOGY_SINGLE: // INTERNAL: two GPUs on one board (K80)
		return gpu.LinkPIX
	case nvml.TOPOLOGY_MULTIPLE:
		return gpu.LinkPXB
	case nvml.TOPOLOGY_HOSTBRIDGE:
		return gpu.LinkPHB
	case nvml.TOPOLOGY_NODE:
		return gpu.LinkNODE
	}
	return gpu.LinkSYS
}

// nvlinkCounts counts the active NVLinks between GPU pairs. A link whose
// far end is another GPU counts for that pair. A link whose far end is not
// a GPU of this node goes to an NVSwitch: GPUs that both reach the switch
// fabric are joined by as many links as the one with fewer has, which is
// what nvidia-smi prints (NV18 on a DGX H100).
func nvlinkCounts(devs []nvml.Device, gpus []gpu.GPU) map[[2]int]int {
	byBus := map[string]int{}
	for i, g := range gpus {
		if g.PCIBusID != "" {
			byBus[sysfsBusID(g.PCIBusID)] = i
		}
	}
	direct := map[[2]int]int{}
	toSwitch := make([]int, len(devs))
	for i, d := range devs {
		for l := range nvml.NVLINK_MAX_LINKS {
			st, ret := d.GetNvLinkState(l)
			if ret != nvml.SUCCESS || st != nvml.FEATURE_ENABLED {
				continue
			}
			rp, ret := d.GetNvLinkRemotePciInfo(l)
			if ret != nvml.SUCCESS {
				continue
			}
			if j, ok := byBus[sysfsBusID(busIDString(rp))]; ok && j != i {
				if i < j {
					direct[[2]int{i, j}]++
				}
				continue
			}
			toSwitch[i]++
		}
	}
	for i := range devs {
		for j := i + 1; j < len(devs); j++ {
			if direct[[2]int{i, j}] == 0 && toSwitch[i] > 0 && toSwitch[j] > 0 {
				direct[[2]int{i, j}] = min(toSwitch[i], toSwitch[j])
			}
		}
	}
	return direct
}

// nvmlPresent reports whether the NVML library loads and initializes.
func nvmlPresent() bool {
	lib := newNVML()
	if nvmlInit(lib) != nil {
		return false
	}
	lib.Shutdown()
	return true
}

// ReadNVML reads the node's topology from the driver, without falling back:
// it fails with ErrNVMLUnavailable where there is no driver. UUIDs are the
// GPUs' own.
func ReadNVML(ctx context.Context) (*gpu.Topology, error) {
	return discoverNVML(ctx, "")
}
