package agent

import (
	"context"
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
// interval. A rank's first sample only starts its clock: it gains nothing
// for the time before it, so the figure errs low, never high.
type gpuUsage struct {
	mu   sync.Mutex
	prev map[taskKey]time.Time // when the rank was last sampled
	used map[taskKey]float64   // GPU-milliseconds used so far
}

func newGPUUsage() *gpuUsage {
	return &gpuUsage{prev: map[taskKey]time.Time{}, used: map[taskKey]float64{}}
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
}

// take returns rank k's figure and forgets the rank.
func (u *gpuUsage) take(k taskKey) uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	v := u.used[k]
	delete(u.used, k)
	delete(u.prev, k)
	return uint64(v)
}

// heldGPUs maps each rank and allocation slot this agent runs to its
// GPUs. A job step's tasks are left out: they run on their slot's GPUs,
// which the slot already counts.
func (a *Agent) heldGPUs() map[taskKey][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	held := map[taskKey][]string{}
	for k, t := range a.tasks {
		if k.step == 0 && len(t.rank.GetGpuUuids()) > 0 {
			held[k] = t.rank.GpuUuids
		}
	}
	return held
}

// sampleUsage takes one GPU sample and credits it to the ranks running
// now. The sampler is read outside a.mu: the simulated one asks the
// agent which GPUs are held.
func (a *Agent) sampleUsage(ctx context.Context) {
	a.usage.mu.Lock()
	defer a.usage.mu.Unlock()
	held := a.heldGPUs()
	if len(held) == 0 {
		clear(a.usage.prev)
		clear(a.usage.used)
		return
	}
	samples, err := a.sampler.Sample(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("GPU sample for usage accounting failed", "err", err)
		}
		return
	}
	a.usage.observe(samples, held)
}

// usedGPUMs samples once more and returns what rank k used, for its end
// report; the rank is forgotten.
func (a *Agent) usedGPUMs(k taskKey) uint64 {
	if k.step != 0 {
		return 0
	}
	a.sampleUsage(a.ctx)
	return a.usage.take(k)
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
