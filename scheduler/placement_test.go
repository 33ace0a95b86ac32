package scheduler

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/gpu"
)

func profileNode(t *testing.T, profile, name string) *api.Node {
	t.Helper()
	topo, err := gpu.Profile(profile, name)
	if err != nil {
		t.Fatal(err)
	}
	return &api.Node{Name: name, Address: name + ":7073", Cpus: 80, MemoryMb: 1 << 19, Topology: topo.API()}
}

// linkBetween returns the link between GPU indexes a and b of n.
func linkBetween(n *api.Node, a, b uint32) *api.Link {
	k := len(n.Topology.Gpus)
	return n.Topology.Links[int(a)*k+int(b)]
}

func TestPlacementNVLinkOnDGX1(t *testing.T) {
	tests := []struct {
		gpus      uint32
		minLinks  uint32 // every pair must be NVLink with at least this many links
		wantPairs int
	}{
		{4, 1, 6},
		{2, 2, 1},
		{8, 0, 28},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.gpus), func(t *testing.T) {
			n := profileNode(t, "dgx1-v100", "dgx")
			v := &View{Nodes: []*api.Node{n}, Jobs: []*api.Job{pending(1, &api.JobSpec{GpusPerNode: tt.gpus})}}
			p := Schedule(v, time.Unix(0, 0), Config{})
			if len(p.Placements) != 1 {
				t.Fatalf("not placed: %v", p.Pending)
			}
			idx := p.Placements[0].Allocation.Ranks[0].GpuIndexes
			pairs := 0
			for i, a := range idx {
				for _, b := range idx[i+1:] {
					pairs++
					l := linkBetween(n, a, b)
					if tt.minLinks > 0 && (l.Type != api.LinkType_LINK_NV || l.Nvlinks < tt.minLinks) {
						t.Errorf("GPUs %v: link %d-%d is %v/NV%d, want NVLink with >= %d links", idx, a, b, l.Type, l.Nvlinks, tt.minLinks)
					}
				}
			}
			if pairs != tt.wantPairs {
				t.Errorf("%d GPUs placed, want %d", len(idx), tt.gpus)
			}
		})
	}
}

// TestPlacementKeepsNVLinkQuadFree: after a 1-GPU job and a 2-GPU job,
// a 4-GPU job still finds a fully NVLinked quad on the same DGX-1.
func TestPlacementKeepsNVLinkQuadFree(t *testing.T) {
	n := profileNode(t, "dgx1-v100", "dgx")
	v := &View{Nodes: []*api.Node{n}, Jobs: []*api.Job{
		pending(1, &api.JobSpec{GpusPerNode: 1}),
		pending(2, &api.JobSpec{GpusPerNode: 2}),
		pending(3, &api.JobSpec{GpusPerNode: 4}),
	}}
	p := Schedule(v, time.Unix(0, 0), Config{})
	if len(p.Placements) != 3 {
		t.Fatalf("placed %d of 3", len(p.Placements))
	}
	idx := p.Placements[2].Allocation.Ranks[0].GpuIndexes
	for i, a := range idx {
		for _, b := range idx[i+1:] {
			if l := linkBetween(n, a, b); l.Type != api.LinkType_LINK_NV {
				t.Errorf("4-GPU job on %v: %d-%d is %v, want NVLink", idx, a, b, l.Type)
			}
		}
	}
}

func TestPlacementOneNUMANodeOnPCIe(t *testing.T) {
	// pcie-8 style: prefer two GPUs on one NUMA node over a SYS pair.
	n := profileNode(t, "dgx1-v100", "dgx")
	for _, l := range n.Topology.Links {
		if l.Type == api.LinkType_LINK_NV {
			l.Type, l.Nvlinks = api.LinkType_LINK_SYS, 0 // NVLink down: PCIe only
		}
	}
	v := &View{Nodes: []*api.Node{n}, Jobs: []*api.Job{pending(1, &api.JobSpec{GpusPerNode: 2})}}
	p := Schedule(v, time.Unix(0, 0), Config{})
	idx := p.Placements[0].Allocation.Ranks[0].GpuIndexes
	if ga, gb := n.Topology.Gpus[idx[0]], n.Topology.Gpus[idx[1]]; ga.NumaNode != gb.NumaNode {
		t.Fatalf("GPUs %v span NUMA nodes %d and %d", idx, ga.NumaNode, gb.NumaNode)
	}
}

// twoLeaves is two leaves under one spine.
var twoLeaves = []*api.SwitchConfig{{Name: "s1", Nodes: "n[1-4]"}, {Name: "s2", Nodes: "n[5-8]"}, {Name: "s0", Switches: "s[1-2]"}}

func leafCluster(t *testing.T) ([]*api.Node, *Network) {
	t.Helper()
	net, err := NewNetwork(twoLeaves)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*api.Node
	for i := 1; i <= 8; i++ {
		nodes = append(nodes, node(fmt.Sprint("n", i), 8, 64))
	}
	return nodes, net
}

func running(id uint64, spec *api.JobSpec, start time.Time, ranks ...*api.Rank) *api.Job {
	spec.Script = "x"
	a := &api.Allocation{JobId: id, Ranks: ranks}
	for range ranks {
		a.Tasks = append(a.Tasks, &api.TaskStatus{State: api.TaskState_TASK_RUNNING})
	}
	return &api.Job{Id: id, Spec: spec, State: api.JobState_RUNNING, Allocation: a, StartUnixMs: start.UnixMilli(), SubmitUnixMs: start.UnixMilli()}
}

func gpuRank(nodeName string, gpus ...int) *api.Rank {
	r := &api.Rank{Node: nodeName, Cpus: 1}
	for _, g := range gpus {
		r.GpuUuids = append(r.GpuUuids, fmt.Sprintf("GPU-%s-%d", nodeName, g))
		r.GpuIndexes = append(r.GpuIndexes, uint32(g))
	}
	return r
}

func TestPlacementOneLeafWhenOneCan(t *testing.T) {
	nodes, net := leafCluster(t)
	t0 := time.Unix(1000, 0)
	// n1 is busy: leaf s1 has 3 free nodes, s2 has 4. First fit would span.
	v := &View{Nodes: nodes, Jobs: []*api.Job{
		running(1, &api.JobSpec{GpusPerNode: 1}, t0, gpuRank("n1", 0)),
		pending(2, &api.JobSpec{NodesMin: 4, GpusPerNode: 8}),
	}}
	p := Schedule(v, t0, Config{Network: net})
	if len(p.Placements) != 1 {
		t.Fatalf("not placed: %v", p.Pending)
	}
	got := p.Placements[0].Allocation.Nodes
	if want := []string{"n5", "n6", "n7", "n8"}; !slices.Equal(got, want) {
		t.Fatalf("4-node gang on %v, want one leaf %v", got, want)
	}
}

func TestPlacementSwitchesConstraint(t *testing.T) {
	nodes, net := leafCluster(t)
	t0 := time.Unix(10_000, 0)
	busy := []*api.Job{
		running(1, &api.JobSpec{GpusPerNode: 1}, t0, gpuRank("n1", 0)),
		running(2, &api.JobSpec{GpusPerNode: 1}, t0, gpuRank("n5", 0)),
	}
	tests := []struct {
		name     string
		switches uint32
		waitS    int64
		placed   bool
		reason   string
	}{
		{"any", 0, 0, true, ""},
		{"one leaf, wait", 1, 3600, false, ReasonTopology},
		{"one leaf, waited enough", 1, 60, true, ""},
		{"two leaves", 2, 3600, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := pending(3, &api.JobSpec{NodesMin: 4, GpusPerNode: 8, Switches: tt.switches, SwitchesWaitS: tt.waitS})
			j.SubmitUnixMs = t0.Add(-10 * time.Minute).UnixMilli()
			p := Schedule(&View{Nodes: nodes, Jobs: append(slices.Clone(busy), j)}, t0, Config{Network: net})
			if got := len(p.Placements) == 1; got != tt.placed {
				t.Fatalf("placed = %v, want %v (pending %v)", got, tt.placed, p.Pending)
			}
			if !tt.placed && (len(p.Pending) != 1 || p.Pending[0].Reason != tt.reason) {
				t.Fatalf("pending = %v, want reason %s", p.Pending, tt.reason)
			}
		})
	}
}

func TestPlacementPacksSmallJobs(t *testing.T) {
	// A partly used node takes the 1-GPU job; the idle one stays whole.
	a, b := node("a", 8, 64), node("b", 8, 64)
	t0 := time.Unix(1000, 0)
	v := &View{Nodes: []*api.Node{a, b}, Jobs: []*api.Job{
		running(1, &api.JobSpec{GpusPerNode: 4}, t0, gpuRank("b", 0, 1, 2, 3)),
		pending(2, &api.JobSpec{GpusPerNode: 1}),
	}}
	p := Schedule(v, t0, Config{})
	if got := p.Placements[0].Allocation.Nodes[0]; got != "b" {
		t.Fatalf("1-GPU job on %s, want the partly used b", got)
	}
}

func TestExclusiveTakesWholeNode(t *testing.T) {
	a, b := node("a", 8, 64), node("b", 8, 64)
	t0 := time.Unix(1000, 0)
	v := &View{Nodes: []*api.Node{a, b}, Jobs: []*api.Job{
		running(1, &api.JobSpec{GpusPerNode: 1}, t0, gpuRank("a", 0)),
		pending(2, &api.JobSpec{GpusPerNode: 1, Exclusive: true}),
		pending(3, &api.JobSpec{GpusPerNode: 1}),
	}}
	p := Schedule(v, t0, Config{})
	if len(p.Placements) != 2 {
		t.Fatalf("placed %d, want 2", len(p.Placements))
	}
	ex := p.Placements[0].Allocation
	if ex.Nodes[0] != "b" || len(ex.Ranks[0].GpuUuids) != 8 {
		t.Fatalf("exclusive job on %s with %d GPUs, want all 8 of idle b", ex.Nodes[0], len(ex.Ranks[0].GpuUuids))
	}
	if p.Placements[1].Allocation.Nodes[0] != "a" {
		t.Fatalf("job 3 shares the exclusive node")
	}
}

func TestNewNetworkErrors(t *testing.T) {
	for _, sw := range []*api.SwitchConfig{{Name: "s1", Nodes: "a[2-1]"}, {Name: "s1", Switches: "s[1-"}} {
		if _, err := NewNetwork([]*api.SwitchConfig{sw}); err == nil {
			t.Errorf("NewNetwork(%v) = nil error, want one", sw)
		}
	}
}
