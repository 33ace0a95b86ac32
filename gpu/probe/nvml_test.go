package probe

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/loomhpc/loom/gpu"
)

// fakeSysfs builds a sysfs tree: each PCI device at the given path below
// /sys/devices, with its NUMA node and CPU list, linked from
// /sys/bus/pci/devices/<bdf>; NICs also from /sys/class/infiniband.
type fakeSysfs struct {
	t    *testing.T
	root string
}

func newFakeSysfs(t *testing.T) *fakeSysfs { return &fakeSysfs{t, t.TempDir()} }

func (f *fakeSysfs) add(bdf string, path []string, numa int, cpus string, rdma string) {
	f.t.Helper()
	dir := filepath.Join(append([]string{f.root, "devices"}, path...)...)
	must := func(err error) {
		if err != nil {
			f.t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	must(os.WriteFile(filepath.Join(dir, "numa_node"), []byte(fmt.Sprintf("%d\n", numa)), 0o644))
	must(os.WriteFile(filepath.Join(dir, "local_cpulist"), []byte(cpus+"\n"), 0o644))
	must(os.MkdirAll(filepath.Join(f.root, "bus/pci/devices"), 0o755))
	must(os.Symlink(dir, filepath.Join(f.root, "bus/pci/devices", bdf)))
	if rdma != "" {
		must(os.MkdirAll(filepath.Join(f.root, "class/infiniband", rdma), 0o755))
		must(os.Symlink(dir, filepath.Join(f.root, "class/infiniband", rdma, "device")))
	}
}

func pciInfo(busID string) nvml.PciInfo {
	var p nvml.PciInfo
	for i, c := range busID {
		p.BusId[i] = int8(c)
	}
	return p
}

func (f *fakeSysfs) sysfs() sysfs { return sysfs{f.root} }

// A DGX H100 as NVML would show it: every NVLink ends at an NVSwitch, GPUs
// of one socket share a NUMA node but not a host bridge, and each GPU has
// a NIC in its PCIe switch tree. The result must match the dgx-h100
// profile cell for cell.
func TestReadNVMLDGXH100(t *testing.T) {
	s := dgxh100.New()
	fs := newFakeSysfs(t)
	want, _ := gpu.Profile("dgx-h100", "h")
	buses := []int{0x1b, 0x43, 0x52, 0x61, 0x9d, 0xc3, 0xd1, 0xdf}
	for i, d := range s.Devices {
		dev := d.(*server.Device)
		bus := fmt.Sprintf("00000000:%02X:00.0", buses[i])
		numa := i / 4
		root := fmt.Sprintf("pci0000:%02x", buses[i]-3)
		fs.add(sysfsBusID(bus), []string{root, "rp", "usp", "dsp0", "usp2", "dsp", sysfsBusID(bus)}, numa, want.GPUs[i].CPUAffinity, "")
		fs.add(fmt.Sprintf("0000:%02x:00.1", buses[i]+1), []string{root, "rp", "usp", "dsp1", "nic"}, numa, "", fmt.Sprintf("mlx5_%d", i))
		dev.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) { return pciInfo(bus), nvml.SUCCESS }
		dev.GetTopologyCommonAncestorFunc = func(o nvml.Device) (nvml.GpuTopologyLevel, nvml.Return) {
			if o.(*server.Device).Index/4 == numa {
				return nvml.TOPOLOGY_NODE, nvml.SUCCESS
			}
			return nvml.TOPOLOGY_SYSTEM, nvml.SUCCESS
		}
		dev.GetNvLinkStateFunc = func(l int) (nvml.EnableState, nvml.Return) {
			if l >= 18 {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			return nvml.FEATURE_ENABLED, nvml.SUCCESS
		}
		dev.GetNvLinkRemotePciInfoFunc = func(l int) (nvml.PciInfo, nvml.Return) {
			return pciInfo(fmt.Sprintf("00000000:%02X:00.0", 0x05+l%4)), nvml.SUCCESS // an NVSwitch
		}
	}
	got, err := readNVML(s, fs.sysfs())
	if err != nil {
		t.Fatalf("readNVML: %v", err)
	}
	// topo -m carries devices, links, NIC names, CPU affinity and NUMA
	// nodes: printing both compares them all.
	if got.TopoString() != want.TopoString() {
		t.Errorf("readNVML(DGX H100) differs from dgx-h100:\ngot\n%s\nwant\n%s", got.TopoString(), want.TopoString())
	}
	g := got.GPUs[5]
	if !strings.HasPrefix(g.UUID, "GPU-") || g.Name != "NVIDIA H100 80GB HBM3" || g.MemoryMiB == 0 || g.ComputeCapability != "9.0" || g.PCIBusID != "00000000:C3:00.0" || g.Simulated {
		t.Errorf("GPU5 = %+v", g)
	}
}

// Direct GPU-to-GPU NVLinks are counted per pair: the DGX-1V cube-mesh.
func TestReadNVMLDirectNVLinks(t *testing.T) {
	s := dgxa100.New() // eight GPUs; only the links matter here
	fs := newFakeSysfs(t)
	want, _ := gpu.Profile("dgx1-v100", "h")
	bus := func(i int) string { return fmt.Sprintf("00000000:%02X:00.0", 0x10*(i+1)) }
	for i, d := range s.Devices {
		dev := d.(*server.Device)
		// remote[l] is the GPU at the far end of link l.
		var remote []int
		for j := range 8 {
			for range want.GPULink(i, j).NVLinks {
				remote = append(remote, j)
			}
		}
		dev.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) { return pciInfo(bus(i)), nvml.SUCCESS }
		dev.GetTopologyCommonAncestorFunc = func(o nvml.Device) (nvml.GpuTopologyLevel, nvml.Return) {
			return 0, nvml.ERROR_NOT_SUPPORTED // falls back to sysfs, which is absent: SYS
		}
		dev.GetNvLinkStateFunc = func(l int) (nvml.EnableState, nvml.Return) {
			if l >= len(remote) {
				return nvml.FEATURE_DISABLED, nvml.SUCCESS
			}
			return nvml.FEATURE_ENABLED, nvml.SUCCESS
		}
		dev.GetNvLinkRemotePciInfoFunc = func(l int) (nvml.PciInfo, nvml.Return) {
			return pciInfo(bus(remote[l])), nvml.SUCCESS
		}
	}
	got, err := readNVML(s, fs.sysfs())
	if err != nil {
		t.Fatalf("readNVML: %v", err)
	}
	for i := range 8 {
		for j := range 8 {
			w := want.GPULink(i, j)
			if w.Class != gpu.LinkNV && w.Class != gpu.LinkSelf {
				w = gpu.Link{Class: gpu.LinkSYS}
			}
			if g := got.GPULink(i, j); g != w {
				t.Errorf("GPULink(%d, %d) = %v, want %v", i, j, g, w)
			}
		}
	}
}

func TestReadNVMLMIG(t *testing.T) {
	s := dgxa100.New()
	dev := s.Devices[0].(*server.Device)
	dev.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) { return pciInfo("00000000:07:00.0"), nvml.SUCCESS }
	dev.MigMode = nvml.DEVICE_MIG_ENABLE
	dev.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 7, nvml.SUCCESS }
	dev.GetMigDeviceHandleByIndexFunc = func(k int) (nvml.Device, nvml.Return) {
		if k >= 2 {
			return nil, nvml.ERROR_NOT_FOUND
		}
		return &mock.Device{
			GetUUIDFunc:              func() (string, nvml.Return) { return fmt.Sprintf("MIG-%d", k), nvml.SUCCESS },
			GetGpuInstanceIdFunc:     func() (int, nvml.Return) { return 7 + k, nvml.SUCCESS },
			GetComputeInstanceIdFunc: func() (int, nvml.Return) { return 0, nvml.SUCCESS },
			GetAttributesFunc: func() (nvml.DeviceAttributes, nvml.Return) {
				return nvml.DeviceAttributes{GpuInstanceSliceCount: 3, MemorySizeMB: 19968}, nvml.SUCCESS
			},
		}, nvml.SUCCESS
	}
	for _, d := range s.Devices {
		d := d.(*server.Device)
		d.GetTopologyCommonAncestorFunc = func(nvml.Device) (nvml.GpuTopologyLevel, nvml.Return) { return nvml.TOPOLOGY_SYSTEM, nvml.SUCCESS }
		d.GetNvLinkStateFunc = func(int) (nvml.EnableState, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	}
	got, err := readNVML(s, sysfs{t.TempDir()})
	if err != nil {
		t.Fatalf("readNVML: %v", err)
	}
	g := got.GPUs[0]
	if !g.MIGEnabled || len(g.MIG) != 2 || g.MIG[1] != (gpu.MIGInstance{UUID: "MIG-1", Profile: "3g.20gb", GPUInstance: 8, MemoryMiB: 19968}) {
		t.Errorf("GPU0 MIG = %v %+v, want enabled with 2 3g.20gb instances", g.MIGEnabled, g.MIG)
	}
	if got.GPUs[1].MIGEnabled {
		t.Errorf("GPU1 MIGEnabled = true, want false")
	}
}

func TestSysfsClass(t *testing.T) {
	gpuPath := []string{"pci0000:00", "rp", "usp", "dspA", "gpu"}
	tests := []struct {
		name         string
		a, b         []string
		numaA, numaB int
		want         gpu.LinkClass
	}{
		{"other socket", gpuPath, []string{"pci0000:80", "rp", "nic"}, 0, 1, gpu.LinkSYS},
		{"other root bus", gpuPath, []string{"pci0000:40", "rp", "nic"}, 0, 0, gpu.LinkNODE},
		{"other root port", gpuPath, []string{"pci0000:00", "rp2", "nic"}, 0, 0, gpu.LinkPHB},
		{"same switch", gpuPath, []string{"pci0000:00", "rp", "usp", "dspB", "nic"}, 0, 0, gpu.LinkPIX},
		{"two switches", gpuPath, []string{"pci0000:00", "rp", "usp", "dspB", "usp2", "dspC", "nic"}, 0, 0, gpu.LinkPXB},
		{"unknown path", gpuPath, nil, -1, -1, gpu.LinkSYS},
	}
	for _, tt := range tests {
		if got := sysfsClass(tt.a, tt.b, tt.numaA, tt.numaB); got != tt.want {
			t.Errorf("%s: sysfsClass(%q, %q) = %v, want %v", tt.name, tt.a, tt.b, got, tt.want)
		}
	}
}

func TestSysfsBusID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"00000000:1B:00.0", "0000:1b:00.0"},
		{"0000:1b:00.0", "0000:1b:00.0"},
		{"00000001:C3:00.0", "0001:c3:00.0"},
	}
	for _, tt := range tests {
		if got := sysfsBusID(tt.in); got != tt.want {
			t.Errorf("sysfsBusID(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
