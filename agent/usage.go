package agent

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/gpu"
	"google.golang.org/protobuf/proto"
)

// gpuUsage integrates the GPU time each rank uses from the GPU samples
// (DCGM_FI_DEV_GPU_UTIL): at every sample, a rank gains, for each GPU it
// holds, the GPU's utilization/100 × the time since the rank's previous
// sample. NVML's utilization is the share of the last sample period the
// GPU was busy, so the reading at the end of an interval weighs the
// interval. The agent samples when a rank starts (which starts its
// clock), every interval while it runs, and when it ends, so the count
// covers the rank's whole life.
//
// Where each rank's count stands (its figure and the time of its last
// sample) is written to the agent's state store at every sample. A
// restarted agent takes those marks up for the ranks it re-attaches to:
// the count goes on from the figure the servers last heard (or a later
// one), and the first sample after the restart weighs the whole time
// since the mark, so nothing is counted twice and no time is left out.
type gpuUsage struct {
	mu   sync.Mutex
	prev map[taskKey]time.Time // when the rank was last sampled
	used map[taskKey]float64   // GPU-milliseconds used so far

	// kept holds the marks of ranks not held now: those an earlier run
	// of the agent left, until their ranks are seen held again, and the
	// final ones of ranks that ended, until their end is surely reported.
	// A kept mark is stored with the others; it is dropped restoredTTL
	// (in sample time) after the first sample that did not take it up.
	kept    map[taskKey]keptMark
	written map[taskKey]usageMark // what the store holds
}

// keptMark is a mark of a rank not held now, and the first sample that
// did not take it up (zero until there was one).
type keptMark struct {
	usageMark
	since time.Time
}

// usageMark is where a rank's count stood at a sample, as the state
// store keeps it.
type usageMark struct {
	UsedMs   float64 `json:"used_ms"`
	AtUnixMs int64   `json:"at_unix_ms"`
}

// restoredTTL bounds how long, in sample time, a kept mark waits for its
// rank to be held again: a recovered rank is at once, an allocation slot
// when the first allocation update arrives, and an ended rank whose end
// report failed when the agent restarts.
const restoredTTL = 5 * time.Minute

func newGPUUsage() *gpuUsage {
	return &gpuUsage{prev: map[taskKey]time.Time{}, used: map[taskKey]float64{}, kept: map[taskKey]keptMark{}}
}

// restore loads the marks an earlier run of the agent stored.
func (u *gpuUsage) restore(marks map[taskKey]usageMark) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, m := range marks {
		u.kept[k] = keptMark{usageMark: m}
	}
	u.written = maps.Clone(marks)
}

// observe credits samples to the ranks that hold the GPUs: held maps each
// rank to the UUIDs of its GPUs. A rank no longer held is forgotten: its
// end report took its figure while it was still held. Called with u.mu
// held.
func (u *gpuUsage) observe(samples []gpu.Sample, held map[taskKey][]string) {
	byUUID := make(map[string]gpu.Sample, len(samples))
	var now time.Time
	for _, s := range samples {
		byUUID[s.UUID] = s
		if s.Time.After(now) {
			now = s.Time
		}
	}
	if now.IsZero() {
		return
	}
	for k, uuids := range held {
		prev, seen := u.prev[k]
		if m, ok := u.kept[k]; ok && !seen {
			prev, seen = time.UnixMilli(m.AtUnixMs), true
			u.used[k] = m.UsedMs
			delete(u.kept, k)
		}
		u.prev[k] = now
		if !seen || !now.After(prev) {
			continue
		}
		dt := float64(now.Sub(prev).Milliseconds())
		for _, id := range uuids {
			if s, ok := byUUID[id]; ok {
				u.used[k] += s.UtilizationPct / 100 * dt
			}
		}
	}
	for k := range u.prev {
		if _, ok := held[k]; !ok {
			delete(u.prev, k)
			delete(u.used, k)
		}
	}
	u.expire(now)
}

// expire drops the kept marks restoredTTL after the first sample that
// did not take them up. Called with u.mu held.
func (u *gpuUsage) expire(now time.Time) {
	for k, m := range u.kept {
		switch {
		case m.since.IsZero():
			m.since = now
			u.kept[k] = m
		case now.Sub(m.since) > restoredTTL:
			delete(u.kept, k)
		}
	}
}

// marks returns where every rank's count stands, kept marks included.
// Called with u.mu held.
func (u *gpuUsage) marks() map[taskKey]usageMark {
	out := make(map[taskKey]usageMark, len(u.prev)+len(u.kept))
	for k, m := range u.kept {
		out[k] = m.usageMark
	}
	for k, at := range u.prev {
		out[k] = usageMark{UsedMs: u.used[k], AtUnixMs: at.UnixMilli()}
	}
	return out
}

// persist writes the marks to st when they changed since the last write.
// A failed write is logged: a restart then counts from an older mark,
// which errs low. Called with u.mu held.
func (u *gpuUsage) persist(st stateStore, log *slog.Logger) {
	m := u.marks()
	if maps.Equal(m, u.written) || len(m) == 0 && len(u.written) == 0 {
		return
	}
	if err := st.putUsage(m); err != nil {
		log.Warn("storing the GPU usage counts failed; a restarted agent would count from older ones", "err", err)
		return
	}
	u.written = m
}

// take returns rank k's figure and ends its count. Its last mark is kept
// (and stored) a while: an agent that stops before the end report is
// taken re-attaches to the ended rank and reports it from there.
func (u *gpuUsage) take(k taskKey) uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	v := u.used[k]
	if at, ok := u.prev[k]; ok {
		u.kept[k] = keptMark{usageMark: usageMark{UsedMs: v, AtUnixMs: at.UnixMilli()}}
	}
	delete(u.used, k)
	delete(u.prev, k)
	return uint64(v)
}

// heldGPUs maps each rank and allocation slot this agent runs to its
// GPUs, from the moment it is reported running. A job step's tasks are
// left out: they run on their slot's GPUs, which the slot already counts.
func (a *Agent) heldGPUs() map[taskKey][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	held := map[taskKey][]string{}
	for k, t := range a.tasks {
		if k.step == 0 && t.running != nil && len(t.rank.GetGpuUuids()) > 0 {
			held[k] = t.rank.GpuUuids
		}
	}
	return held
}

// sampleUsage takes one GPU sample, credits it to the ranks running now
// and stores where their counts stand. The sampler is read outside a.mu:
// the simulated one asks the agent which GPUs are held.
func (a *Agent) sampleUsage(ctx context.Context) {
	a.usage.mu.Lock()
	defer a.usage.mu.Unlock()
	held := a.heldGPUs()
	if len(held) == 0 {
		clear(a.usage.prev)
		clear(a.usage.used)
		a.usage.expire(time.Now())
	} else {
		samples, err := a.sampler.Sample(ctx)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("GPU sample for usage accounting failed", "err", err)
			}
			return
		}
		a.usage.observe(samples, held)
	}
	a.usage.persist(a.state, a.log)
}

// startUsage samples as soon as rank t is reported running, when it
// holds GPUs, so that its count starts with it and not at the next tick.
func (a *Agent) startUsage(t *task) {
	if t.key.step == 0 && len(t.rank.GetGpuUuids()) > 0 {
		a.sampleUsage(a.ctx)
	}
}

// usedGPUMs samples once more and returns what rank t used, for its end
// report. The rank is no longer held: later samples do not count it, and
// no usage report repeats its running report.
func (a *Agent) usedGPUMs(t *task) uint64 {
	if t.key.step != 0 {
		return 0
	}
	a.sampleUsage(a.ctx)
	a.setRunning(t, nil)
	return a.usage.take(t.key)
}

// peek returns rank k's figure so far.
func (u *gpuUsage) peek(k taskKey) uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return uint64(u.used[k])
}

// setRunning records t's running report, for the usage reports.
func (a *Agent) setRunning(t *task, ts *api.TaskStatus) {
	a.mu.Lock()
	t.running = ts
	a.mu.Unlock()
}

// trackUsage samples the GPUs every interval and reports what running
// ranks have used every reportEvery, until ctx ends.
func (a *Agent) trackUsage(ctx context.Context, interval, reportEvery time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			a.sampleUsage(ctx)
			if now.Sub(last) >= reportEvery {
				last = now
				a.reportUsage(ctx)
			}
		}
	}
}

// reportUsage sends, per allocation, its running ranks' GPU time so far:
// their running reports again, with the figure. The servers take only
// growth, and ignore a running report after an end, so a report that
// races with a rank's end changes nothing. A failed report is not
// retried: the next one carries a larger figure.
func (a *Agent) reportUsage(ctx context.Context) {
	type alloc struct{ job, gen uint64 }
	// The running reports are read under a.mu and the figures after it:
	// sampleUsage takes the meter's lock first and a.mu inside it.
	running := map[taskKey]*api.TaskStatus{}
	a.mu.Lock()
	for k, t := range a.tasks {
		if k.step == 0 && t.running != nil {
			running[k] = t.running
		}
	}
	a.mu.Unlock()
	reqs := map[alloc]*api.TaskUpdateRequest{}
	for k, r := range running {
		used := a.usage.peek(k)
		if used == 0 {
			continue
		}
		ts := proto.Clone(r).(*api.TaskStatus)
		ts.UsedGpuMs = used
		key := alloc{k.job, k.gen}
		if reqs[key] == nil {
			reqs[key] = &api.TaskUpdateRequest{Node: a.cfg.Name, JobId: k.job, Generation: k.gen}
		}
		reqs[key].Tasks = append(reqs[key].Tasks, ts)
	}
	for _, req := range reqs {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := a.client.UpdateTasks(rctx, req)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.log.Debug("GPU usage report failed; the next one carries it", "job_id", req.JobId, "err", err)
		}
	}
}
