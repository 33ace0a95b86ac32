package gpu

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// A profile is a simulated machine: what its GPUs are, where they and its
// NICs sit in the PCIe tree, and which GPU pairs NVLink joins.
type profile struct {
	name        string
	description string
	cpus        uint32 // hardware threads
	memoryMB    uint64
	gpu         gpuModel
	// gpus and nics are the devices' places in the PCIe tree, as paths
	// "numa/hostbridge/switch/switch/…" (see pcieClass).
	gpus []string
	nics []string
	// busIDs are the GPUs' PCI bus numbers, in index order.
	busIDs []int
	// affinity is the CPU list of each NUMA node.
	affinity map[int]string
	// nvlinks[i][j] is the number of NVLinks between GPUs i and j (0: none).
	nvlinks [][]int
}

type gpuModel struct {
	name      string
	memoryMiB uint64
	cc        string
	powerW    float64 // board power limit (TDP), from the datasheet
	smClock   float64 // maximum SM clock, MHz, from the datasheet
}

// Models as NVML names them, with the total memory it reports, and the
// datasheet's power limit and boost clock (the simulated sampler's ceiling).
var (
	modelH100 = gpuModel{"NVIDIA H100 80GB HBM3", 81559, "9.0", 700, 1980}
	modelA100 = gpuModel{"NVIDIA A100-SXM4-80GB", 81920, "8.0", 400, 1410}
	modelV100 = gpuModel{"Tesla V100-SXM2-32GB", 32510, "7.0", 300, 1530}
	modelL40S = gpuModel{"NVIDIA L40S", 46068, "8.9", 350, 2520}
	modelL4   = gpuModel{"NVIDIA L4", 23034, "8.9", 72, 2040}
	// modelUnknown stands for GPUs read from a topo -m file, which names no
	// model.
	modelUnknown = gpuModel{"", 0, "", 300, 1500}
)

// modelByName returns the known model of that name, or modelUnknown.
func modelByName(name string) gpuModel {
	for _, m := range []gpuModel{modelH100, modelA100, modelV100, modelL40S, modelL4} {
		if m.name == name {
			return m
		}
	}
	return modelUnknown
}

// allToAll returns an n×n NVLink count matrix with k links between every
// pair: an NVSwitch system.
func allToAll(n, k int) [][]int {
	m := make([][]int, n)
	for i := range m {
		m[i] = make([]int, n)
		for j := range m[i] {
			if i != j {
				m[i][j] = k
			}
		}
	}
	return m
}

var profiles = []*profile{
	{
		// DGX H100: 2× Xeon Platinum 8480C (56 cores, 112 threads each),
		// 2 TiB, 8 H100 SXM5 on four NVSwitches (18 NVLinks per GPU), 8
		// ConnectX-7 compute NICs, each in the PCIe switch tree of its GPU
		// (PXB), each GPU on its own host bridge (NODE within a socket).
		name:        "dgx-h100",
		description: "NVIDIA DGX H100: 8x H100 80GB, NV18 all-to-all (NVSwitch), 2 NUMA nodes, 8 NICs",
		cpus:        224,
		memoryMB:    2 << 20,
		gpu:         modelH100,
		gpus: []string{
			"0/h0/s/a/g", "0/h1/s/a/g", "0/h2/s/a/g", "0/h3/s/a/g",
			"1/h4/s/a/g", "1/h5/s/a/g", "1/h6/s/a/g", "1/h7/s/a/g",
		},
		nics: []string{
			"0/h0/s/b/n", "0/h1/s/b/n", "0/h2/s/b/n", "0/h3/s/b/n",
			"1/h4/s/b/n", "1/h5/s/b/n", "1/h6/s/b/n", "1/h7/s/b/n",
		},
		busIDs:   []int{0x1b, 0x43, 0x52, 0x61, 0x9d, 0xc3, 0xd1, 0xdf},
		affinity: map[int]string{0: "0-55,112-167", 1: "56-111,168-223"},
		nvlinks:  allToAll(8, 18),
	},
	{
		// DGX A100: 2× EPYC 7742 (64 cores, 128 threads each) in NPS4, so 8
		// NUMA nodes; 8 A100 SXM4 on six NVSwitches (12 NVLinks per GPU).
		// Each GPU pair shares a PCIe switch tree with two ConnectX-6
		// compute NICs; mlx5_8/9 are the storage NICs.
		name:        "dgx-a100",
		description: "NVIDIA DGX A100: 8x A100 80GB, NV12 all-to-all (NVSwitch), 8 NUMA nodes (NPS4), 10 NICs",
		cpus:        256,
		memoryMB:    2 << 20,
		gpu:         modelA100,
		gpus: []string{
			"3/h3/t/a/g", "3/h3/t/b/g", "1/h1/t/a/g", "1/h1/t/b/g",
			"7/h7/t/a/g", "7/h7/t/b/g", "5/h5/t/a/g", "5/h5/t/b/g",
		},
		nics: []string{
			"3/h3/t/n/0", "3/h3/t/n/1", "1/h1/t/n/0", "1/h1/t/n/1",
			"7/h7/t/n/0", "7/h7/t/n/1", "5/h5/t/n/0", "5/h5/t/n/1",
			"2/h2/s/0", "2/h2/s/1",
		},
		busIDs: []int{0x07, 0x0f, 0x47, 0x4e, 0x87, 0x90, 0xb7, 0xbd},
		affinity: map[int]string{
			0: "0-15,128-143", 1: "16-31,144-159", 2: "32-47,160-175", 3: "48-63,176-191",
			4: "64-79,192-207", 5: "80-95,208-223", 6: "96-111,224-239", 7: "112-127,240-255",
		},
		nvlinks: allToAll(8, 12),
	},
	{
		// DGX-1 with V100: 2× Xeon E5-2698 v4 (20 cores, 40 threads each),
		// 512 GiB. Six NVLinks per GPU in the hybrid cube-mesh: two quads
		// (GPU0-3, GPU4-7) fully connected inside, with one doubled link per
		// GPU, and GPU i joined to GPU i+4 across the quads (see
		// dgx1Links). Each GPU pair and one InfiniBand NIC sit behind one of
		// four PLX switches.
		name:        "dgx1-v100",
		description: "NVIDIA DGX-1 (V100): 8x V100 32GB, hybrid cube-mesh NVLink (NV1/NV2), 2 NUMA nodes, 4 NICs",
		cpus:        80,
		memoryMB:    512 << 10,
		gpu:         modelV100,
		gpus: []string{
			"0/h0/p0/g", "0/h0/p0/g", "0/h0/p1/g", "0/h0/p1/g",
			"1/h1/p2/g", "1/h1/p2/g", "1/h1/p3/g", "1/h1/p3/g",
		},
		nics:     []string{"0/h0/p0/n", "0/h0/p1/n", "1/h1/p2/n", "1/h1/p3/n"},
		busIDs:   []int{0x06, 0x07, 0x0a, 0x0b, 0x85, 0x86, 0x89, 0x8a},
		affinity: map[int]string{0: "0-19,40-59", 1: "20-39,60-79"},
		nvlinks:  dgx1Links(),
	},
	{
		// A 2U two-socket PCIe server (2× 16-core, 64 threads, 512 GiB)
		// with 4 L4: two GPUs on root ports of one host bridge per socket,
		// and a NIC per socket on another host bridge.
		name:        "pcie-4",
		description: "2-socket PCIe server: 4x L4, PHB within a socket, NODE to the NIC, SYS across, 2 NICs",
		cpus:        64,
		memoryMB:    512 << 10,
		gpu:         modelL4,
		gpus:        []string{"0/h0", "0/h0", "1/h2", "1/h2"},
		nics:        []string{"0/h1", "1/h3"},
		busIDs:      []int{0x17, 0x31, 0x98, 0xb1},
		affinity:    map[int]string{0: "0-15,32-47", 1: "16-31,48-63"},
	},
	{
		// A 4U two-socket PCIe server (2× 32-core, 128 threads, 1 TiB) with
		// 8 L40S: per socket, a top PCIe switch with two switches below it,
		// two GPUs on each, and a NIC on the first. A storage NIC hangs off
		// another host bridge of socket 0.
		name:        "pcie-8",
		description: "2-socket PCIe server: 8x L40S behind PCIe switches, PIX/PXB/PHB/NODE/SYS, 3 NICs",
		cpus:        128,
		memoryMB:    1 << 20,
		gpu:         modelL40S,
		gpus: []string{
			"0/h0/t/a/g", "0/h0/t/a/g", "0/h0/t/b/g", "0/h0/t/b/g",
			"1/h2/t/a/g", "1/h2/t/a/g", "1/h2/u/b/g", "1/h2/u/b/g",
		},
		nics:     []string{"0/h0/t/a/n", "1/h2/t/a/n", "0/h1"},
		busIDs:   []int{0x1a, 0x1c, 0x3a, 0x3c, 0x9a, 0x9c, 0xba, 0xbc},
		affinity: map[int]string{0: "0-31,64-95", 1: "32-63,96-127"},
	},
}

// dgx1Links returns the NVLink counts of the DGX-1V hybrid cube-mesh, as
// its `nvidia-smi topo -m` shows them: each V100 has six links; inside a
// quad every pair is joined (one pair by two links), and across the quads
// GPU i is joined to GPU i+4 only.
func dgx1Links() [][]int {
	m := make([][]int, 8)
	for i := range m {
		m[i] = make([]int, 8)
	}
	for _, e := range [][3]int{
		{0, 1, 1}, {0, 2, 1}, {0, 3, 2}, {0, 4, 2},
		{1, 2, 2}, {1, 3, 1}, {1, 5, 2},
		{2, 3, 2}, {2, 6, 1},
		{3, 7, 1},
		{4, 5, 1}, {4, 6, 1}, {4, 7, 2},
		{5, 6, 2}, {5, 7, 1},
		{6, 7, 2},
	} {
		m[e[0]][e[1]], m[e[1]][e[0]] = e[2], e[2]
	}
	return m
}

// pcieClass returns the link class between two devices from their places
// in the PCIe tree, the way nvidia-smi derives it from their common
// ancestor: SYS across NUMA nodes, NODE across host bridges of one NUMA
// node, PHB when the host bridge is the closest common ancestor, PIX when
// both hang directly off the same switch, PXB when a path crosses more than
// one switch.
func pcieClass(a, b string) LinkClass {
	pa, pb := strings.Split(a, "/"), strings.Split(b, "/")
	switch {
	case pa[0] != pb[0]:
		return LinkSYS
	case len(pa) < 2 || len(pb) < 2 || pa[1] != pb[1]:
		return LinkNODE
	}
	common := 2
	for common < len(pa) && common < len(pb) && pa[common] == pb[common] {
		common++
	}
	switch {
	case common == 2:
		return LinkPHB
	case len(pa) <= common+1 && len(pb) <= common+1:
		return LinkPIX
	}
	return LinkPXB
}

// build returns the profile's topology with GPU UUIDs derived from host.
func (p *profile) build(host string) *Topology {
	t := &Topology{Source: p.name}
	for i, place := range p.gpus {
		numa, _ := strconv.Atoi(strings.SplitN(place, "/", 2)[0])
		t.GPUs = append(t.GPUs, GPU{
			Index:             i,
			UUID:              SimulatedUUID(host, i),
			Name:              p.gpu.name,
			MemoryMiB:         p.gpu.memoryMiB,
			PCIBusID:          fmt.Sprintf("00000000:%02X:00.0", p.busIDs[i]),
			NUMANode:          numa,
			CPUAffinity:       p.affinity[numa],
			ComputeCapability: p.gpu.cc,
			Healthy:           true,
			Simulated:         true,
		})
	}
	for k, place := range p.nics {
		numa, _ := strconv.Atoi(strings.SplitN(place, "/", 2)[0])
		t.NICs = append(t.NICs, NIC{Name: fmt.Sprintf("mlx5_%d", k), NUMANode: numa})
	}
	places := append(slices.Clone(p.gpus), p.nics...)
	t.Links = NewLinkMatrix(len(places), Link{})
	for i := range places {
		for j := range places {
			if i == j {
				continue
			}
			l := Link{Class: pcieClass(places[i], places[j])}
			if i < len(p.gpus) && j < len(p.gpus) && p.nvlinks != nil && p.nvlinks[i][j] > 0 {
				l = Link{Class: LinkNV, NVLinks: p.nvlinks[i][j]}
			}
			t.Links[i][j] = l
		}
	}
	return t
}

// flatProfile returns n PCIe GPUs on one host bridge of one NUMA node (PHB
// between every pair) and no NICs.
func flatProfile(n, cpus int) *profile {
	p := &profile{
		name:        "flat-" + strconv.Itoa(n),
		description: fmt.Sprintf("%d simulated PCIe GPUs, PHB between all", n),
		cpus:        uint32(cpus),
		gpu:         modelL4,
		affinity:    map[int]string{0: fmt.Sprintf("0-%d", max(cpus, 1)-1)},
	}
	for i := range n {
		p.gpus = append(p.gpus, "0/h0")
		p.busIDs = append(p.busIDs, 0x10+i)
	}
	return p
}

// lookupProfile returns the named profile; "flat-N" is a flat profile of N
// GPUs.
func lookupProfile(name string, cpus int) (*profile, bool) {
	for _, p := range profiles {
		if p.name == name {
			return p, true
		}
	}
	if s, ok := strings.CutPrefix(name, "flat-"); ok {
		if n, err := strconv.Atoi(s); err == nil && n > 0 && n <= MaxFlatGPUs {
			return flatProfile(n, cpus), true
		}
	}
	return nil, false
}

// MaxFlatGPUs bounds a flat profile; no PCIe node holds more.
const MaxFlatGPUs = 64

// ProfileNames returns the names of the simulated profiles, in a fixed
// order. "flat-N" (N PCIe GPUs, PHB between all) is accepted besides these.
func ProfileNames() []string {
	names := make([]string, len(profiles))
	for i, p := range profiles {
		names[i] = p.name
	}
	return names
}

// ProfileDescription returns a one-line description of the named profile,
// or "" if there is none.
func ProfileDescription(name string) string {
	if p, ok := lookupProfile(name, 1); ok {
		return p.description
	}
	return ""
}

// ErrUnknownProfile is the error of a profile name that is neither one of
// ProfileNames nor flat-N.
var ErrUnknownProfile = errors.New("gpu: unknown profile")

// Machine is a simulated node: a profile's GPUs and the host they imply.
type Machine struct {
	Topology *Topology
	CPUs     uint32 // hardware threads
	MemoryMB uint64 // 0 for flat profiles, which describe the host they run on
}

// SimulatedMachine returns the named profile ("flat-N" included) as a node
// named host would see it; a flat profile takes cpus, the host's own
// hardware threads, for its CPU count and affinity.
func SimulatedMachine(name, host string, cpus int) (Machine, error) {
	p, ok := lookupProfile(name, cpus)
	if !ok {
		return Machine{}, unknownProfile(name)
	}
	return Machine{Topology: p.build(host), CPUs: p.cpus, MemoryMB: p.memoryMB}, nil
}

func unknownProfile(name string) error {
	return fmt.Errorf("%w %q (known: %s, flat-N)", ErrUnknownProfile, name, strings.Join(ProfileNames(), ", "))
}

// MarkSimulated gives GPUs read from a saved `nvidia-smi topo -m` output
// what the file lacks: UUIDs derived from host, health, the simulated mark.
func (t *Topology) MarkSimulated(host string) {
	for i := range t.GPUs {
		g := &t.GPUs[i]
		if g.UUID == "" {
			g.UUID = SimulatedUUID(host, g.Index)
		}
		g.Healthy = true
		g.Simulated = true
	}
}

// Profile returns the named simulated profile's topology, with GPU UUIDs
// derived from host.
func Profile(name, host string) (*Topology, error) {
	p, ok := lookupProfile(name, 1)
	if !ok {
		return nil, unknownProfile(name)
	}
	return p.build(host), nil
}

// SimulatedUUID returns the UUID of simulated GPU index on host, in
// NVIDIA's format (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx). It is a hash
// of both, so it is stable across restarts and differs between hosts.
func SimulatedUUID(host string, index int) string {
	return "GPU-" + hashUUID("loom-sim-gpu\x00"+host+"\x00"+strconv.Itoa(index))
}

func hashUUID(s string) string {
	sum := sha256.Sum256([]byte(s))
	h := hex.EncodeToString(sum[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
