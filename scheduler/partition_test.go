package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"pgregory.net/rapid"
)

// clusterPartitions: a100 nodes by feature, h100 nodes by hostlist, a
// debug partition of every node, and one partition of each state.
var clusterPartitions = []*api.PartitionConfig{
	{Name: "a100", Features: []string{"a100"}},
	{Name: "h100", Nodes: "h[1-2]"},
	{Name: "all", Default: true},
	{Name: "down", Nodes: "a1", State: "DOWN"},
	{Name: "inactive", Nodes: "a1", State: "INACTIVE"},
	{Name: "drain", Nodes: "a1", State: "DRAIN"},
}

func partitionNodes() []*api.Node {
	return []*api.Node{
		featured("a1", "NVIDIA A100-SXM4-80GB"), featured("a2", "NVIDIA A100-SXM4-80GB"),
		featured("h1", "NVIDIA H100 80GB HBM3"), featured("h2", "NVIDIA H100 80GB HBM3"),
	}
}

// TestPartitionMembership: a configured partition takes the nodes its
// hostlist names, the nodes with all its features, or (neither given)
// every node; the nodes an agent names it for stay in it; an undefined
// one has only those.
func TestPartitionMembership(t *testing.T) {
	nodes := partitionNodes()
	nodes[3].Partitions = []string{"a100", "extra"}
	pt := api.NewPartitionTable(clusterPartitions)
	tests := []struct {
		part string
		want []string
	}{
		{"a100", []string{"a1", "a2", "h2"}},
		{"h100", []string{"h1", "h2"}},
		{"all", []string{"a1", "a2", "h1", "h2"}},
		{"extra", []string{"h2"}},
		{"batch", nil},
	}
	for _, tt := range tests {
		var got []string
		for _, n := range nodes {
			if pt.Has(n, tt.part) {
				got = append(got, n.Name)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Has(*, %q) = %v, want %v", tt.part, got, tt.want)
		}
	}
	var none *api.PartitionTable
	if !none.Has(nodes[0], api.DefaultPartition) || none.Has(nodes[0], "a100") {
		t.Error("with no partitions configured, a node the agent names none for is in batch only")
	}
}

// TestPartitionPlacementAndState: jobs land on their partition's nodes; a
// DOWN or INACTIVE partition's jobs wait with Slurm's reasons, a DRAIN
// one's still run.
func TestPartitionPlacementAndState(t *testing.T) {
	v := &View{Nodes: partitionNodes(), Partitions: clusterPartitions, Jobs: []*api.Job{
		pending(1, &api.JobSpec{Partition: "h100", GpusPerNode: 8}),
		pending(2, &api.JobSpec{Partition: "a100", GpusPerNode: 8}),
		pending(3, &api.JobSpec{Partition: "down", GpusPerNode: 1}),
		pending(4, &api.JobSpec{Partition: "inactive", GpusPerNode: 1}),
		pending(5, &api.JobSpec{Partition: "drain"}),
	}}
	p := Schedule(v, time.Unix(0, 0), Config{})
	on := placedOn(p)
	if !strings.HasPrefix(strings.Join(on[1], ","), "h") || !strings.HasPrefix(strings.Join(on[2], ","), "a") {
		t.Fatalf("placements = %v, want job 1 on an h100 node and job 2 on an a100 node", on)
	}
	if r := reasonOf(p, 3); r != ReasonPartitionDown {
		t.Errorf("job in a DOWN partition: %q, want %q", r, ReasonPartitionDown)
	}
	if r := reasonOf(p, 4); r != ReasonPartitionInactive {
		t.Errorf("job in an INACTIVE partition: %q, want %q", r, ReasonPartitionInactive)
	}
	if on[5] == nil {
		t.Errorf("job in a DRAIN partition did not start: %v", p.Pending)
	}
	if err := FeasibleIn(v.Nodes, api.NewPartitionTable(clusterPartitions), &api.JobSpec{Partition: "h100", NodesMin: 3}); err == nil ||
		!strings.Contains(err.Error(), `partition "h100" has only 2 nodes`) {
		t.Errorf("FeasibleIn(3 nodes of h100) = %v, want only 2 nodes", err)
	}
}

// TestPriorityTierFirst: a higher PriorityTier's job goes first though it
// was submitted later, and PriorityJobFactor feeds the partition factor.
func TestPriorityTierFirst(t *testing.T) {
	parts := []*api.PartitionConfig{{Name: "low"}, {Name: "high", PriorityTier: 2, PriorityJobFactor: 10}}
	v := &View{Nodes: []*api.Node{node("a", 8, 64)}, Partitions: parts, Jobs: []*api.Job{
		pending(1, &api.JobSpec{Partition: "low", GpusPerNode: 8}),
		pending(2, &api.JobSpec{Partition: "high", GpusPerNode: 8}),
	}}
	p := Schedule(v, time.Unix(10, 0), Config{Order: OrderFIFO})
	if len(p.Placements) != 1 || p.Placements[0].JobId != 2 {
		t.Fatalf("placements = %v, want job 2 (tier 2) first", p.Placements)
	}
	f := Priorities(v, time.Unix(10, 0), Config{Priority: PriorityConfig{WeightPartition: 1000}})
	for _, x := range f {
		if want := map[uint64]float64{1: 0, 2: 1000}[x.JobID]; x.Partition != want {
			t.Errorf("job %d: partition factor %v, want %v", x.JobID, x.Partition, want)
		}
	}
}

// TestPreemptModeOff: a higher QoS does not preempt a job of a partition
// whose PreemptMode is OFF.
func TestPreemptModeOff(t *testing.T) {
	t0 := time.Unix(100_000, 0)
	cfg := Config{QOS: map[string]QOS{"high": {Priority: 10, Preempt: []string{"low"}}, "low": {}}}
	for _, mode := range []string{"OFF", "REQUEUE"} {
		parts := []*api.PartitionConfig{{Name: "p", Default: true, PreemptMode: mode}}
		v := &View{Nodes: []*api.Node{node("a", 8, 64)}, Partitions: parts, Jobs: []*api.Job{
			running(1, &api.JobSpec{Partition: "p", GpusPerNode: 8, Qos: "low"}, t0.Add(-time.Hour), gpuRank("a", 0, 1, 2, 3, 4, 5, 6, 7)),
			pending(2, &api.JobSpec{Partition: "p", GpusPerNode: 8, Qos: "high"}),
		}}
		p := Schedule(v, t0, cfg)
		if got, want := len(p.Preemptions), map[string]int{"OFF": 0, "REQUEUE": 1}[mode]; got != want {
			t.Errorf("PreemptMode=%s: %d preemptions, want %d", mode, got, want)
		}
	}
}

// TestPropertyPartitionsHoldTheirJobs: whatever the partitions (by
// hostlist, by feature, or every node) and states, every job placed runs
// only on nodes of its partition, and no job of a DOWN or INACTIVE
// partition is placed.
func TestPropertyPartitionsHoldTheirJobs(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		var nodes []*api.Node
		for i := range rapid.IntRange(1, 8).Draw(rt, "nodes") {
			model := rapid.SampledFrom([]string{"NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"}).Draw(rt, "model")
			n := featured(fmt.Sprintf("n%d", i+1), model)
			if rapid.Bool().Draw(rt, "nvme") {
				n.Features = []string{"nvme"}
			}
			nodes = append(nodes, n)
		}
		var parts []*api.PartitionConfig
		for i := range rapid.IntRange(1, 4).Draw(rt, "partitions") {
			p := &api.PartitionConfig{Name: fmt.Sprintf("p%d", i),
				State: rapid.SampledFrom([]string{"", "UP", "DOWN", "DRAIN", "INACTIVE"}).Draw(rt, "state")}
			switch rapid.IntRange(0, 2).Draw(rt, "by") {
			case 0:
				lo := rapid.IntRange(1, len(nodes)).Draw(rt, "lo")
				p.Nodes = fmt.Sprintf("n[%d-%d]", lo, rapid.IntRange(lo, len(nodes)).Draw(rt, "hi"))
			case 1:
				p.Features = []string{rapid.SampledFrom([]string{"a100", "h100", "nvme"}).Draw(rt, "feature")}
			}
			parts = append(parts, p)
		}
		v := &View{Nodes: nodes, Partitions: parts}
		for id := range uint64(rapid.IntRange(1, 20).Draw(rt, "jobs")) {
			v.Jobs = append(v.Jobs, pending(id+1, &api.JobSpec{
				Partition:   rapid.SampledFrom(parts).Draw(rt, "partition").Name,
				NodesMin:    uint32(rapid.IntRange(1, 2).Draw(rt, "N")),
				GpusPerNode: uint32(rapid.IntRange(0, 8).Draw(rt, "gpn")),
			}))
		}
		pt := api.NewPartitionTable(parts)
		p := Schedule(v, time.Unix(0, 0), Config{})
		byName := map[string]*api.Node{}
		for _, n := range nodes {
			byName[n.Name] = n
		}
		for _, pl := range p.Placements {
			spec := v.Jobs[pl.JobId-1].Spec
			if d := pt.Get(spec.Partition); !d.Runs() {
				rt.Fatalf("job %d of %s partition %s was placed", pl.JobId, d.PartitionState(), d.Name)
			}
			for _, name := range pl.Allocation.Nodes {
				if !pt.Has(byName[name], spec.Partition) {
					rt.Fatalf("job %d of partition %s placed on %s, which is not in it", pl.JobId, spec.Partition, name)
				}
			}
		}
	})
}
