package sched

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/scheduler"
)

// Mix is the share of jobs by GPU count in the Philly trace (2017,
// philly.csv: 93.2% 1 GPU, 2.2% 2, 2.3% 4, 2.0% 8, 0.24% 16, ...).
var Mix = []struct {
	GPUs  int
	Share float64
}{{1, 0.9317}, {2, 0.0221}, {4, 0.0227}, {8, 0.0200}, {16, 0.0024}, {32, 0.0008}, {64, 0.0003}}

// Options shapes the synthetic cluster.
type Options struct {
	Nodes       int
	GPUsPerNode int
	Pending     int
	Busy        float64 // share of GPUs held by running jobs
	LeafSize    int     // nodes per leaf switch
	Seed        uint64
}

// Build returns the view and the time of the cycle to schedule.
func Build(o Options) (*scheduler.View, time.Time) {
	now := time.Unix(1_700_000_000, 0)
	rng := rand.New(rand.NewPCG(o.Seed, 1))
	v := &scheduler.View{}
	for i := range o.Nodes {
		name := fmt.Sprintf("gpu%05d", i)
		t := &api.Topology{}
		for g := range o.GPUsPerNode {
			t.Gpus = append(t.Gpus, &api.GPU{Index: uint32(g), Uuid: fmt.Sprintf("GPU-%s-%d", name, g), Healthy: true, NumaNode: int32(g * 2 / o.GPUsPerNode)})
		}
		v.Nodes = append(v.Nodes, &api.Node{Name: name, Address: name + ":7073", Cpus: 128, MemoryMb: 1 << 20,
			Topology: t, LeafSwitch: fmt.Sprintf("leaf%03d", i/o.LeafSize), SpineSwitch: "spine"})
	}
	size := func() int {
		x := rng.Float64()
		for _, m := range Mix {
			if x < m.Share {
				return m.GPUs
			}
			x -= m.Share
		}
		return 1
	}
	spec := func(g int) *api.JobSpec {
		s := &api.JobSpec{Script: "x", TimeLimitS: int64([]int{3600, 7200, 14400, 86400}[rng.IntN(4)])}
		if g <= o.GPUsPerNode {
			s.GpusPerNode = uint32(g)
		} else {
			s.NodesMin = uint32((g + o.GPUsPerNode - 1) / o.GPUsPerNode)
			s.GpusPerNode = uint32(o.GPUsPerNode)
		}
		return s
	}
	// Fill the cluster to Busy with running jobs, placed by the scheduler
	// itself so their allocations are realistic.
	id := uint64(1)
	target := int(o.Busy * float64(o.Nodes*o.GPUsPerNode))
	used := 0
	for used < target {
		var batch []*api.Job
		for b := 0; b < 4096 && used < target; b++ {
			g := size()
			batch = append(batch, &api.Job{Id: id, Spec: spec(g), State: api.JobState_PENDING, SubmitUnixMs: now.Add(-time.Hour).UnixMilli()})
			id++
			used += g
		}
		pv := &scheduler.View{Nodes: v.Nodes, Jobs: append(slices.Clone(v.Jobs), batch...)}
		plan := scheduler.Schedule(pv, now.Add(-time.Duration(rng.IntN(3600))*time.Second), scheduler.Config{ReserveDepth: -1})
		placed := map[uint64]*api.Allocation{}
		for _, p := range plan.Placements {
			placed[p.JobId] = p.Allocation
		}
		for _, j := range batch {
			if a := placed[j.Id]; a != nil {
				a.Tasks = make([]*api.TaskStatus, len(a.Ranks))
				for i := range a.Tasks {
					a.Tasks[i] = &api.TaskStatus{State: api.TaskState_TASK_RUNNING}
				}
				j.State, j.Allocation = api.JobState_RUNNING, a
				j.StartUnixMs = now.Add(-time.Duration(rng.IntN(3000)) * time.Second).UnixMilli()
				v.Jobs = append(v.Jobs, j)
			}
		}
		if len(placed) == 0 {
			break
		}
	}
	for range o.Pending {
		v.Jobs = append(v.Jobs, &api.Job{Id: id, Spec: spec(size()), State: api.JobState_PENDING, User: fmt.Sprintf("u%d", rng.IntN(50)),
			SubmitUnixMs: now.Add(-time.Duration(rng.IntN(86400)) * time.Second).UnixMilli()})
		id++
	}
	return v, now
}

// Main runs `loom bench sched`.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom bench sched", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := Options{}
	fs.IntVar(&o.Nodes, "nodes", 4096, "nodes")
	fs.IntVar(&o.GPUsPerNode, "gpus-per-node", 8, "GPUs per node")
	fs.IntVar(&o.Pending, "pending", 20000, "pending jobs")
	fs.Float64Var(&o.Busy, "busy", 0.7, "share of GPUs busy before the cycle")
	fs.IntVar(&o.LeafSize, "leaf", 32, "nodes per leaf switch")
	runs := fs.Int("runs", 5, "cycles to time; the median is printed")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	v, now := Build(o)
	running := len(v.Jobs) - o.Pending
	var times []time.Duration
	var plan *scheduler.Plan
	for range *runs {
		start := time.Now()
		plan = scheduler.Schedule(v, now, scheduler.Config{})
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	med := times[len(times)/2]
	placed := len(plan.Placements)
	fmt.Fprintf(stdout, "nodes=%d\ngpus=%d\nrunning=%d\npending=%d\nplaced=%d\nreservations=%d\n",
		o.Nodes, o.Nodes*o.GPUsPerNode, running, o.Pending, placed, len(plan.Reservations))
	fmt.Fprintf(stdout, "cycle_ms=%.1f\ncycle_ms_min=%.1f\ncycle_ms_max=%.1f\njobs_placed_per_s=%.0f\n",
		ms(med), ms(times[0]), ms(times[len(times)-1]), float64(placed)/med.Seconds())
	return 0
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
