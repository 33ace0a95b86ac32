package agent

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/gpu"
)

// TestGPUUsageIntegrates checks the integration by hand: a rank's first
// sample starts its clock, each later one weighs the time since the
// previous by the reading's utilization, summed over the rank's GPUs.
func TestGPUUsageIntegrates(t *testing.T) {
	t0 := time.UnixMilli(1_000_000)
	at := func(ms int64, utils ...float64) []gpu.Sample {
		var out []gpu.Sample
		for i, u := range utils {
			out = append(out, gpu.Sample{Index: i, UUID: []string{"GPU-a", "GPU-b", "GPU-c"}[i],
				Time: t0.Add(time.Duration(ms) * time.Millisecond), UtilizationPct: u})
		}
		return out
	}
	two := taskKey{job: 1, gen: 1, rank: 0}  // holds GPU-a and GPU-b
	late := taskKey{job: 2, gen: 1, rank: 0} // holds GPU-c from the second sample
	held := map[taskKey][]string{two: {"GPU-a", "GPU-b"}}
	u := newGPUUsage()
	u.observe(at(0, 100, 50, 0), held) // starts two's clock
	held[late] = []string{"GPU-c"}
	u.observe(at(10_000, 90, 30, 80), held) // two: (0.9+0.3)×10 s = 12 s; late starts
	u.observe(at(15_000, 100, 0, 40), held) // two: 1.0×5 s = 5 s; late: 0.4×5 s = 2 s
	if got := u.take(two); got != 17_000 {
		t.Errorf("take(two) = %d GPU-ms, want 17000", got)
	}
	if got := u.take(two); got != 0 {
		t.Errorf("take(two) again = %d GPU-ms, want 0 (forgotten)", got)
	}
	delete(held, two)
	u.observe(at(20_000, 100, 100, 50), held) // late: 0.5×5 s = 2.5 s
	if got := u.take(late); got != 4_500 {
		t.Errorf("take(late) = %d GPU-ms, want 4500", got)
	}
	// A rank that is no longer held is forgotten by the next sample.
	gone := taskKey{job: 3, gen: 1}
	u.observe(at(21_000, 100), map[taskKey][]string{gone: {"GPU-a"}})
	u.observe(at(22_000, 100), map[taskKey][]string{gone: {"GPU-a"}})
	u.observe(at(23_000, 100), map[taskKey][]string{})
	if got := u.take(gone); got != 0 {
		t.Errorf("take(gone) after it left = %d GPU-ms, want 0", got)
	}
	// A sample no newer than the last adds nothing.
	again := taskKey{job: 4, gen: 1}
	h := map[taskKey][]string{again: {"GPU-a"}}
	u.observe(at(30_000, 100), h)
	u.observe(at(30_000, 100), h)
	if got := u.take(again); got != 0 {
		t.Errorf("take(again) over a repeated sample = %d GPU-ms, want 0", got)
	}
}

// TestSampleUsageSimulated runs the agent's sampling over a simulated
// node: a rank holding two GPUs for 10 s gains the simulator's busy
// figure (90% ± 6) on each, and nothing is credited to the free GPUs.
func TestSampleUsageSimulated(t *testing.T) {
	top, err := gpu.Profile("dgx-h100", "n1")
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{log: slog.New(slog.DiscardHandler), ctx: context.Background(), tasks: map[taskKey]*task{}, usage: newGPUUsage()}
	k := taskKey{job: 7, gen: 1}
	a.tasks[k] = &task{key: k, job: &api.Job{Id: 7, User: "alice"}, rank: &api.Rank{GpuUuids: []string{top.GPUs[0].UUID, top.GPUs[5].UUID}}}
	sim := gpu.NewSimSampler(top, a.gpuHolder)
	now := time.Unix(1_700_000_000, 0)
	sim.SetClock(func() time.Time { return now })
	a.sampler = sim
	a.sampleUsage(a.ctx)
	now = now.Add(10 * time.Second)
	samples, err := sim.Sample(a.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := (samples[0].UtilizationPct + samples[5].UtilizationPct) / 100 * 10_000
	if got := a.usedGPUMs(k); float64(got) != want || got < 2*8400 || got > 2*9600 {
		t.Errorf("usedGPUMs after 10 s on 2 busy GPUs = %d, want %v (between 16800 and 19200)", got, want)
	}
}
