package agent

import (
	"context"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
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
	a := &Agent{log: slog.New(slog.DiscardHandler), ctx: context.Background(), tasks: map[taskKey]*task{}, usage: newGPUUsage(), state: newMemStore()}
	k := taskKey{job: 7, gen: 1}
	a.tasks[k] = &task{key: k, job: &api.Job{Id: 7, User: "alice"}, rank: &api.Rank{GpuUuids: []string{top.GPUs[0].UUID, top.GPUs[5].UUID}},
		running: &api.TaskStatus{State: api.TaskState_TASK_RUNNING}}
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
	if got := a.usedGPUMs(a.tasks[k]); float64(got) != want || got < 2*8400 || got > 2*9600 {
		t.Errorf("usedGPUMs after 10 s on 2 busy GPUs = %d, want %v (between 16800 and 19200)", got, want)
	}
}

// fixedSampler reads every GPU at its set utilization, at the time its
// clock says.
type fixedSampler struct {
	now  time.Time
	util map[string]float64 // by UUID
}

func (s *fixedSampler) Sample(context.Context) ([]gpu.Sample, error) {
	var out []gpu.Sample
	for i, id := range slices.Sorted(maps.Keys(s.util)) {
		out = append(out, gpu.Sample{Index: i, UUID: id, Time: s.now, UtilizationPct: s.util[id]})
	}
	return out, nil
}

func (s *fixedSampler) Health(ctx context.Context) <-chan gpu.HealthEvent {
	ch := make(chan gpu.HealthEvent)
	go func() { <-ctx.Done(); close(ch) }()
	return ch
}

// usageAgent is an agent with only what usage accounting needs: a
// sampler, a state store and one rank holding GPU-a and GPU-b (not yet
// reported running).
func usageAgent(s *fixedSampler, st stateStore) (*Agent, *task) {
	a := &Agent{log: slog.New(slog.DiscardHandler), ctx: context.Background(), tasks: map[taskKey]*task{},
		usage: newGPUUsage(), state: st, sampler: s}
	k := taskKey{job: 9, gen: 1}
	t := &task{key: k, job: &api.Job{Id: 9}, rank: &api.Rank{GpuUuids: []string{"GPU-a", "GPU-b"}}}
	a.tasks[k] = t
	return a, t
}

// TestUsageCountsWholeLife checks that a rank's count starts when it is
// reported running and ends with its end report, with no periodic sample
// in between: a rank that ran 3 s on two GPUs at 80% and 50% used
// (0.8+0.5)×3 s. Time before the running report is not counted.
func TestUsageCountsWholeLife(t *testing.T) {
	s := &fixedSampler{now: time.UnixMilli(5_000_000), util: map[string]float64{"GPU-a": 80, "GPU-b": 50}}
	a, tk := usageAgent(s, newMemStore())
	a.sampleUsage(a.ctx) // the rank is not running yet: not held
	s.now = s.now.Add(2 * time.Second)
	a.setRunning(tk, &api.TaskStatus{State: api.TaskState_TASK_RUNNING})
	a.startUsage(tk)
	s.now = s.now.Add(3 * time.Second)
	if got := a.usedGPUMs(tk); got != 3_900 {
		t.Errorf("usedGPUMs after 3 s at 80%% and 50%% = %d GPU-ms, want 3900", got)
	}
}

// TestUsageAcrossRestart follows a rank over an agent restart: the first
// agent samples it and reports; it dies 5 s after its last sample; the
// second starts 20 s later on the same state store and re-attaches. The
// second agent's figure goes on from the first's (no double count: the
// servers add growth over the figure they last heard) and its first
// sample weighs the 25 s since the first agent's last one (no gap): at a
// steady 50% on two GPUs, 40 s of life is 40 GPU-seconds.
func TestUsageAcrossRestart(t *testing.T) {
	for _, store := range []string{"bolt", "mem"} {
		t.Run(store, func(t *testing.T) {
			var st stateStore = newMemStore()
			if store == "bolt" {
				bs, err := openBoltStore(filepath.Join(t.TempDir(), "agent.db"))
				if err != nil {
					t.Fatal(err)
				}
				defer bs.Close()
				st = bs
			}
			s := &fixedSampler{now: time.UnixMilli(7_000_000), util: map[string]float64{"GPU-a": 50, "GPU-b": 50}}
			first, tk := usageAgent(s, st)
			first.setRunning(tk, &api.TaskStatus{State: api.TaskState_TASK_RUNNING})
			first.startUsage(tk)
			s.now = s.now.Add(10 * time.Second)
			first.sampleUsage(first.ctx)
			if got := first.usage.peek(tk.key); got != 10_000 {
				t.Fatalf("first agent's report after 10 s = %d GPU-ms, want 10000", got)
			}
			s.now = s.now.Add(5 * time.Second)
			first.sampleUsage(first.ctx)       // its last sample: 15 000 GPU-ms, stored
			s.now = s.now.Add(5 * time.Second) // it dies here, unsampled

			s.now = s.now.Add(20 * time.Second)
			second, tk2 := usageAgent(s, st)
			marks, err := st.allUsage()
			if err != nil {
				t.Fatal(err)
			}
			second.usage.restore(marks)
			// A sample before the rank is re-attached keeps its mark.
			second.sampleUsage(second.ctx)
			second.setRunning(tk2, &api.TaskStatus{State: api.TaskState_TASK_RUNNING})
			second.startUsage(tk2)
			if got := second.usage.peek(tk2.key); got != 40_000 {
				t.Errorf("second agent's figure at re-attach = %d GPU-ms, want 40000 (15000 stored + 25 s × 2 × 50%%)", got)
			}
			s.now = s.now.Add(10 * time.Second)
			if got := second.usedGPUMs(tk2); got != 50_000 {
				t.Errorf("second agent's end figure = %d GPU-ms, want 50000", got)
			}
			// The ended rank is not counted again; its last mark stays
			// stored until restoredTTL after the next sample.
			s.now = s.now.Add(10 * time.Second)
			second.sampleUsage(second.ctx)
			if got := second.usage.peek(tk2.key); got != 0 {
				t.Errorf("a sample after the end counted %d GPU-ms, want 0", got)
			}
			if left, err := st.allUsage(); err != nil || left[tk2.key].UsedMs != 50_000 {
				t.Errorf("stored marks after the rank's end = %v, %v; want its last one, 50000 GPU-ms", left, err)
			}
		})
	}
}

// TestRestoredMarksExpire checks that a mark whose rank never comes back
// is dropped restoredTTL after the first sample, and kept until then.
func TestRestoredMarksExpire(t *testing.T) {
	gone := taskKey{job: 1, gen: 1}
	u := newGPUUsage()
	u.restore(map[taskKey]usageMark{gone: {UsedMs: 500, AtUnixMs: 1_000}})
	other := map[taskKey][]string{{job: 2, gen: 1}: {"GPU-a"}}
	at := func(d time.Duration) []gpu.Sample {
		return []gpu.Sample{{UUID: "GPU-a", Time: time.UnixMilli(10_000).Add(d), UtilizationPct: 100}}
	}
	u.observe(at(0), other)
	u.observe(at(restoredTTL), other)
	if _, ok := u.marks()[gone]; !ok {
		t.Fatalf("mark dropped at restoredTTL, want it kept until after")
	}
	u.observe(at(restoredTTL+time.Second), other)
	if _, ok := u.marks()[gone]; ok {
		t.Errorf("mark kept after restoredTTL, want it dropped")
	}
}
