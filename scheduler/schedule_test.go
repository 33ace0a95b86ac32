package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"pgregory.net/rapid"
)

func node(name string, gpus int, cpus uint32) *api.Node {
	t := &api.Topology{}
	for i := range gpus {
		t.Gpus = append(t.Gpus, &api.GPU{Index: uint32(i), Uuid: fmt.Sprintf("GPU-%s-%d", name, i), Healthy: true})
	}
	return &api.Node{Name: name, Address: "10.0.0.1:7073", Cpus: cpus, MemoryMb: 1 << 20, Topology: t}
}

func pending(id uint64, spec *api.JobSpec) *api.Job {
	spec.Script = "x"
	return &api.Job{Id: id, Spec: spec, State: api.JobState_PENDING, Reason: "None", SubmitUnixMs: int64(id) * 1000}
}

// apply marks the plan's placements as running jobs in a new view, as the
// FSM would after committing it.
func apply(v *View, p *Plan) *View {
	out := &View{Nodes: v.Nodes, Usage: api.Usage{}}
	placed := map[uint64]*api.Allocation{}
	for _, pl := range p.Placements {
		pl.Allocation.Tasks = make([]*api.TaskStatus, len(pl.Allocation.Ranks))
		for i := range pl.Allocation.Tasks {
			pl.Allocation.Tasks[i] = &api.TaskStatus{State: api.TaskState_TASK_RUNNING}
		}
		placed[pl.JobId] = pl.Allocation
	}
	preempted := map[uint64]bool{}
	for _, pr := range p.Preemptions {
		preempted[pr.JobId] = true
	}
	for _, j := range v.Jobs {
		if a, ok := placed[j.Id]; ok {
			j = &api.Job{Id: j.Id, Spec: j.Spec, State: api.JobState_RUNNING, Allocation: a, SubmitUnixMs: j.SubmitUnixMs}
		}
		if preempted[j.Id] {
			// Requeued; its ranks are still stopping, so it holds its GPUs.
			j = &api.Job{Id: j.Id, Spec: j.Spec, State: api.JobState_PENDING, Allocation: j.Allocation, SubmitUnixMs: j.SubmitUnixMs}
		}
		out.Jobs = append(out.Jobs, j)
	}
	out.Usage = api.ComputeUsage(func(yield func(*api.Job) bool) {
		for _, j := range out.Jobs {
			if !yield(j) {
				return
			}
		}
	})
	return out
}

func TestGangAllOrNothing(t *testing.T) {
	v := &View{
		Nodes: []*api.Node{node("a", 8, 64), node("b", 8, 64)},
		Jobs: []*api.Job{
			pending(1, &api.JobSpec{NodesMin: 2, NtasksPerNode: 4, GpusPerNode: 4}),
			pending(2, &api.JobSpec{NodesMin: 2, NtasksPerNode: 4, GpusPerNode: 4}),
			pending(3, &api.JobSpec{NodesMin: 2, GpusPerNode: 8}),
		},
	}
	p := Schedule(v, time.Unix(0, 0), Config{})
	if len(p.Placements) != 2 || p.Placements[0].JobId != 1 || p.Placements[1].JobId != 2 {
		t.Fatalf("placements = %v, want jobs 1 and 2", p.Placements)
	}
	if len(p.Pending) != 1 || p.Pending[0].JobId != 3 || p.Pending[0].Reason != ReasonResources {
		t.Fatalf("pending = %v, want job 3 waiting on Resources", p.Pending)
	}
	a := p.Placements[0].Allocation
	if len(a.Ranks) != 8 || len(a.Nodes) != 2 {
		t.Fatalf("job 1: %d ranks on %d nodes, want 8 on 2", len(a.Ranks), len(a.Nodes))
	}
	seen := map[string]bool{}
	for _, pl := range p.Placements {
		for _, r := range pl.Allocation.Ranks {
			if len(r.GpuUuids) != 1 {
				t.Fatalf("job %d rank %d got %d GPUs, want 1 (4 GPUs over 4 ranks)", pl.JobId, r.Rank, len(r.GpuUuids))
			}
			if seen[r.GpuUuids[0]] {
				t.Fatalf("GPU %s given twice", r.GpuUuids[0])
			}
			seen[r.GpuUuids[0]] = true
		}
	}
	// Once 1 and 2 end, 3 fits.
	v2 := &View{Nodes: v.Nodes, Jobs: []*api.Job{v.Jobs[2]}, Usage: api.Usage{}}
	if p := Schedule(v2, time.Unix(0, 0), Config{}); len(p.Placements) != 1 {
		t.Fatalf("job 3 on an empty cluster: %d placements, want 1", len(p.Placements))
	}
}

func TestRankEnvironmentLayout(t *testing.T) {
	v := &View{Nodes: []*api.Node{node("a", 8, 64), node("b", 8, 64)},
		Jobs: []*api.Job{pending(1, &api.JobSpec{Ntasks: 6, NtasksPerNode: 4, GpusPerTask: 1})}}
	p := Schedule(v, time.Unix(0, 0), Config{})
	if len(p.Placements) != 1 {
		t.Fatalf("not placed: %v", p.Pending)
	}
	a := p.Placements[0].Allocation
	var got []string
	for _, r := range a.Ranks {
		got = append(got, fmt.Sprintf("%d:%s/%d/%d", r.Rank, r.Node, r.LocalRank, r.LocalSize))
	}
	want := "0:a/0/4 1:a/1/4 2:a/2/4 3:a/3/4 4:b/0/2 5:b/1/2"
	if strings.Join(got, " ") != want {
		t.Fatalf("ranks = %s, want %s", strings.Join(got, " "), want)
	}
	if a.MasterAddr != "10.0.0.1" || a.MasterPort == 0 {
		t.Fatalf("master = %s:%d, want 10.0.0.1 and a port", a.MasterAddr, a.MasterPort)
	}
}

func TestFeasible(t *testing.T) {
	nodes := []*api.Node{node("a", 8, 64), node("b", 8, 64)}
	tests := []struct {
		spec *api.JobSpec
		want string // substring of the error, "" for feasible
	}{
		{&api.JobSpec{NodesMin: 2, GpusPerNode: 8}, ""},
		{&api.JobSpec{NodesMin: 3}, "--nodes=3"},
		{&api.JobSpec{NodesMin: 1, GpusPerNode: 9}, "needs 9 GPUs"},
		{&api.JobSpec{Ntasks: 3, CpusPerTask: 30}, ""},
		{&api.JobSpec{Ntasks: 1, CpusPerTask: 100}, "needs 100 CPUs"},
		{&api.JobSpec{Partition: "nope"}, `partition "nope" has no nodes`},
	}
	for _, tt := range tests {
		err := Feasible(nodes, tt.spec)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Feasible(%v) = %v, want nil", tt.spec, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Feasible(%v) = %v, want error containing %q", tt.spec, err, tt.want)
		}
	}
}

func TestFeasibleCountsDownNodes(t *testing.T) {
	a, b := node("a", 8, 64), node("b", 8, 64)
	a.State, b.State = api.NodeState_DOWN, api.NodeState_DRAIN
	if err := Feasible([]*api.Node{a, b}, &api.JobSpec{NodesMin: 2, GpusPerNode: 8}); err != nil {
		t.Fatalf("Feasible on two down/drained nodes = %v, want nil: they may come back", err)
	}
}

func TestDrainedNodeTakesNothing(t *testing.T) {
	a, b := node("a", 8, 64), node("b", 8, 64)
	b.State = api.NodeState_DRAIN
	v := &View{Nodes: []*api.Node{a, b}, Jobs: []*api.Job{pending(1, &api.JobSpec{NodesMin: 2})}}
	if p := Schedule(v, time.Unix(0, 0), Config{}); len(p.Placements) != 0 {
		t.Fatalf("a 2-node job was placed with one of two nodes drained")
	}
}

// TestPropertyPlans: over random clusters and queues (exclusive jobs,
// time limits, two QoS levels with preemption), every plan places whole
// gangs only, never gives a GPU or a core twice (also across cycles, and
// not while a preempted job's ranks still hold it), gives every rank one
// core per CPU, and is the same for the same input.
func TestPropertyPlans(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		v := &View{Usage: api.Usage{}}
		for i := range rapid.IntRange(1, 6).Draw(rt, "nodes") {
			v.Nodes = append(v.Nodes, node(fmt.Sprint("n", i), rapid.SampledFrom([]int{0, 4, 8}).Draw(rt, "gpus"), 32))
		}
		for id := uint64(1); id <= uint64(rapid.IntRange(1, 25).Draw(rt, "jobs")); id++ {
			spec := &api.JobSpec{
				NodesMin:      uint32(rapid.IntRange(0, 3).Draw(rt, "N")),
				NtasksPerNode: uint32(rapid.IntRange(0, 4).Draw(rt, "tpn")),
			}
			spec.Exclusive = rapid.IntRange(0, 5).Draw(rt, "exclusive") == 0
			spec.TimeLimitS = int64(rapid.IntRange(0, 3).Draw(rt, "limit")) * 600
			if rapid.IntRange(0, 4).Draw(rt, "qos") == 0 {
				spec.Qos = "high"
			} else {
				spec.Qos = "low"
			}
			switch rapid.IntRange(0, 2).Draw(rt, "gpuform") {
			case 1:
				spec.GpusPerNode = uint32(rapid.IntRange(1, 8).Draw(rt, "gpn"))
			case 2:
				spec.GpusPerTask = uint32(rapid.IntRange(1, 2).Draw(rt, "gpt"))
			}
			j := pending(id, spec)
			j.Priority = uint32(rapid.IntRange(0, 3).Draw(rt, "prio"))
			v.Jobs = append(v.Jobs, j)
		}
		cfg := Config{QOS: map[string]QOS{"high": {Priority: 10, Preempt: []string{"low"}}, "low": {}}}
		for cycle := 0; cycle < 3; cycle++ {
			now := time.Unix(int64(cycle)*300, 0)
			p := Schedule(v, now, cfg)
			again := Schedule(v, now, cfg)
			if fmt.Sprint(p.Placements, p.Pending, p.Preemptions) != fmt.Sprint(again.Placements, again.Pending, again.Preemptions) {
				rt.Fatalf("same view, different plans")
			}
			for _, pl := range p.Placements {
				var spec *api.JobSpec
				for _, j := range v.Jobs {
					if j.Id == pl.JobId {
						spec = j.Spec
					}
				}
				n := uint32(len(pl.Allocation.Nodes))
				if want := spec.TotalTasks(n); uint32(len(pl.Allocation.Ranks)) != want {
					rt.Fatalf("job %d: %d ranks placed, want all %d", pl.JobId, len(pl.Allocation.Ranks), want)
				}
			}
			v = apply(v, p)
			cores := map[string]uint64{}
			held := map[string]uint64{}
			for _, j := range v.Jobs {
				if !j.HoldsResources() {
					continue
				}
				for _, r := range j.Allocation.Ranks {
					for _, g := range r.GpuUuids {
						if other, ok := held[g]; ok && other != j.Id {
							rt.Fatalf("GPU %s held by jobs %d and %d", g, other, j.Id)
						}
						held[g] = j.Id
					}
					if uint32(len(r.Cores)) != r.Cpus {
						rt.Fatalf("job %d rank %d: cores %v for %d CPUs", j.Id, r.Rank, r.Cores, r.Cpus)
					}
					for _, c := range r.Cores {
						key := fmt.Sprint(r.Node, "/", c)
						if c >= 32 {
							rt.Fatalf("job %d holds core %s of a 32-core node", j.Id, key)
						}
						if other, ok := cores[key]; ok && other != j.Id {
							rt.Fatalf("core %s held by jobs %d and %d", key, other, j.Id)
						}
						cores[key] = j.Id
					}
				}
			}
		}
	})
}
