package scheduler

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"pgregory.net/rapid"
)

func withLimit(j *api.Job, d time.Duration) *api.Job {
	j.Spec.TimeLimitS = int64(d / time.Second)
	return j
}

func TestBackfillRespectsReservation(t *testing.T) {
	t0 := time.Unix(100_000, 0)
	a, b := node("a", 8, 64), node("b", 8, 64)
	jobs := []*api.Job{
		withLimit(running(1, &api.JobSpec{GpusPerNode: 8}, t0.Add(-900*time.Second), gpuRank("a", 0, 1, 2, 3, 4, 5, 6, 7)), 1000*time.Second),
		withLimit(running(2, &api.JobSpec{GpusPerNode: 4}, t0.Add(-100*time.Second), gpuRank("b", 0, 1, 2, 3)), 1100*time.Second),
		withLimit(pending(3, &api.JobSpec{NodesMin: 2, GpusPerNode: 8}), time.Hour), // the gang: 16 GPUs
		withLimit(pending(4, &api.JobSpec{GpusPerNode: 1}), 500*time.Second),        // ends before the gang starts
		withLimit(pending(5, &api.JobSpec{GpusPerNode: 1}), 5000*time.Second),       // would delay it
		withLimit(pending(6, &api.JobSpec{GpusPerNode: 2}), 1000*time.Second),       // ends exactly at the start
	}
	p := Schedule(&View{Nodes: []*api.Node{a, b}, Jobs: jobs}, t0, Config{})
	var placed []uint64
	for _, pl := range p.Placements {
		placed = append(placed, pl.JobId)
	}
	if !slices.Equal(placed, []uint64{4, 6}) {
		t.Fatalf("placed %v, want [4 6] (backfill that ends by the gang's start)", placed)
	}
	reasons := map[uint64]*api.PendingReason{}
	for _, pr := range p.Pending {
		reasons[pr.JobId] = pr
	}
	wantStart := t0.Add(1000 * time.Second).UnixMilli() // job 2 ends at t0+1000s
	if r := reasons[3]; r == nil || r.Reason != ReasonResources || r.ExpectedStartUnixMs != wantStart {
		t.Fatalf("gang reason = %v, want Resources starting at %d", r, wantStart)
	}
	if r := reasons[5]; r == nil || r.Reason != ReasonReserved {
		t.Fatalf("job 5 reason = %v, want Reserved", r)
	}
	if len(p.Reservations) == 0 || p.Reservations[0].JobID != 3 || len(p.Reservations[0].GPUs) != 16 {
		t.Fatalf("reservations = %+v, want the gang's 16 GPUs first", p.Reservations)
	}
}

func TestStrictFIFOBlocks(t *testing.T) {
	t0 := time.Unix(100_000, 0)
	a := node("a", 8, 64)
	jobs := []*api.Job{
		withLimit(running(1, &api.JobSpec{GpusPerNode: 4}, t0, gpuRank("a", 0, 1, 2, 3)), time.Hour),
		pending(2, &api.JobSpec{GpusPerNode: 8}),
		pending(3, &api.JobSpec{GpusPerNode: 1}),
	}
	p := Schedule(&View{Nodes: []*api.Node{a}, Jobs: jobs}, t0, Config{Order: OrderFIFO, Strict: true})
	if len(p.Placements) != 0 {
		t.Fatalf("strict FIFO placed %v past a blocked head", p.Placements[0].JobId)
	}
	p = Schedule(&View{Nodes: []*api.Node{a}, Jobs: jobs}, t0, Config{Order: OrderFIFO, ReserveDepth: -1})
	if len(p.Placements) != 1 || p.Placements[0].JobId != 3 {
		t.Fatalf("greedy FIFO placements = %v, want job 3", p.Placements)
	}
}

// TestPropertyBackfillNeverDelaysReservation replays random clusters and
// queues with exact time limits (jobs end exactly at their limits) and no
// new arrivals: the highest-priority waiting gang never starts later than
// the reservation it was first given, however much was backfilled around
// it. (Lower reservations are estimates: they may move when the ones
// above them re-plan onto other GPUs, as in Slurm.)
func TestPropertyBackfillNeverDelaysReservation(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		now := time.Unix(1_000_000, 0)
		v := &View{}
		for i := range rapid.IntRange(1, 5).Draw(rt, "nodes") {
			v.Nodes = append(v.Nodes, node(fmt.Sprint("n", i), 8, 64))
		}
		njobs := rapid.IntRange(1, 30).Draw(rt, "jobs")
		for id := uint64(1); id <= uint64(njobs); id++ {
			spec := &api.JobSpec{TimeLimitS: int64(rapid.IntRange(1, 20).Draw(rt, "limit")) * 100}
			if rapid.IntRange(0, 3).Draw(rt, "multi") == 0 {
				spec.NodesMin = uint32(rapid.IntRange(1, len(v.Nodes)).Draw(rt, "N"))
				spec.GpusPerNode = uint32(rapid.SampledFrom([]int{4, 8}).Draw(rt, "gpn"))
			} else {
				spec.GpusPerNode = uint32(rapid.IntRange(1, 8).Draw(rt, "gpus"))
			}
			v.Jobs = append(v.Jobs, pending(id, spec))
		}
		cfg := Config{Order: OrderFIFO, ReserveDepth: rapid.IntRange(1, 4).Draw(rt, "K"), BackfillWindow: 1000 * time.Hour}
		promised := map[uint64]int64{}
		ends := map[uint64]time.Time{}
		for step := 0; step < 200; step++ {
			p := Schedule(v, now, cfg)
			if len(p.Reservations) > 0 {
				r := p.Reservations[0]
				if _, ok := promised[r.JobID]; !ok {
					promised[r.JobID] = r.Start.UnixMilli()
				}
			}
			for _, pl := range p.Placements {
				if at, ok := promised[pl.JobId]; ok && now.UnixMilli() > at {
					rt.Fatalf("job %d started at %d, after its reservation at %d", pl.JobId, now.UnixMilli(), at)
				}
			}
			v = applyAt(v, p, now)
			for _, j := range v.Jobs {
				if j.State == api.JobState_RUNNING {
					ends[j.Id] = time.UnixMilli(j.StartUnixMs).Add(time.Duration(j.Spec.TimeLimitS) * time.Second)
				}
			}
			// Advance to the next end; end those jobs.
			next := time.Time{}
			for _, e := range ends {
				if next.IsZero() || e.Before(next) {
					next = e
				}
			}
			if next.IsZero() {
				break
			}
			now = next
			var kept []*api.Job
			for _, j := range v.Jobs {
				if e, ok := ends[j.Id]; ok && !e.After(now) {
					delete(ends, j.Id)
					continue
				}
				kept = append(kept, j)
			}
			v = &View{Nodes: v.Nodes, Jobs: kept}
		}
	})
}

// applyAt is apply with a start time, and pending reasons recorded.
func applyAt(v *View, p *Plan, now time.Time) *View {
	out := apply(v, p)
	reasons := map[uint64]*api.PendingReason{}
	for _, pr := range p.Pending {
		reasons[pr.JobId] = pr
	}
	for i, j := range out.Jobs {
		switch {
		case j.State == api.JobState_RUNNING && j.StartUnixMs == 0:
			j.StartUnixMs = now.UnixMilli()
		case j.State == api.JobState_PENDING && reasons[j.Id] != nil:
			c := reasons[j.Id]
			nj := &api.Job{Id: j.Id, Spec: j.Spec, State: j.State, SubmitUnixMs: j.SubmitUnixMs, Reason: c.Reason, ExpectedStartUnixMs: c.ExpectedStartUnixMs}
			out.Jobs[i] = nj
		}
	}
	return out
}
