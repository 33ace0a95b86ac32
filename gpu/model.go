package gpu

import (
	"errors"
	"fmt"

	"github.com/loomhpc/loom/api"
)

// Topology is everything Loom knows about a node's accelerators: the GPUs,
// the NICs near them, and the link matrix between every pair of devices.
// It is richer than api.Topology, which carries only the GPU×GPU part over
// the wire (see API).
type Topology struct {
	// Source says where the topology came from: a profile name, "nvml", or
	// "file:<path>".
	Source string
	GPUs   []GPU
	NICs   []NIC
	// Links is the square matrix over all devices, GPUs first (in index
	// order) and NICs after them, as `nvidia-smi topo -m` prints it:
	// Links[i][j] is how device i reaches device j, and Links[i][i] is X.
	Links [][]Link
}

// GPU is one physical GPU.
type GPU struct {
	Index     int
	UUID      string // "GPU-8f2c…", NVIDIA's format
	Name      string // the model as NVML names it: "NVIDIA H100 80GB HBM3"
	MemoryMiB uint64
	PCIBusID  string // NVML's form: "00000000:1B:00.0"
	// NUMANode is the NUMA node the GPU's PCIe root port hangs off; -1 when
	// unknown (a single-node machine, or a file without NUMA Affinity).
	NUMANode int
	// CPUAffinity is the CPU list close to the GPU, in the kernel's cpulist
	// form ("0-55,112-167"); "" when unknown.
	CPUAffinity string
	// ComputeCapability is "major.minor" ("9.0" for Hopper); "" when unknown.
	ComputeCapability string
	// MIGEnabled says the GPU is partitioned; the schedulable devices are
	// then MIG, not the GPU itself.
	MIGEnabled bool
	MIG        []MIGInstance
	Healthy    bool
	// HealthReason says why the GPU is unhealthy ("XID 79: GPU has fallen
	// off the bus"); "" when healthy.
	HealthReason string
	// Simulated marks GPUs that come from a profile or a saved file, not
	// from the driver.
	Simulated bool
}

// MIGInstance is one MIG device (a compute instance inside a GPU instance),
// schedulable on its own.
type MIGInstance struct {
	UUID            string // "MIG-…"
	Profile         string // "1g.10gb", "3g.40gb", …
	GPUInstance     int
	ComputeInstance int
	MemoryMiB       uint64
}

// NIC is a network adapter that appears in the link matrix (an RDMA device,
// usually mlx5_N).
type NIC struct {
	Name     string // the RDMA device name: "mlx5_0"
	PCIBusID string // "" when unknown
	NUMANode int    // -1 when unknown
}

// NumDevices returns the number of rows of Links: GPUs and NICs.
func (t *Topology) NumDevices() int { return len(t.GPUs) + len(t.NICs) }

// GPULink returns how GPU i reaches GPU j.
func (t *Topology) GPULink(i, j int) Link { return t.Links[i][j] }

// NICLink returns how GPU i reaches NIC k.
func (t *Topology) NICLink(i, k int) Link { return t.Links[i][len(t.GPUs)+k] }

// NearestNIC returns the index of the NIC closest to GPU i and its link, or
// -1 when the node has no NICs. Ties go to the lower index.
func (t *Topology) NearestNIC(i int) (int, Link) {
	best, bl := -1, Link{}
	for k := range t.NICs {
		if l := t.NICLink(i, k); best < 0 || l.Closer(bl) {
			best, bl = k, l
		}
	}
	return best, bl
}

// deviceName is the label of device d in `nvidia-smi topo -m`.
func (t *Topology) deviceName(d int) string {
	if d < len(t.GPUs) {
		return fmt.Sprintf("GPU%d", d)
	}
	return fmt.Sprintf("NIC%d", d-len(t.GPUs))
}

// ErrInvalidTopology is wrapped by Validate's errors.
var ErrInvalidTopology = errors.New("gpu: invalid topology")

// Validate checks that the matrix is square over all devices, symmetric,
// X on the diagonal and only there, NVLink only between GPUs, and that GPU
// indexes run 0..n-1.
func (t *Topology) Validate() error {
	n := t.NumDevices()
	if len(t.Links) != n {
		return fmt.Errorf("%w: %d rows of links for %d devices", ErrInvalidTopology, len(t.Links), n)
	}
	for i, g := range t.GPUs {
		if g.Index != i {
			return fmt.Errorf("%w: GPU at position %d has index %d", ErrInvalidTopology, i, g.Index)
		}
	}
	for i, row := range t.Links {
		if len(row) != n {
			return fmt.Errorf("%w: row %s has %d links, want %d", ErrInvalidTopology, t.deviceName(i), len(row), n)
		}
		for j, l := range row {
			a, b := t.deviceName(i), t.deviceName(j)
			switch {
			case i == j && l.Class != LinkSelf:
				return fmt.Errorf("%w: %s to itself is %s, want X", ErrInvalidTopology, a, l)
			case i != j && l.Class == LinkSelf:
				return fmt.Errorf("%w: %s to %s is X", ErrInvalidTopology, a, b)
			case l.Class == LinkUnknown:
				return fmt.Errorf("%w: %s to %s has no link class", ErrInvalidTopology, a, b)
			case l.Class == LinkNV && (i >= len(t.GPUs) || j >= len(t.GPUs)):
				return fmt.Errorf("%w: %s to %s is NVLink, which joins only GPUs", ErrInvalidTopology, a, b)
			case l.Class == LinkNV && l.NVLinks <= 0:
				return fmt.Errorf("%w: %s to %s is NVLink with %d links", ErrInvalidTopology, a, b, l.NVLinks)
			case t.Links[j][i] != l:
				return fmt.Errorf("%w: %s to %s is %s but %s to %s is %s", ErrInvalidTopology, a, b, l, b, a, t.Links[j][i])
			}
		}
	}
	return nil
}

// Clone returns a deep copy of t.
func (t *Topology) Clone() *Topology {
	c := *t
	c.GPUs = make([]GPU, len(t.GPUs))
	for i, g := range t.GPUs {
		g.MIG = append([]MIGInstance(nil), g.MIG...)
		c.GPUs[i] = g
	}
	c.NICs = append([]NIC(nil), t.NICs...)
	c.Links = make([][]Link, len(t.Links))
	for i, row := range t.Links {
		c.Links[i] = append([]Link(nil), row...)
	}
	return &c
}

// API converts t to the wire type: the GPUs and the GPU×GPU part of the
// matrix. NICs, CPU affinity, compute capability and MIG instances are not
// carried (api.Topology has no fields for them).
func (t *Topology) API() *api.Topology {
	n := len(t.GPUs)
	at := &api.Topology{Profile: t.Source, Gpus: make([]*api.GPU, n), Links: make([]*api.Link, 0, n*n)}
	for i, g := range t.GPUs {
		at.Gpus[i] = &api.GPU{
			Index:        uint32(g.Index),
			Uuid:         g.UUID,
			Model:        g.Name,
			MemoryMib:    g.MemoryMiB,
			NumaNode:     int32(g.NUMANode),
			PciBusId:     g.PCIBusID,
			Healthy:      g.Healthy,
			HealthReason: g.HealthReason,
			Simulated:    g.Simulated,
		}
	}
	for i := range n {
		for j := range n {
			at.Links = append(at.Links, t.Links[i][j].APILink())
		}
	}
	return at
}

// NewLinkMatrix returns an n×n link matrix with X on the diagonal and fill
// elsewhere.
func NewLinkMatrix(n int, fill Link) [][]Link {
	m := make([][]Link, n)
	for i := range m {
		m[i] = make([]Link, n)
		for j := range m[i] {
			m[i][j] = fill
		}
		m[i][i] = Link{Class: LinkSelf}
	}
	return m
}

// SetLink sets the link between devices i and j both ways.
func (t *Topology) SetLink(i, j int, l Link) {
	t.Links[i][j], t.Links[j][i] = l, l
}
