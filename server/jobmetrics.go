package server

import (
	"strings"
	"sync"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/scheduler"
	"github.com/loomhpc/loom/state"
	"github.com/prometheus/client_golang/prometheus"
)

// jobEvents derives the job metrics (wait and run times, outcomes, GPU-
// and CPU-seconds) from successive states rather than from hooks in the
// FSM: it compares the jobs that were active in the last state it saw
// with the current one. Every server applies the same log, so every
// server counts the same events from the moment it starts; a server that
// starts later simply has counters that began later, which increase()
// and rate() treat as a reset. Dashboards therefore take max by the
// counter's labels over servers, never the sum (docs/monitoring.md).
type jobEvents struct {
	mu sync.Mutex
	// caughtUp reports whether the server has applied the log it had when
	// it started; nil: from the first state. Entries replayed after a
	// restart are history, not events, so the baseline waits for them.
	caughtUp func() bool
	// last is the state the counters describe; nil before the baseline.
	last *state.View
	// base is, for jobs already active when the server started, the
	// GPU- and CPU-milliseconds they had held by then: the counters count
	// only what was held since, so that a restarted server's counters
	// restart from zero instead of jumping by the history.
	base map[uint64]held
	// ended is what jobs no longer active held since the server started.
	ended map[userAccount]held
	// used is the busy (utilization-weighted) GPU-milliseconds jobs
	// reported since the server started; usedSeen each job's figure when
	// last seen, while the job is in the active set.
	used     map[userAccount]float64
	usedSeen map[uint64]uint64

	wait     *prometheus.HistogramVec
	run      *prometheus.HistogramVec
	outcomes *prometheus.CounterVec
	gpuSecs  *prometheus.Desc
	cpuSecs  *prometheus.Desc
	usedSecs *prometheus.Desc
}

// userAccount keys the usage counters.
type userAccount struct{ user, account string }

// held is resource-milliseconds held.
type held struct{ gpuMs, cpuMs float64 }

// The size classes of the wait and run histograms, by GPUs requested.
func sizeClass(gpus uint32) string {
	switch {
	case gpus == 0:
		return "0"
	case gpus == 1:
		return "1"
	case gpus <= 8:
		return "2-8"
	case gpus <= 32:
		return "9-32"
	}
	return ">32"
}

// jobLabels are the partition, size class and QoS of j.
func jobLabels(j *api.Job) []string {
	qos := j.GetSpec().GetQos()
	if qos == "" {
		qos = "normal"
	}
	return []string{j.GetSpec().PartitionOf(), sizeClass(scheduler.JobGPUs(j.GetSpec())), qos}
}

// heldBy is what j's allocations have held by nowMs over every
// generation: the earlier ones' attained service and the current one's
// run. Attained service counts a CPU-only job as one GPU (for the las
// policy); these counters count its GPUs as none.
func heldBy(j *api.Job, nowMs int64) held {
	a := j.GetAllocation()
	gpus, cpus := 0, 0
	for _, r := range a.GetRanks() {
		gpus += len(r.GpuUuids)
		cpus += int(r.GetCpus())
	}
	ran := ranMs(j, nowMs) + float64(j.GetAttainedGpuMs())/float64(a.ServiceGPUs())
	return held{gpuMs: float64(gpus) * ran, cpuMs: float64(cpus) * ran}
}

// ranMs is how long j's current allocation has run by nowMs, or ran when
// it has ended.
func ranMs(j *api.Job, nowMs int64) float64 {
	start := j.GetStartUnixMs()
	if start == 0 {
		return 0
	}
	end := nowMs
	if !j.GetState().Active() {
		if j.GetEndUnixMs() == 0 || !j.GetState().Terminal() {
			return 0
		}
		end = j.GetEndUnixMs()
	}
	return float64(max(end-start, 0))
}

func newJobEvents() *jobEvents {
	labels := []string{"partition", "size", "qos"}
	// 1 s to about 9 days, doubling: waits and runs of minutes to days.
	buckets := prometheus.ExponentialBuckets(1, 2, 20)
	return &jobEvents{
		base:  map[uint64]held{},
		ended: map[userAccount]held{},
		used:  map[userAccount]float64{},

		usedSeen: map[uint64]uint64{},
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "loom_job_wait_seconds", Help: "From submit (or --begin) to a job's first start, by partition, size class (GPUs: 0, 1, 2-8, 9-32, >32) and QoS.",
			Buckets: buckets,
		}, labels),
		run: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "loom_job_run_seconds", Help: "How long a finished job's last allocation ran, by partition, size class and QoS.",
			Buckets: buckets,
		}, labels),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loom_jobs_ended_total",
			Help: "Jobs that ended, by final state (COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, CANCELLED, PREEMPTED), and allocations a preemption (PREEMPTED) or a requeue (REQUEUED) ended, by partition.",
		}, []string{"state", "partition"}),
		gpuSecs:  prometheus.NewDesc("loom_job_gpu_seconds_total", "GPU-seconds allocated to jobs since this server started, by user and account: increase() over a window, divided by 3600, is GPU-hours.", []string{"user", "account"}, nil),
		usedSecs: prometheus.NewDesc("loom_job_used_gpu_seconds_total", "GPU-seconds jobs kept busy since this server started (the allocated GPU-seconds weighted by the GPUs' utilization, as the agents sampled it), by user and account; loom_job_gpu_seconds_total minus this is idle allocated time.", []string{"user", "account"}, nil),
		cpuSecs:  prometheus.NewDesc("loom_job_cpu_seconds_total", "CPU-seconds allocated to jobs since this server started, by user and account.", []string{"user", "account"}, nil),
	}
}

func accountOf(j *api.Job) userAccount {
	return userAccount{j.GetUser(), scheduler.AccountOf(j)}
}

// advance brings the counters from the last state seen to v. The first
// state only sets the baseline. Callers hold e.mu.
func (e *jobEvents) advance(v *state.View, now time.Time) {
	nowMs := now.UnixMilli()
	if e.last == nil {
		if e.caughtUp != nil && !e.caughtUp() {
			return
		}
		for j := range v.ActiveJobs() {
			e.base[j.GetId()] = heldBy(j, nowMs)
			e.usedSeen[j.GetId()] = j.GetUsedGpuMs()
		}
		e.last = v
		return
	}
	old := e.last
	if old.Index() == v.Index() {
		return
	}
	// Jobs that ended (or were cancelled while pending) since: what they
	// held is final. A job that has ended stays in the active set while
	// its ranks stop, so an end is a change to a terminal state. Jobs
	// submitted since (ids are handed out in order) may have ended too.
	for o := range old.ActiveJobs() {
		if o.GetState().Terminal() {
			continue
		}
		j := v.Job(o.GetId())
		if j == nil {
			j = o // gone from the state already: count it as last seen
		}
		if j.GetState().Terminal() {
			e.endJob(o, j, nowMs)
		}
	}
	for id := old.NextJobID(); id < v.NextJobID(); id++ {
		if j := v.Job(id); j != nil && j.GetState().Terminal() {
			e.endJob(&api.Job{}, j, nowMs)
		}
	}
	// Jobs still (or newly) waiting or running: starts, and allocations
	// that a preemption or a requeue ended.
	for j := range v.ActiveJobs() {
		if j.GetState().Terminal() {
			continue
		}
		o := old.Job(j.GetId())
		if o == nil {
			e.observeStart(&api.Job{}, j)
			continue
		}
		e.observeStart(o, j)
		part := j.GetSpec().PartitionOf()
		if n := int(j.GetPreemptCount()) - int(o.GetPreemptCount()); n > 0 {
			e.outcomes.WithLabelValues(api.JobState_PREEMPTED.String(), part).Add(float64(n))
		}
		if n := int(j.GetRestartCount()) - int(o.GetRestartCount()); n > 0 {
			e.outcomes.WithLabelValues(api.JobState_REQUEUED.String(), part).Add(float64(n))
		}
	}
	e.countUsed(old, v)
	e.last = v
}

// countUsed adds the busy GPU time jobs reported between old and v. A
// job's figure grows with its ranks' reports, some of which come after the
// job has ended (the ranks a failure stopped), so each job is followed
// while it is in the active set and read a last time when it leaves it.
func (e *jobEvents) countUsed(old, v *state.View) {
	add := func(j *api.Job, seen uint64) {
		if u := j.GetUsedGpuMs(); u > seen {
			e.used[accountOf(j)] += float64(u - seen)
		}
	}
	live := map[uint64]bool{}
	for j := range v.ActiveJobs() {
		id := j.GetId()
		live[id] = true
		seen, ok := e.usedSeen[id]
		if ok || id >= old.NextJobID() {
			add(j, seen) // a job submitted since starts from nothing
		}
		e.usedSeen[id] = max(seen, j.GetUsedGpuMs())
	}
	for id, seen := range e.usedSeen {
		if live[id] {
			continue
		}
		if j := v.Job(id); j != nil {
			add(j, seen)
		}
		delete(e.usedSeen, id)
	}
	// Jobs submitted and gone from the active set since: their whole run.
	for id := old.NextJobID(); id < v.NextJobID(); id++ {
		if j := v.Job(id); j != nil && !live[id] {
			add(j, 0)
		}
	}
}

// endJob records the end of one job, o as last seen and j now.
func (e *jobEvents) endJob(o, j *api.Job, nowMs int64) {
	e.observeStart(o, j)
	h := heldBy(j, nowMs)
	b := e.base[j.GetId()]
	delete(e.base, j.GetId())
	ua := accountOf(j)
	t := e.ended[ua]
	t.gpuMs += max(h.gpuMs-b.gpuMs, 0)
	t.cpuMs += max(h.cpuMs-b.cpuMs, 0)
	e.ended[ua] = t
	e.outcomes.WithLabelValues(j.GetState().String(), j.GetSpec().PartitionOf()).Inc()
	if ran := ranMs(j, nowMs); ran > 0 {
		e.run.WithLabelValues(jobLabels(j)...).Observe(ran / 1000)
	}
}

// observeStart records j's wait when it first started between o and j.
// Starts after a requeue or preemption are not waits from submit and are
// left out.
func (e *jobEvents) observeStart(o, j *api.Job) {
	if j.GetStartUnixMs() == 0 || o.GetStartUnixMs() != 0 || j.GetRestartCount() != 0 || j.GetPreemptCount() != 0 {
		return
	}
	from := max(j.GetSubmitUnixMs(), j.GetSpec().GetBeginUnixMs())
	e.wait.WithLabelValues(jobLabels(j)...).Observe(float64(max(j.GetStartUnixMs()-from, 0)) / 1000)
}

// collect advances to v and sends the counters and histograms.
func (e *jobEvents) collect(v *state.View, now time.Time, ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advance(v, now)
	if e.last == nil {
		return // still replaying the log: nothing is counted yet
	}
	totals := map[userAccount]held{}
	for ua, h := range e.ended {
		totals[ua] = h
	}
	nowMs := now.UnixMilli()
	for j := range v.ActiveJobs() {
		if j.GetState().Terminal() || (j.GetStartUnixMs() == 0 && j.GetAttainedGpuMs() == 0) {
			continue // ended: counted in e.ended; or never ran
		}
		h, b := heldBy(j, nowMs), e.base[j.GetId()]
		ua := accountOf(j)
		t := totals[ua]
		t.gpuMs += max(h.gpuMs-b.gpuMs, 0)
		t.cpuMs += max(h.cpuMs-b.cpuMs, 0)
		totals[ua] = t
	}
	for ua, ms := range e.used {
		ch <- prometheus.MustNewConstMetric(e.usedSecs, prometheus.CounterValue, ms/1000, ua.user, ua.account)
	}
	for ua, h := range totals {
		ch <- prometheus.MustNewConstMetric(e.gpuSecs, prometheus.CounterValue, h.gpuMs/1000, ua.user, ua.account)
		ch <- prometheus.MustNewConstMetric(e.cpuSecs, prometheus.CounterValue, h.cpuMs/1000, ua.user, ua.account)
	}
	e.wait.Collect(ch)
	e.run.Collect(ch)
	e.outcomes.Collect(ch)
}

// follow advances the counters on every change of the state, at most
// once per interval, until stop is closed, so that a job that starts and
// ends between two scrapes is still counted. It also looks every
// interval without a change, until the baseline is taken: catching up
// may end with entries that change no state.
func (e *jobEvents) follow(store *state.Store, interval time.Duration, stop <-chan struct{}) {
	for {
		v, changed := store.Changed()
		e.mu.Lock()
		e.advance(v, time.Now())
		waiting := e.last == nil
		e.mu.Unlock()
		var tick <-chan time.Time
		if waiting {
			tick = time.After(interval)
		}
		select {
		case <-stop:
			return
		case <-changed:
		case <-tick:
			continue
		}
		select {
		case <-stop:
			return
		case <-time.After(interval):
		}
	}
}

func (e *jobEvents) describe(ch chan<- *prometheus.Desc) {
	ch <- e.gpuSecs
	ch <- e.usedSecs
	ch <- e.cpuSecs
	e.wait.Describe(ch)
	e.run.Describe(ch)
	e.outcomes.Describe(ch)
}

// pendingByReason counts pending jobs by reason and partition.
func pendingByReason(v *state.View) map[[2]string]int {
	out := map[[2]string]int{}
	for j := range v.ActiveJobs() {
		if j.GetState() == api.JobState_PENDING {
			// A reason is a fixed word, sometimes with details after a
			// comma or colon that would make a label per job.
			r, _, _ := strings.Cut(j.GetReason(), ",")
			r, _, _ = strings.Cut(r, ":")
			if r = strings.TrimSpace(r); r == "" {
				r = "None"
			}
			out[[2]string{r, j.GetSpec().PartitionOf()}]++
		}
	}
	return out
}
