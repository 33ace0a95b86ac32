package scheduler

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
)

// featured is a node with declared features and GPUs of a model.
func featured(name, model string, features ...string) *api.Node {
	n := node(name, 8, 64)
	for _, g := range n.Topology.Gpus {
		g.Model = model
	}
	n.Features = features
	return n
}

func placedOn(p *Plan) map[uint64][]string {
	on := map[uint64][]string{}
	for _, pl := range p.Placements {
		on[pl.JobId] = pl.Allocation.Nodes
	}
	return on
}

// TestConstraintPlacement: jobs land only on nodes whose features (declared
// or derived from the GPU model) meet their --constraint, every node of a
// matching OR ([a|b]) shares one item, a GPU type takes only nodes of that
// model, and a job that cannot be placed by its constraint does not hold
// back an unconstrained job of the same shape.
func TestConstraintPlacement(t *testing.T) {
	const h100, a100 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"
	nodes := func() []*api.Node {
		return []*api.Node{
			featured("a", a100, "rack1", "ib"),
			featured("b", h100, "rack1"),
			featured("c", h100, "rack2", "ib"),
			featured("d", h100, "rack2", "ib"),
		}
	}
	rack := map[string]string{"a": "rack1", "b": "rack1", "c": "rack2", "d": "rack2"}
	tests := []struct {
		name string
		spec *api.JobSpec
		want []string // the nodes it must land on, sorted; nil: not placed
	}{
		{"declared feature", &api.JobSpec{NodesMin: 1, GpusPerNode: 8, Constraint: "rack2&ib"}, []string{"c"}},
		{"feature from the GPU model", &api.JobSpec{NodesMin: 1, GpusPerNode: 8, Constraint: "a100"}, []string{"a"}},
		{"AND of declared and derived", &api.JobSpec{NodesMin: 2, GpusPerNode: 8, Constraint: "h100&ib"}, []string{"c", "d"}},
		{"OR", &api.JobSpec{NodesMin: 2, GpusPerNode: 8, Constraint: "a100|rack2"}, []string{"a", "c"}},
		{"no node has it", &api.JobSpec{NodesMin: 1, GpusPerNode: 8, Constraint: "v100"}, nil},
		{"too few nodes have it", &api.JobSpec{NodesMin: 3, GpusPerNode: 8, Constraint: "ib"}, []string{"a", "c", "d"}},
		{"GPU type", &api.JobSpec{NodesMin: 1, GpusPerNode: 2, GpuType: "a100"}, []string{"a"}},
		{"GPU type nobody has", &api.JobSpec{NodesMin: 1, GpusPerNode: 2, GpuType: "v100"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &View{Nodes: nodes(), Jobs: []*api.Job{pending(1, tt.spec)}}
			got := placedOn(Schedule(v, time.Unix(0, 0), Config{}))[1]
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Schedule(%+v) placed on %v, want %v", tt.spec, got, tt.want)
			}
		})
	}

	// A matching OR: two nodes on one rack. With a whole rack1 node taken
	// only rack2 can hold the gang; never one node of each.
	v := &View{Nodes: nodes(), Jobs: []*api.Job{
		pending(1, &api.JobSpec{NodesMin: 1, GpusPerNode: 8, Nodelist: []string{"a"}}),
		pending(2, &api.JobSpec{NodesMin: 2, GpusPerNode: 8, Constraint: "[rack1|rack2]"}),
	}}
	on := placedOn(Schedule(v, time.Unix(0, 0), Config{}))
	if got := on[2]; len(got) != 2 || rack[got[0]] != rack[got[1]] || rack[got[0]] != "rack2" {
		t.Errorf("[rack1|rack2] with a taken: placed on %v, want both nodes of rack2", got)
	}
	// With one free node per rack the matching OR cannot be met, though
	// a plain OR can.
	v = &View{Nodes: nodes(), Jobs: []*api.Job{
		pending(1, &api.JobSpec{NodesMin: 1, GpusPerNode: 8, Nodelist: []string{"a"}}),
		pending(2, &api.JobSpec{NodesMin: 1, GpusPerNode: 8, Nodelist: []string{"c"}}),
		pending(3, &api.JobSpec{NodesMin: 2, GpusPerNode: 8, Constraint: "[rack1|rack2]"}),
		pending(4, &api.JobSpec{NodesMin: 2, GpusPerNode: 8, Constraint: "rack1|rack2"}),
	}}
	on = placedOn(Schedule(v, time.Unix(0, 0), Config{}))
	if got, ok := on[3]; ok {
		t.Errorf("[rack1|rack2] with one free node per rack placed on %v", got)
	}
	if got := on[4]; len(got) != 2 {
		t.Errorf("rack1|rack2 with b and d free placed on %v, want both", got)
	}

	// The memo of failed shapes tells a constrained job from its
	// unconstrained twin.
	v = &View{Nodes: nodes(), Jobs: []*api.Job{
		pending(1, &api.JobSpec{NodesMin: 1, GpusPerNode: 8, Constraint: "v100"}),
		pending(2, &api.JobSpec{NodesMin: 1, GpusPerNode: 8}),
	}}
	if _, ok := placedOn(Schedule(v, time.Unix(0, 0), Config{}))[2]; !ok {
		t.Error("an unconstrained job was held back by a constrained one of the same shape")
	}
}

// TestFeasibleConstraint: a constraint or GPU type no node of the partition
// can meet is refused with the features the nodes do have.
func TestFeasibleConstraint(t *testing.T) {
	nodes := []*api.Node{featured("a", "NVIDIA H100 80GB HBM3", "ib"), featured("b", "NVIDIA H100 80GB HBM3", "nvme")}
	tests := []struct {
		spec *api.JobSpec
		want string // "" feasible, else a substring of the error
	}{
		{&api.JobSpec{Constraint: "ib"}, ""},
		{&api.JobSpec{Constraint: "[ib|h100]", NodesMin: 2}, ""},
		{&api.JobSpec{Constraint: "ib", NodesMin: 2}, `--nodes=2: partition "batch" has only 1 nodes with the features asked for`},
		{&api.JobSpec{Constraint: "[ib|nvme]", NodesMin: 2}, "no 2 nodes"},
		{&api.JobSpec{Constraint: "gdr"}, `--constraint=gdr: no node of partition "batch" has these features (its nodes have: h100,ib,nvme)`},
		{&api.JobSpec{GpusPerNode: 1, GpuType: "h100"}, ""},
		{&api.JobSpec{GpusPerNode: 1, GpuType: "a100"}, `GPU type "a100": no node of partition "batch" has only GPUs of this type`},
	}
	for _, tt := range tests {
		err := Feasible(nodes, tt.spec)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Feasible(%+v) = %v, want nil", tt.spec, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Feasible(%+v) = %v, want an error containing %q", tt.spec, err, tt.want)
		}
	}
}

// TestPerGPUFiguresHeld: CPUs and memory per GPU are held by the ranks, so
// that the next cycle (which counts ranks) sees the node as full.
func TestPerGPUFiguresHeld(t *testing.T) {
	n := node("a", 8, 64)
	n.MemoryMb = 8 * 10240
	v := &View{Nodes: []*api.Node{n}, Jobs: []*api.Job{
		pending(1, &api.JobSpec{NodesMin: 1, GpusPerNode: 4, CpusPerGpu: 16, MemPerGpuMb: 20480}),
	}}
	p := Schedule(v, time.Unix(0, 0), Config{})
	if len(p.Placements) != 1 {
		t.Fatalf("Schedule placed %d jobs, want 1", len(p.Placements))
	}
	var cpus uint32
	var mem uint64
	for _, r := range p.Placements[0].Allocation.Ranks {
		cpus += r.Cpus
		mem += r.MemMb
	}
	if cpus != 64 || mem != 4*20480 {
		t.Errorf("ranks hold %d CPUs and %d MB, want 64 and %d", cpus, mem, 4*20480)
	}
	// The node has 4 GPUs left but no CPUs: a job needing one CPU waits.
	v = apply(v, p)
	v.Jobs = append(v.Jobs, pending(2, &api.JobSpec{NodesMin: 1, GpusPerNode: 1}))
	if p := Schedule(v, time.Unix(0, 0), Config{}); len(p.Placements) != 0 {
		t.Errorf("a job was placed on a node whose CPUs --cpus-per-gpu took")
	}
}
