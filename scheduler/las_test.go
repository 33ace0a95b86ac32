package scheduler

import (
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
)

func TestLASQueue(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	cfg := LASConfig{Thresholds: []float64{3600, 36000}, PromoteFactor: 4}
	tests := []struct {
		name string
		job  *api.Job
		want int
	}{
		{"new", pending(1, &api.JobSpec{GpusPerNode: 8}), 0},
		{"ran 30 min on 1 GPU", running(2, &api.JobSpec{GpusPerNode: 1}, t0.Add(-30*time.Minute), gpuRank("a", 0)), 0},
		{"ran 1 h on 1 GPU", running(3, &api.JobSpec{GpusPerNode: 1}, t0.Add(-time.Hour), gpuRank("a", 0)), 1},
		{"ran 10 min on 8 GPUs", running(4, &api.JobSpec{GpusPerNode: 8}, t0.Add(-10*time.Minute), gpuRank("a", 0, 1, 2, 3, 4, 5, 6, 7)), 1},
		{"ran 2 h on 8 GPUs", running(5, &api.JobSpec{GpusPerNode: 8}, t0.Add(-2*time.Hour), gpuRank("a", 0, 1, 2, 3, 4, 5, 6, 7)), 2},
		{"CPU-only, ran 2 h", running(6, &api.JobSpec{}, t0.Add(-2*time.Hour), &api.Rank{Node: "a", Cpus: 1}), 1},
	}
	// A preempted job keeps its earlier service: 2 GPU-hours, then it
	// waited 1 hour (less than 4 × the hour it ran): queue 1.
	requeued := pending(7, &api.JobSpec{GpusPerNode: 2})
	requeued.SubmitUnixMs = t0.Add(-2 * time.Hour).UnixMilli()
	requeued.AttainedGpuMs = 2 * 3600 * 1000
	requeued.Allocation = &api.Allocation{Ranks: []*api.Rank{gpuRank("a", 0, 1)}}
	tests = append(tests, struct {
		name string
		job  *api.Job
		want int
	}{"requeued, waited 1 h after 1 h", requeued, 1})
	// The same job having waited 5 hours (≥ 4 × 1 h) is promoted.
	starved := pending(8, &api.JobSpec{GpusPerNode: 2})
	starved.SubmitUnixMs = t0.Add(-6 * time.Hour).UnixMilli()
	starved.AttainedGpuMs = 2 * 3600 * 1000
	starved.Allocation = requeued.Allocation
	tests = append(tests, struct {
		name string
		job  *api.Job
		want int
	}{"requeued, waited 5 h after 1 h", starved, 0})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LASQueue(tt.job, t0, cfg); got != tt.want {
				t.Errorf("LASQueue = %d, want %d (attained %.0f GPU-s)", got, tt.want, tt.job.AttainedGPUSeconds(t0))
			}
		})
	}
}

func TestLASPreemptsLongJobForNewOne(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	cfg := Config{Order: OrderLeastAttained, LAS: LASConfig{Thresholds: []float64{3600}}}
	nodes := []*api.Node{node("a", 8, 64)}
	all := gpuRank("a", 0, 1, 2, 3, 4, 5, 6, 7)
	tests := []struct {
		name string
		long *api.Job
		want bool
	}{
		{"requeueable batch job", running(1, &api.JobSpec{GpusPerNode: 8}, t0.Add(-10*time.Hour), all), true},
		{"--no-requeue", running(1, &api.JobSpec{GpusPerNode: 8, Requeue: new(false)}, t0.Add(-10*time.Hour), all), false},
		{"srun outside an allocation", running(1, &api.JobSpec{GpusPerNode: 8, Argv: []string{"x"}, Requeue: new(true)}, t0.Add(-10*time.Hour), all), false},
		{"within its minimum run", running(1, &api.JobSpec{GpusPerNode: 8}, t0.Add(-time.Minute), all), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			short := pending(2, &api.JobSpec{GpusPerNode: 4})
			short.SubmitUnixMs = t0.UnixMilli()
			v := &View{Nodes: nodes, Jobs: []*api.Job{tt.long, short}}
			p := Schedule(v, t0, cfg)
			got := len(p.Preemptions) == 1 && p.Preemptions[0].JobId == 1 && p.Preemptions[0].ForJobId == 2
			if got != tt.want {
				t.Fatalf("preemptions = %v, want job 1 preempted for job 2: %v", p.Preemptions, tt.want)
			}
			if tt.want {
				if r := reasonOf(p, 2); r != ReasonPreempting {
					t.Errorf("job 2: %s, want %s", r, ReasonPreempting)
				}
				// The next cycle: job 1 is requeued, its ranks still stop.
				// Nothing else is preempted, and job 2 waits for them.
				v2 := apply(v, p)
				p2 := Schedule(v2, t0.Add(time.Second), cfg)
				if len(p2.Preemptions) != 0 || len(p2.Placements) != 0 {
					t.Fatalf("second cycle: preemptions %v, placements %v; want none while the victim stops", p2.Preemptions, p2.Placements)
				}
			}
		})
	}
}

func TestLASNoPreemptionWithinAQueue(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	// Both jobs are new: the running one has had 10 GPU-minutes, under
	// the first threshold, so a newcomer waits behind it.
	cur := running(1, &api.JobSpec{GpusPerNode: 1}, t0.Add(-10*time.Minute), gpuRank("a", 0))
	newer := pending(2, &api.JobSpec{GpusPerNode: 1})
	newer.SubmitUnixMs = t0.UnixMilli()
	v := &View{Nodes: []*api.Node{node("a", 1, 64)}, Jobs: []*api.Job{cur, newer}}
	if p := Schedule(v, t0, Config{Order: OrderLeastAttained, LAS: LASConfig{MinRun: -1}}); len(p.Preemptions) != 0 {
		t.Fatalf("preemptions = %v, want none: both jobs are in queue 0", p.Preemptions)
	}
	if p := Schedule(v, t0, Config{Order: OrderLeastAttained, LAS: LASConfig{Preempt: PreemptNever, Thresholds: []float64{60}}}); len(p.Preemptions) != 0 {
		t.Fatalf("PreemptNever: preemptions = %v, want none", p.Preemptions)
	}
}

func TestLASOrdersByQueueThenSubmit(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	// Job 1 was submitted first but has had 2 GPU-hours before a
	// requeue; job 2 is new. Both fit only one at a time: job 2 first.
	old := pending(1, &api.JobSpec{GpusPerNode: 1})
	old.SubmitUnixMs = t0.Add(-3 * time.Hour).UnixMilli()
	old.AttainedGpuMs = 2 * 3600 * 1000
	old.Allocation = &api.Allocation{Ranks: []*api.Rank{gpuRank("a", 0)}}
	fresh := pending(2, &api.JobSpec{GpusPerNode: 1})
	fresh.SubmitUnixMs = t0.Add(-time.Minute).UnixMilli()
	v := &View{Nodes: []*api.Node{node("a", 1, 64)}, Jobs: []*api.Job{old, fresh}}
	p := Schedule(v, t0, Config{Order: OrderLeastAttained, LAS: LASConfig{Thresholds: []float64{3600}}})
	if len(p.Placements) != 1 || p.Placements[0].JobId != 2 {
		t.Fatalf("placements = %v, want job 2 (no service yet) before job 1", p.Placements)
	}
}

func TestLASWithinQueueOrder(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	early := pending(1, &api.JobSpec{GpusPerNode: 1, TimeLimitS: 7200})
	late := pending(2, &api.JobSpec{GpusPerNode: 1, TimeLimitS: 600})
	v := &View{Nodes: []*api.Node{node("a", 1, 64)}, Jobs: []*api.Job{early, late}}
	for _, tt := range []struct {
		order QueueOrder
		want  uint64
	}{{QueueFIFO, 1}, {QueueShortestLimit, 2}} {
		p := Schedule(v, t0, Config{Order: OrderLeastAttained, LAS: LASConfig{WithinQueue: tt.order}})
		if len(p.Placements) != 1 || p.Placements[0].JobId != tt.want {
			t.Errorf("WithinQueue %d: placements %v, want job %d", tt.order, p.Placements, tt.want)
		}
	}
}
