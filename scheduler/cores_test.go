package scheduler

import (
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
)

// numaNode is a 4-GPU, 16-core node whose GPUs 0-1 hang off the NUMA node
// of cores 0-7 and GPUs 2-3 off that of cores 8-15.
func numaNode(name string) *api.Node {
	n := node(name, 4, 16)
	for _, g := range n.Topology.Gpus {
		for c := range uint32(8) {
			g.NearCores = append(g.NearCores, c+8*(g.Index/2))
		}
	}
	return n
}

// placeOne schedules the view and returns the one placement it makes.
func placeOne(t *testing.T, v *View) *api.Allocation {
	t.Helper()
	v.Usage = api.ComputeUsage(func(yield func(*api.Job) bool) {
		for _, j := range v.Jobs {
			if !yield(j) {
				return
			}
		}
	})
	p := Schedule(v, time.Unix(1000, 0), Config{})
	if len(p.Placements) != 1 {
		t.Fatalf("plan placed %d jobs, want 1 (pending: %v)", len(p.Placements), p.Pending)
	}
	return p.Placements[0].Allocation
}

func TestCoresNearTheRanksGPUs(t *testing.T) {
	tests := []struct {
		name    string
		running []*api.Rank
		spec    *api.JobSpec
		want    []string // each rank's cores
	}{
		{
			name: "each rank on its GPUs' NUMA node",
			spec: &api.JobSpec{NodesMin: 1, NtasksPerNode: 2, GpusPerTask: 2, CpusPerTask: 3},
			want: []string{"0-2", "8-10"},
		},
		{
			name:    "near cores taken: the lowest free others",
			running: []*api.Rank{{Node: "n0", Cpus: 7, Cores: []uint32{8, 9, 10, 11, 12, 13, 14}}},
			spec:    &api.JobSpec{NodesMin: 1, NtasksPerNode: 2, GpusPerTask: 2, CpusPerTask: 3},
			want:    []string{"0-2", "3-4,15"},
		},
		{
			name:    "a CPU-only rank takes the lowest free cores",
			running: []*api.Rank{{Node: "n0", Cpus: 2, Cores: []uint32{0, 1}}},
			spec:    &api.JobSpec{NodesMin: 1, NtasksPerNode: 1, CpusPerTask: 4},
			want:    []string{"2-5"},
		},
		{
			name: "ranks sharing all GPUs prefer all their near cores",
			spec: &api.JobSpec{NodesMin: 1, NtasksPerNode: 3, GpusPerNode: 4, CpusPerTask: 2},
			want: []string{"0-1", "2-3", "4-5"},
		},
		{
			name: "CPUs beyond the tasks' are shared out among the ranks",
			spec: &api.JobSpec{NodesMin: 1, NtasksPerNode: 2, GpusPerTask: 2, CpusPerGpu: 3},
			want: []string{"0-5", "8-13"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &View{Nodes: []*api.Node{numaNode("n0")}}
			if tt.running != nil {
				v.Jobs = append(v.Jobs, running(9, &api.JobSpec{}, time.Unix(0, 0), tt.running...))
			}
			v.Jobs = append(v.Jobs, pending(1, tt.spec))
			a := placeOne(t, v)
			if len(a.Ranks) != len(tt.want) {
				t.Fatalf("%d ranks, want %d", len(a.Ranks), len(tt.want))
			}
			for i, r := range a.Ranks {
				if got := api.FormatCores(r.Cores); got != tt.want[i] || uint32(len(r.Cores)) != r.Cpus {
					t.Errorf("rank %d (GPUs %v, %d CPUs) holds cores %s, want %s", i, r.GpuIndexes, r.Cpus, got, tt.want[i])
				}
			}
		})
	}
}

func TestCoresWithoutNUMAKnowledge(t *testing.T) {
	// GPUs whose affinity is unknown (no near cores): the lowest free.
	v := &View{Nodes: []*api.Node{node("n0", 4, 16)}}
	v.Jobs = append(v.Jobs, running(9, &api.JobSpec{}, time.Unix(0, 0), &api.Rank{Node: "n0", Cpus: 1, Cores: []uint32{0}}))
	v.Jobs = append(v.Jobs, pending(1, &api.JobSpec{NodesMin: 1, NtasksPerNode: 2, GpusPerTask: 1, CpusPerTask: 2}))
	a := placeOne(t, v)
	for i, want := range []string{"1-2", "3-4"} {
		if got := api.FormatCores(a.Ranks[i].Cores); got != want {
			t.Errorf("rank %d holds cores %s, want %s", i, got, want)
		}
	}
}
