package scheduler

import (
	"fmt"
	"strings"

	"github.com/loomhpc/loom/api"
)

// Default port range a node hands to ranks when its agent names none.
const (
	DefaultPortMin = 29500
	DefaultPortMax = 29999
)

// free is what one node has left during a cycle.
type free struct {
	node  *api.Node
	gpus  []*api.GPU // free, healthy, in index order
	cpus  uint32
	memMB uint64 // 0 with node.MemoryMb == 0 means "not tracked"
	ports map[uint32]bool
}

// pool is the cluster's free capacity, consumed as the cycle places gangs.
type pool struct {
	nodes []*free // name order
}

func newPool(nodes []*api.Node, usage api.Usage) *pool {
	p := &pool{}
	for _, n := range nodes {
		if !n.Schedulable() {
			continue
		}
		u := usage[n.Name]
		f := &free{node: n, cpus: n.Cpus, memMB: n.MemoryMb, ports: map[uint32]bool{}}
		if u != nil {
			f.cpus -= min(u.CPUs, n.Cpus)
			f.memMB -= min(u.MemMB, n.MemoryMb)
			for port := range u.Ports {
				f.ports[port] = true
			}
		}
		for _, g := range n.GetTopology().GetGpus() {
			if !g.Healthy {
				continue
			}
			if u != nil {
				if _, held := u.GPUs[g.Uuid]; held {
					continue
				}
			}
			f.gpus = append(f.gpus, g)
		}
		p.nodes = append(p.nodes, f)
	}
	return p
}

func (f *free) fits(s api.NodeShape) bool {
	return uint32(len(f.gpus)) >= s.GPUs && f.cpus >= s.CPUs &&
		(f.node.MemoryMb == 0 || f.memMB >= s.MemMB) &&
		f.freePorts() >= int(s.Tasks)+1
}

func (f *free) portRange() (lo, hi uint32) {
	lo, hi = f.node.PortMin, f.node.PortMax
	if lo == 0 || hi < lo {
		lo, hi = DefaultPortMin, DefaultPortMax
	}
	return lo, hi
}

func (f *free) freePorts() int {
	lo, hi := f.portRange()
	return int(hi-lo+1) - len(f.ports)
}

func (f *free) takePort() uint32 {
	lo, hi := f.portRange()
	for p := lo; p <= hi; p++ {
		if !f.ports[p] {
			f.ports[p] = true
			return p
		}
	}
	return 0
}

// place finds nodes for every rank of j and takes them from the pool, or
// returns nil and takes nothing.
func (p *pool) place(j *api.Job) *api.Allocation {
	part := j.Spec.PartitionOf()
	lo, hi := j.Spec.NodeRange()
	for n := lo; n <= hi && int(n) <= len(p.nodes); n++ {
		shapes, ok := j.Spec.Layout(n)
		if !ok {
			continue
		}
		chosen := make([]*free, 0, n)
		used := map[*free]bool{}
		for _, s := range shapes {
			var pick *free
			for _, f := range p.nodes {
				if !used[f] && f.node.InPartition(part) && f.fits(s) {
					pick = f
					break
				}
			}
			if pick == nil {
				break
			}
			used[pick] = true
			chosen = append(chosen, pick)
		}
		if len(chosen) == len(shapes) {
			return p.take(j, shapes, chosen)
		}
	}
	return nil
}

// take builds the allocation for a gang that fits and charges the pool.
// When a node's GPUs divide evenly among its ranks each rank gets its own
// share; otherwise every rank on the node sees all of the node's GPUs.
func (p *pool) take(j *api.Job, shapes []api.NodeShape, chosen []*free) *api.Allocation {
	a := &api.Allocation{JobId: j.Id}
	cpt := max(j.Spec.CpusPerTask, 1)
	rank := uint32(0)
	for i, s := range shapes {
		f := chosen[i]
		gpus := f.gpus[:s.GPUs]
		f.gpus = f.gpus[s.GPUs:]
		f.cpus -= s.CPUs
		if f.node.MemoryMb != 0 {
			f.memMB -= s.MemMB
		}
		a.Nodes = append(a.Nodes, f.node.Name)
		for local := uint32(0); local < s.Tasks; local++ {
			r := &api.Rank{
				Rank: rank, Node: f.node.Name, LocalRank: local, LocalSize: s.Tasks,
				NodeIndex: uint32(i), Cpus: cpt, Port: f.takePort(),
			}
			if local == 0 {
				r.MemMb = s.MemMB // the node's memory is charged once, to its first rank
			}
			share := gpus
			if s.Tasks > 0 && s.GPUs%s.Tasks == 0 {
				per := s.GPUs / s.Tasks
				share = gpus[local*per : (local+1)*per]
			}
			for _, g := range share {
				r.GpuUuids = append(r.GpuUuids, g.Uuid)
				r.GpuIndexes = append(r.GpuIndexes, g.Index)
			}
			a.Ranks = append(a.Ranks, r)
			rank++
		}
	}
	master := chosen[0]
	a.MasterAddr = hostOf(master.node.Address)
	a.MasterPort = master.takePort()
	return a
}

func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

// Feasible reports whether spec could ever run on nodes (all of them
// empty and up), with an error that says what cannot be met.
func Feasible(nodes []*api.Node, spec *api.JobSpec) error {
	part := spec.PartitionOf()
	var in []*api.Node
	for _, n := range nodes {
		if n.InPartition(part) {
			in = append(in, n)
		}
	}
	if len(in) == 0 {
		return fmt.Errorf("partition %q has no nodes", part)
	}
	lo, hi := spec.NodeRange()
	if int(lo) > len(in) {
		return fmt.Errorf("--nodes=%d: partition %q has only %d nodes", lo, part, len(in))
	}
	// Capacity that is down or drained today may be back tomorrow: the
	// question is whether the job could ever run, so every node counts.
	up := make([]*api.Node, len(in))
	for i, n := range in {
		up[i] = &api.Node{Name: n.Name, Cpus: n.Cpus, MemoryMb: n.MemoryMb, Topology: n.Topology,
			Partitions: n.Partitions, PortMin: n.PortMin, PortMax: n.PortMax}
	}
	p := newPool(up, nil)
	var why string
	for n := lo; n <= hi && int(n) <= len(in); n++ {
		shapes, ok := spec.Layout(n)
		if !ok {
			why = fmt.Sprintf("%d tasks cannot be spread over %d nodes", spec.TotalTasks(n), n)
			continue
		}
		why = ""
		for _, s := range shapes {
			count := 0
			for _, f := range p.nodes {
				if f.fits(s) {
					count++
				}
			}
			if count == 0 {
				why = shapeMisfit(in, s)
				break
			}
		}
		if why == "" {
			if p.place(&api.Job{Spec: spec}) != nil {
				return nil
			}
			why = fmt.Sprintf("no %d nodes of partition %q can hold the gang together", n, part)
		}
	}
	return fmt.Errorf("requested node configuration is not available: %s", why)
}

func shapeMisfit(nodes []*api.Node, s api.NodeShape) string {
	var gpus, cpus uint32
	var mem uint64
	for _, n := range nodes {
		h := uint32(0)
		for _, g := range n.GetTopology().GetGpus() {
			if g.Healthy {
				h++
			}
		}
		gpus, cpus, mem = max(gpus, h), max(cpus, n.Cpus), max(mem, n.MemoryMb)
	}
	switch {
	case s.GPUs > gpus:
		return fmt.Sprintf("a node needs %d GPUs but the largest node has %d", s.GPUs, gpus)
	case s.CPUs > cpus:
		return fmt.Sprintf("a node needs %d CPUs but the largest node has %d", s.CPUs, cpus)
	case mem != 0 && s.MemMB > mem:
		return fmt.Sprintf("a node needs %d MB of memory but the largest node has %d MB", s.MemMB, mem)
	}
	return "no single node has all of the GPUs, CPUs, memory and ports one node of the gang needs"
}
