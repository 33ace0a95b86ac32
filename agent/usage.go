package agent

import (
	"context"
	"sync"
	"time"

	"github.com/loomhpc/loom/gpu"
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

// trackUsage samples the GPUs every interval until ctx ends.
func (a *Agent) trackUsage(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			a.sampleUsage(ctx)
		}
	}
}
