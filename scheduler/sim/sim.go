// Package sim replays a job trace through the same scheduler.Schedule the
// leader runs, with a virtual clock, and reports job completion times,
// queueing delay, utilization and fragmentation; `loom sim`
// (internal/simcmd) is its command.
// It is event-driven: Schedule runs only when a job arrives or ends.
package sim

import (
	"container/heap"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/gpu"
	"github.com/loomhpc/loom/scheduler"
)

// Cluster is one simulated set of nodes and the jobs submitted to it.
type Cluster struct {
	Name        string
	Nodes       int
	GPUsPerNode int
	Profile     string // gpu profile for every node; "" for plain GPUs without links
	Jobs        []TraceJob
}

// JobResult is one job's fate.
type JobResult struct {
	ID       uint64
	Cluster  string
	GPUs     int
	Submit   time.Time
	Start    time.Time
	End      time.Time
	Duration time.Duration
	Limit    time.Duration
}

// Stats are a run's figures.
type Stats struct {
	Jobs        int
	Dropped     int // asked for more GPUs than their cluster has
	AvgJCT      float64
	MedianJCT   float64
	P99JCT      float64
	AvgQueue    float64
	Makespan    float64
	GPUUtil     float64 // GPU-seconds used / (GPUs × makespan)
	FragGPUs    float64 // free GPUs while some job waits, averaged over the makespan
	GPUSeconds  float64
	TotalGPUs   int
	first, last time.Time
}

// LimitModel turns a true duration into the time limit a user would give.
type LimitModel func(d time.Duration) time.Duration

// roundupSteps are the limits users pick under the roundup model.
var roundupSteps = []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 24 * time.Hour,
	48 * time.Hour, 72 * time.Hour, 168 * time.Hour}

// ParseLimitModel reads exact, factor:K or roundup.
func ParseLimitModel(s string) (LimitModel, error) {
	switch {
	case s == "exact":
		return func(d time.Duration) time.Duration { return max(d.Round(time.Second), time.Second) }, nil
	case s == "roundup":
		return func(d time.Duration) time.Duration {
			for _, st := range roundupSteps {
				if d <= st {
					return st
				}
			}
			week := roundupSteps[len(roundupSteps)-1]
			return (d + week - 1) / week * week
		}, nil
	case len(s) > 7 && s[:7] == "factor:":
		var k float64
		if _, err := fmt.Sscanf(s[7:], "%g", &k); err != nil || k < 1 {
			return nil, fmt.Errorf("--time-limit-model=%s: K must be a number >= 1", s)
		}
		return func(d time.Duration) time.Duration {
			return max(time.Duration(float64(d)*k).Round(time.Second), time.Second)
		}, nil
	}
	return nil, fmt.Errorf("--time-limit-model=%s: want exact, factor:K or roundup", s)
}

// PolicyConfig returns the scheduler configuration of a named policy.
func PolicyConfig(name string) (scheduler.Config, error) {
	switch name {
	case "fifo":
		// Strict first-come first-served: the head of the queue blocks it.
		return scheduler.Config{Order: scheduler.OrderFIFO, Strict: true, ReserveDepth: -1}, nil
	case "sjf":
		// Shortest time limit first, greedy (with exact limits: SJF).
		return scheduler.Config{Order: scheduler.OrderShortest, ReserveDepth: -1}, nil
	case "loom":
		// Multifactor priority favouring small service (GPUs × time limit,
		// log scale) with age for fairness, reservations and backfill.
		return scheduler.Config{Order: scheduler.OrderMultifactor, Priority: scheduler.PriorityConfig{
			WeightAge: 1000, WeightJobSize: 1000, FavorSmall: true, SizeByService: true,
		}}, nil
	}
	return scheduler.Config{}, fmt.Errorf("--policy=%s: want fifo, sjf or loom", name)
}

type running struct {
	end time.Time
	job *api.Job
	res *JobResult
}

type endHeap []running

func (h endHeap) Len() int { return len(h) }
func (h endHeap) Less(i, j int) bool {
	if !h[i].end.Equal(h[j].end) {
		return h[i].end.Before(h[j].end)
	}
	return h[i].job.Id < h[j].job.Id
}
func (h endHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)   { *h = append(*h, x.(running)) }
func (h *endHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Run is what one simulated cluster produced.
type Run struct {
	Results []JobResult
	Dropped int // asked for more GPUs than the cluster has
	Cycles  int // calls of Schedule
	// FragGPUSeconds integrates the free GPUs over the time some job waits.
	FragGPUSeconds float64
}

// Simulate replays c's jobs through Schedule with cfg and returns each
// job's result. Jobs larger than the cluster are dropped and counted.
func Simulate(c Cluster, cfg scheduler.Config, limit LimitModel) (*Run, error) {
	nodes, err := buildNodes(c)
	if err != nil {
		return nil, err
	}
	out := &Run{}
	used := 0
	var last time.Time
	per := c.GPUsPerNode
	capacity := per * c.Nodes
	jobs := slices.Clone(c.Jobs)
	slices.SortStableFunc(jobs, func(a, b TraceJob) int { return a.Submit.Compare(b.Submit) })
	var results []JobResult
	dropped := 0
	var pending []*api.Job
	var run endHeap
	byID := map[uint64]*JobResult{}
	live := map[uint64]*api.Job{}
	next := 0
	cycles := 0
	for next < len(jobs) || run.Len() > 0 {
		var now time.Time
		switch {
		case run.Len() == 0:
			now = jobs[next].Submit
		case next >= len(jobs) || !jobs[next].Submit.Before(run[0].end):
			now = run[0].end
		default:
			now = jobs[next].Submit
		}
		if len(pending) > 0 && !last.IsZero() {
			out.FragGPUSeconds += float64(capacity-used) * now.Sub(last).Seconds()
		}
		last = now
		for run.Len() > 0 && !run[0].end.After(now) {
			r := heap.Pop(&run).(running)
			r.res.End = r.end
			used -= r.res.GPUs
			results = append(results, *r.res)
			delete(live, r.job.Id)
		}
		for ; next < len(jobs) && !jobs[next].Submit.After(now); next++ {
			tj := jobs[next]
			if tj.GPUs > capacity || tj.GPUs < 0 {
				dropped++
				continue
			}
			id := uint64(next + 1)
			spec := specFor(tj, per, limit)
			j := &api.Job{Id: id, Spec: spec, User: tj.User, State: api.JobState_PENDING,
				SubmitUnixMs: tj.Submit.UnixMilli()}
			pending = append(pending, j)
			byID[id] = &JobResult{ID: id, Cluster: c.Name, GPUs: tj.GPUs, Submit: tj.Submit,
				Duration: tj.Duration, Limit: time.Duration(spec.TimeLimitS) * time.Second}
		}
		if len(pending) == 0 {
			continue
		}
		view := &scheduler.View{Nodes: nodes, Jobs: make([]*api.Job, 0, len(pending)+len(live))}
		view.Jobs = append(view.Jobs, pending...)
		for _, r := range run {
			view.Jobs = append(view.Jobs, r.job)
		}
		plan := scheduler.Schedule(view, now, cfg)
		cycles++
		for _, pr := range plan.Pending {
			// The FSM would record these; the simulator keeps them so the
			// next cycle sees what the leader's would.
			if j := find(pending, pr.JobId); j != nil {
				j.Reason, j.ExpectedStartUnixMs = pr.Reason, pr.ExpectedStartUnixMs
			}
		}
		if len(plan.Placements) == 0 {
			continue
		}
		placed := map[uint64]*api.Allocation{}
		for _, p := range plan.Placements {
			placed[p.JobId] = p.Allocation
		}
		kept := pending[:0]
		for _, j := range pending {
			a, ok := placed[j.Id]
			if !ok {
				kept = append(kept, j)
				continue
			}
			a.Tasks = make([]*api.TaskStatus, len(a.Ranks))
			for i := range a.Tasks {
				a.Tasks[i] = &api.TaskStatus{State: api.TaskState_TASK_RUNNING}
			}
			j.State, j.Allocation, j.StartUnixMs = api.JobState_RUNNING, a, now.UnixMilli()
			res := byID[j.Id]
			res.Start = now
			used += res.GPUs
			heap.Push(&run, running{end: now.Add(res.Duration), job: j, res: res})
			live[j.Id] = j
		}
		clear(pending[len(kept):])
		pending = kept
	}
	slices.SortFunc(results, func(a, b JobResult) int { return int(a.ID) - int(b.ID) })
	out.Results, out.Dropped, out.Cycles = results, dropped, cycles
	return out, nil
}

func find(js []*api.Job, id uint64) *api.Job {
	i, ok := slices.BinarySearchFunc(js, id, func(j *api.Job, id uint64) int {
		switch {
		case j.Id < id:
			return -1
		case j.Id > id:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return js[i]
}

// specFor turns a trace job into a spec: one task per node, GPUs spread
// over the fewest nodes that hold them.
func specFor(tj TraceJob, per int, limit LimitModel) *api.JobSpec {
	s := &api.JobSpec{Script: "sim", TimeLimitS: int64(math.Ceil(limit(tj.Duration).Seconds())), Account: tj.User}
	if tj.GPUs == 0 {
		return s
	}
	n := (tj.GPUs + per - 1) / per
	s.NodesMin = uint32(n)
	s.Gpus = uint32(tj.GPUs)
	return s
}

// buildNodes makes the cluster's nodes, from a gpu profile or plain.
func buildNodes(c Cluster) ([]*api.Node, error) {
	var nodes []*api.Node
	for i := range c.Nodes {
		name := fmt.Sprintf("%s-n%04d", c.Name, i)
		var t *api.Topology
		if c.Profile != "" {
			gt, err := gpu.Profile(c.Profile, name)
			if err != nil {
				return nil, err
			}
			t = gt.API()
		} else {
			t = &api.Topology{}
			for g := range c.GPUsPerNode {
				t.Gpus = append(t.Gpus, &api.GPU{Index: uint32(g), Uuid: fmt.Sprintf("%s-g%d", name, g), Healthy: true})
			}
		}
		nodes = append(nodes, &api.Node{Name: name, Cpus: 1024, Topology: t, LeafSwitch: fmt.Sprintf("%s-leaf%02d", c.Name, i/32)})
	}
	return nodes, nil
}

// Summarize computes the figures of runs over clusters totalling gpus.
func Summarize(res []JobResult, gpus int, fragGPUSeconds float64) Stats {
	s := Stats{Jobs: len(res), TotalGPUs: gpus}
	if len(res) == 0 {
		return s
	}
	jct := make([]float64, len(res))
	var q float64
	s.first, s.last = res[0].Submit, res[0].End
	for i, r := range res {
		jct[i] = r.End.Sub(r.Submit).Seconds()
		q += r.Start.Sub(r.Submit).Seconds()
		s.GPUSeconds += float64(r.GPUs) * r.Duration.Seconds()
		if r.Submit.Before(s.first) {
			s.first = r.Submit
		}
		if r.End.After(s.last) {
			s.last = r.End
		}
	}
	slices.Sort(jct)
	var sum float64
	for _, v := range jct {
		sum += v
	}
	s.AvgJCT = sum / float64(len(jct))
	s.MedianJCT = jct[len(jct)/2]
	s.P99JCT = jct[min(len(jct)-1, int(math.Ceil(0.99*float64(len(jct))))-1)]
	s.AvgQueue = q / float64(len(res))
	s.Makespan = s.last.Sub(s.first).Seconds()
	if s.Makespan > 0 && gpus > 0 {
		s.GPUUtil = s.GPUSeconds / (float64(gpus) * s.Makespan)
		s.FragGPUs = fragGPUSeconds / s.Makespan
	}
	return s
}
