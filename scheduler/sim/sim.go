// Package sim replays a job trace through the same scheduler.Schedule the
// leader runs, with a virtual clock, and reports job completion times,
// queueing delay, utilization and fragmentation; `loom sim`
// (internal/simcmd) is its command.
// It is event-driven: Schedule runs only when a job arrives or ends.
package sim

import (
	"cmp"
	"container/heap"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
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
	// Held is how long the job held GPUs, over all its runs (with the
	// grace of each preemption); End − Submit − Held is its queueing.
	Held        time.Duration
	Preemptions int
}

// Queue is how long the job waited in the queue, over all its runs.
func (r JobResult) Queue() time.Duration { return r.End.Sub(r.Submit) - r.Held }

// Stats are a run's figures.
type Stats struct {
	Jobs       int
	Dropped    int // asked for more GPUs than their cluster has
	AvgJCT     float64
	MedianJCT  float64
	P99JCT     float64
	AvgQueue   float64 // time waiting, over all of a job's runs
	Makespan   float64
	GPUUtil    float64 // GPU-seconds used / (GPUs × makespan)
	FragGPUs   float64 // free GPUs while some job waits, averaged over the makespan
	GPUSeconds float64
	TotalGPUs  int
	// Preemptions is their total, PreemptionsPerJob the mean and
	// MaxPreemptions the most any one job had.
	Preemptions       int
	PreemptionsPerJob float64
	MaxPreemptions    int
	// Classes splits queueing by job size (SizeClasses), in that order.
	Classes     []ClassStats
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
	case "las":
		// Discretised 2D least-attained-service with preemption of
		// requeueable jobs, reservations and backfill; nothing about
		// durations (not even time limits) orders the queue.
		return scheduler.Config{Order: scheduler.OrderLeastAttained}, nil
	case "las-limit":
		// las whose queues are served by users' time limits, shortest
		// first: the limits multifactor uses, not the durations.
		return scheduler.Config{Order: scheduler.OrderLeastAttained, LAS: scheduler.LASConfig{
			Thresholds: []float64{3600, 16 * 3600}, WithinQueue: scheduler.QueueShortestLimit}}, nil
	case "gittins":
		// Gittins index over the sizes of the jobs that finished before
		// now (per account and GPU count), with preemption as las has:
		// neither time limits nor true durations order the queue.
		return scheduler.Config{Order: scheduler.OrderGittins}, nil
	}
	return scheduler.Config{}, fmt.Errorf("--policy=%s: want %s", name, strings.Join(Policies, ", "))
}

// Policies are the names PolicyConfig knows, in the order `loom sim
// --policy all` runs them.
var Policies = []string{"fifo", "sjf", "loom", "las", "las-limit", "gittins"}

// Options are what a replay needs besides the cluster.
type Options struct {
	// Scheduler is the policy (see PolicyConfig).
	Scheduler scheduler.Config
	// Limit turns each job's true duration into its time limit.
	Limit LimitModel
	// RestartCost is the progress a preempted job loses each time: the
	// work since its last checkpoint and the time it takes to resume.
	RestartCost time.Duration
	// Grace is how long a preempted job keeps its GPUs after the
	// preemption (its --signal lead and the kill grace), making no
	// progress.
	Grace time.Duration
	// History, when not nil, makes a fresh scheduler.ServiceHistory
	// for each cluster replayed (with History's Window and MinSamples),
	// which learns each job's service as the replay finishes it and is
	// the View's History, as the leader's is fed from finished jobs.
	// Policies that use no history leave it nil.
	History *scheduler.ServiceHistory
	// SampleEvery is the spacing of the Timeline's samples, on multiples
	// of it since the epoch; 0 means an hour.
	SampleEvery time.Duration
}

// Default preemption costs.
const (
	DefaultRestartCost = 60 * time.Second
	DefaultGrace       = 60 * time.Second // Slurm's default --signal lead
)

// Sample is the cluster at one moment of a Timeline.
type Sample struct {
	At       time.Time
	Queued   int // jobs waiting
	UsedGPUs int // GPUs held by jobs (running, or stopping after a preemption)
}

// simJob is one trace job during a replay.
type simJob struct {
	job       *api.Job
	res       *JobResult
	remaining time.Duration // work left
	gen       int           // bumped by a preemption: older end events are void
	runStart  time.Time
}

type eventKind int

const (
	evEnd     eventKind = iota // the job completes
	evRelease                  // a preempted job's ranks are gone
)

type event struct {
	at   time.Time
	kind eventKind
	sj   *simJob
	gen  int
}

type eventHeap []event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	if h[i].kind != h[j].kind {
		return h[i].kind < h[j].kind
	}
	return h[i].sj.job.Id < h[j].sj.job.Id
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
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
	// Timeline samples the queue and the GPUs in use every SampleEvery.
	Timeline []Sample
}

// Simulate replays c's jobs through Schedule and returns each job's
// result. Jobs larger than the cluster are dropped and counted. A job the
// plan preempts is requeued with the service it attained (as the FSM
// does), keeps its GPUs for o.Grace, and resumes later with its remaining
// work plus o.RestartCost.
func Simulate(c Cluster, o Options) (*Run, error) {
	nodes, err := buildNodes(c)
	if err != nil {
		return nil, err
	}
	if o.Limit == nil {
		o.Limit, _ = ParseLimitModel("exact")
	}
	every := o.SampleEvery
	if every <= 0 {
		every = time.Hour
	}
	out := &Run{}
	used := 0
	var last, nextSample time.Time
	per := c.GPUsPerNode
	capacity := per * c.Nodes
	jobs := slices.Clone(c.Jobs)
	slices.SortStableFunc(jobs, func(a, b TraceJob) int { return a.Submit.Compare(b.Submit) })
	var results []JobResult
	dropped := 0
	var pending []*api.Job // by id
	var events eventHeap
	byID := map[uint64]*simJob{}
	var history *scheduler.ServiceHistory
	if o.History != nil {
		history = &scheduler.ServiceHistory{Window: o.History.Window, MinSamples: o.History.MinSamples, SiblingWindow: o.History.SiblingWindow, HeavyTail: o.History.HeavyTail}
	}
	live := map[uint64]*simJob{} // holding GPUs
	next := 0
	cycles := 0
	for next < len(jobs) || events.Len() > 0 {
		var now time.Time
		switch {
		case events.Len() == 0:
			now = jobs[next].Submit
		case next >= len(jobs) || !jobs[next].Submit.Before(events[0].at):
			now = events[0].at
		default:
			now = jobs[next].Submit
		}
		if len(pending) > 0 && !last.IsZero() {
			out.FragGPUSeconds += float64(capacity-used) * now.Sub(last).Seconds()
		}
		if nextSample.IsZero() {
			nextSample = now.Truncate(every).Add(every)
		}
		for ; !nextSample.After(now); nextSample = nextSample.Add(every) {
			out.Timeline = append(out.Timeline, Sample{At: nextSample, Queued: len(pending), UsedGPUs: used})
		}
		last = now
		for events.Len() > 0 && !events[0].at.After(now) {
			ev := heap.Pop(&events).(event)
			sj := ev.sj
			if ev.gen != sj.gen {
				continue // the run it ended was preempted
			}
			switch ev.kind {
			case evEnd:
				sj.res.End = ev.at
				sj.res.Held += ev.at.Sub(sj.runStart)
				used -= sj.res.GPUs
				results = append(results, *sj.res)
				delete(live, sj.job.Id)
				if history != nil {
					j := sj.job
					history.Add(scheduler.FinishedJob{ID: j.Id, Account: scheduler.AccountOf(j), GPUs: scheduler.HistoryGPUs(j.Spec),
						SubmitMs: j.SubmitUnixMs, GPUSeconds: j.AttainedGPUSeconds(ev.at)})
				}
			case evRelease:
				for _, t := range sj.job.Allocation.Tasks {
					t.State = api.TaskState_TASK_EXITED
				}
				sj.res.Held += ev.at.Sub(sj.runStart)
				used -= sj.res.GPUs
				delete(live, sj.job.Id)
			}
		}
		for ; next < len(jobs) && !jobs[next].Submit.After(now); next++ {
			tj := jobs[next]
			if tj.GPUs > capacity || tj.GPUs < 0 {
				dropped++
				continue
			}
			id := uint64(next + 1)
			spec := specFor(tj, per, o.Limit)
			j := &api.Job{Id: id, Spec: spec, User: tj.User, State: api.JobState_PENDING,
				SubmitUnixMs: tj.Submit.UnixMilli()}
			pending = append(pending, j)
			byID[id] = &simJob{job: j, remaining: tj.Duration, res: &JobResult{ID: id, Cluster: c.Name, GPUs: tj.GPUs,
				Submit: tj.Submit, Duration: tj.Duration, Limit: time.Duration(spec.TimeLimitS) * time.Second}}
		}
		if len(pending) == 0 {
			continue
		}
		view := &scheduler.View{Nodes: nodes, Jobs: make([]*api.Job, 0, len(pending)+len(live)), History: history}
		view.Jobs = append(view.Jobs, pending...)
		for _, id := range slices.Sorted(maps.Keys(live)) {
			// In id order: the same replay gives the same plans.
			if j := live[id].job; j.State.Active() {
				view.Jobs = append(view.Jobs, j)
			}
		}
		plan := scheduler.Schedule(view, now, o.Scheduler)
		cycles++
		for _, pr := range plan.Pending {
			// The FSM would record these; the simulator keeps them so the
			// next cycle sees what the leader's would.
			if j := find(pending, pr.JobId); j != nil {
				j.Reason, j.ExpectedStartUnixMs = pr.Reason, pr.ExpectedStartUnixMs
			}
		}
		for _, p := range plan.Preemptions {
			sj := byID[p.JobId]
			if sj == nil || !sj.job.State.Active() {
				continue
			}
			// As the FSM's preemptJob: back to the queue with the service
			// it attained; its ranks hold the GPUs for the grace.
			j := sj.job
			j.AttainedGpuMs += j.RunGPUMs(now.UnixMilli())
			j.PreemptCount++
			j.State, j.Reason, j.StartUnixMs, j.ExpectedStartUnixMs = api.JobState_PENDING, "Preempted", 0, 0
			sj.remaining -= max(now.Sub(sj.runStart)-o.RestartCost, 0)
			sj.remaining = max(sj.remaining, time.Second)
			sj.res.Preemptions++
			sj.gen++
			heap.Push(&events, event{at: now.Add(o.Grace), kind: evRelease, sj: sj, gen: sj.gen})
			i, _ := slices.BinarySearchFunc(pending, j.Id, func(x *api.Job, id uint64) int { return cmp.Compare(x.Id, id) })
			pending = slices.Insert(pending, i, j)
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
			j.State, j.Allocation, j.StartUnixMs, j.Reason = api.JobState_RUNNING, a, now.UnixMilli(), ""
			sj := byID[j.Id]
			if sj.res.Start.IsZero() {
				sj.res.Start = now
			}
			sj.runStart = now
			used += sj.res.GPUs
			heap.Push(&events, event{at: now.Add(sj.remaining), kind: evEnd, sj: sj, gen: sj.gen})
			live[j.Id] = sj
		}
		clear(pending[len(kept):])
		pending = kept
	}
	slices.SortFunc(results, func(a, b JobResult) int { return cmp.Compare(a.ID, b.ID) })
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
	account := tj.Account
	if account == "" {
		account = tj.User
	}
	s := &api.JobSpec{Script: "sim", TimeLimitS: int64(math.Ceil(limit(tj.Duration).Seconds())), Account: account, Name: tj.Name}
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

// SizeClasses are the job-size classes the queueing figures are split by:
// up to 1 GPU, 2–8, 9–32 and more than 32.
var SizeClasses = []SizeClass{{"1", 0, 1}, {"2-8", 2, 8}, {"9-32", 9, 32}, {">32", 33, math.MaxInt}}

// SizeClass is a range of job sizes in GPUs.
type SizeClass struct {
	Name     string
	Min, Max int
}

// ClassOf returns the name of the size class of a job with gpus GPUs.
func ClassOf(gpus int) string {
	for _, c := range SizeClasses {
		if gpus <= c.Max {
			return c.Name
		}
	}
	return SizeClasses[len(SizeClasses)-1].Name
}

// ClassStats are the figures of one size class.
type ClassStats struct {
	Class      string
	Jobs       int
	P50Queue   float64
	P99Queue   float64
	AvgJCT     float64
	AvgPreempt float64 // preemptions per job
}

// percentile returns the q-quantile of sorted xs (nearest rank).
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, max(0, int(math.Ceil(q*float64(len(sorted))))-1))]
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
	type acc struct {
		queues       []float64
		jct, preempt float64
	}
	classes := map[string]*acc{}
	for i, r := range res {
		jct[i] = r.End.Sub(r.Submit).Seconds()
		wait := r.Queue().Seconds()
		q += wait
		s.GPUSeconds += float64(r.GPUs) * r.Duration.Seconds()
		s.Preemptions += r.Preemptions
		s.MaxPreemptions = max(s.MaxPreemptions, r.Preemptions)
		if r.Submit.Before(s.first) {
			s.first = r.Submit
		}
		if r.End.After(s.last) {
			s.last = r.End
		}
		a := classes[ClassOf(r.GPUs)]
		if a == nil {
			a = &acc{}
			classes[ClassOf(r.GPUs)] = a
		}
		a.queues = append(a.queues, wait)
		a.jct += jct[i]
		a.preempt += float64(r.Preemptions)
	}
	slices.Sort(jct)
	var sum float64
	for _, v := range jct {
		sum += v
	}
	s.AvgJCT = sum / float64(len(jct))
	s.MedianJCT = jct[len(jct)/2]
	s.P99JCT = percentile(jct, 0.99)
	s.AvgQueue = q / float64(len(res))
	s.PreemptionsPerJob = float64(s.Preemptions) / float64(len(res))
	for _, c := range SizeClasses {
		a := classes[c.Name]
		cs := ClassStats{Class: c.Name}
		if a != nil {
			slices.Sort(a.queues)
			n := float64(len(a.queues))
			cs.Jobs, cs.P50Queue, cs.P99Queue = len(a.queues), percentile(a.queues, 0.5), percentile(a.queues, 0.99)
			cs.AvgJCT, cs.AvgPreempt = a.jct/n, a.preempt/n
		}
		s.Classes = append(s.Classes, cs)
	}
	s.Makespan = s.last.Sub(s.first).Seconds()
	if s.Makespan > 0 && gpus > 0 {
		s.GPUUtil = s.GPUSeconds / (float64(gpus) * s.Makespan)
		s.FragGPUs = fragGPUSeconds / s.Makespan
	}
	return s
}
