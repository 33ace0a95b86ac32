package probe

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/loomhpc/loom/gpu"
)

// sysfs reads PCI placement, NUMA nodes, CPU lists and RDMA NICs from a
// sysfs tree (normally /sys; tests build a fake one).
type sysfs struct{ root string }

// sysfsBusID turns NVML's bus id ("00000000:1B:00.0") into the kernel's
// ("0000:1b:00.0").
func sysfsBusID(nvmlID string) string {
	id := strings.ToLower(nvmlID)
	if i := strings.IndexByte(id, ':'); i > 4 {
		id = id[i-4:]
	}
	return id
}

// pciPath returns the device's place in the PCI tree: the elements of its
// resolved sysfs path from the root bus ("pci0000:00") down to itself.
func (s sysfs) pciPath(busID string) []string {
	p, err := filepath.EvalSymlinks(filepath.Join(s.root, "bus/pci/devices", sysfsBusID(busID)))
	if err != nil {
		return nil
	}
	return pciElems(p)
}

func pciElems(p string) []string {
	parts := strings.Split(filepath.ToSlash(p), "/")
	for i, e := range parts {
		if strings.HasPrefix(e, "pci") && strings.Contains(e, ":") {
			return parts[i:]
		}
	}
	return nil
}

// numaNode returns the device's NUMA node, -1 if unknown.
func (s sysfs) numaNode(busID string) int {
	return readNUMA(filepath.Join(s.root, "bus/pci/devices", sysfsBusID(busID)))
}

func readNUMA(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "numa_node"))
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// cpuList returns the CPUs local to the device ("0-55,112-167"), "" if
// unknown.
func (s sysfs) cpuList(busID string) string {
	b, err := os.ReadFile(filepath.Join(s.root, "bus/pci/devices", sysfsBusID(busID), "local_cpulist"))
	if err != nil {
		return ""
	}
	l := strings.TrimSpace(string(b))
	if !gpu.ValidCPUList(l) {
		return ""
	}
	return l
}

// rdmaNIC is an RDMA device found in sysfs, with its PCI path.
type rdmaNIC struct {
	gpu.NIC
	path []string
}

// nics lists the RDMA devices (/sys/class/infiniband/*), sorted by name.
func (s sysfs) nics() []rdmaNIC {
	dir := filepath.Join(s.root, "class/infiniband")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []rdmaNIC
	for _, e := range ents {
		dev, err := filepath.EvalSymlinks(filepath.Join(dir, e.Name(), "device"))
		if err != nil {
			continue
		}
		path := pciElems(dev)
		if path == nil {
			continue
		}
		out = append(out, rdmaNIC{
			NIC:  gpu.NIC{Name: e.Name(), PCIBusID: path[len(path)-1], NUMANode: readNUMA(dev)},
			path: path,
		})
	}
	return out // ReadDir sorts by name
}

// sysfsClass classifies the path between two PCI devices from their places
// in the tree, as nvidia-smi does: SYS across NUMA nodes, NODE across root
// buses, PHB when only the root is shared, PIX when both sit at most one
// switch (upstream and downstream port) below their closest common bridge,
// PXB otherwise.
func sysfsClass(a, b []string, numaA, numaB int) gpu.LinkClass {
	switch {
	case numaA >= 0 && numaB >= 0 && numaA != numaB:
		return gpu.LinkSYS
	case len(a) == 0 || len(b) == 0:
		return gpu.LinkSYS // unknown: assume the worst
	case a[0] != b[0]:
		return gpu.LinkNODE
	}
	c := 0
	for c < len(a) && c < len(b) && a[c] == b[c] {
		c++
	}
	switch {
	case c == 1:
		return gpu.LinkPHB
	case len(a)-c <= 2 && len(b)-c <= 2:
		return gpu.LinkPIX
	}
	return gpu.LinkPXB
}
