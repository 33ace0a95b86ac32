package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"pgregory.net/rapid"
)

func inResv(j *api.Job, name, user string) *api.Job {
	j.Spec.Reservation = name
	j.User = user
	return j
}

func resvPlaced(p *Plan) map[uint64][]string {
	out := map[uint64][]string{}
	for _, pl := range p.Placements {
		out[pl.JobId] = pl.Allocation.Nodes
	}
	return out
}

func reasonsOf(p *Plan) map[uint64]*api.PendingReason {
	out := map[uint64]*api.PendingReason{}
	for _, pr := range p.Pending {
		out[pr.JobId] = pr
	}
	return out
}

// TestReservationActiveWindow: in the window the reserved nodes stay idle
// for outsiders, even when they would fit nowhere else, and a job of the
// reservation runs there and only there.
func TestReservationActiveWindow(t *testing.T) {
	t0 := time.Unix(100_000, 0)
	nodes := []*api.Node{node("a", 4, 32), node("b", 4, 32), node("c", 4, 32)}
	resv := &api.Reservation{Name: "ws", StartUnixMs: t0.Add(-time.Minute).UnixMilli(), EndUnixMs: t0.Add(time.Hour).UnixMilli(),
		Nodes: []string{"b", "c"}, Users: []string{"alice"}}
	jobs := []*api.Job{
		pending(1, &api.JobSpec{GpusPerNode: 4}),                                     // outsider: a
		pending(2, &api.JobSpec{GpusPerNode: 4}),                                     // outsider: nothing left outside the reservation
		inResv(pending(3, &api.JobSpec{GpusPerNode: 4}), "ws", "alice"),              // member: b or c
		inResv(pending(4, &api.JobSpec{GpusPerNode: 4}), "ws", "bob"),                // not allowed
		inResv(pending(5, &api.JobSpec{NodesMin: 2, GpusPerNode: 4}), "ws", "alice"), // needs both reserved nodes; one is taken
	}
	p := Schedule(&View{Nodes: nodes, Jobs: jobs, Reservations: []*api.Reservation{resv}}, t0, Config{})
	got := resvPlaced(p)
	if !slices.Equal(got[1], []string{"a"}) {
		t.Fatalf("job 1 on %v, want [a]", got[1])
	}
	if n, ok := got[2]; ok {
		t.Fatalf("outsider job 2 placed on %v inside the reservation's window", n)
	}
	if len(got[3]) != 1 || (got[3][0] != "b" && got[3][0] != "c") {
		t.Fatalf("member job 3 on %v, want b or c", got[3])
	}
	if _, ok := got[5]; ok {
		t.Fatalf("job 5 placed on %v, but only one reserved node was left", got[5])
	}
	reasons := reasonsOf(p)
	if r := reasons[4]; r == nil || r.Reason != ReasonReservationAccess {
		t.Fatalf("job 4 (bob, not in Users) reason = %v, want %s", r, ReasonReservationAccess)
	}
}

// TestReservationBeforeWindow: before the start, other jobs backfill onto
// the reserved nodes only when their time limit ends by the start; a job
// of the reservation waits for it, expecting its start.
func TestReservationBeforeWindow(t *testing.T) {
	t0 := time.Unix(100_000, 0)
	start := t0.Add(time.Hour)
	nodes := []*api.Node{node("a", 4, 32)}
	resv := &api.Reservation{Name: "maint", StartUnixMs: start.UnixMilli(), EndUnixMs: start.Add(time.Hour).UnixMilli(),
		Nodes: []string{"a"}, Users: []string{"root"}, Flags: []string{api.ReservationMaint}}
	jobs := []*api.Job{
		withLimit(pending(1, &api.JobSpec{GpusPerNode: 4}), 2*time.Hour),    // would run into the window
		inResv(pending(2, &api.JobSpec{GpusPerNode: 1}), "maint", "root"),   // waits for the start
		withLimit(pending(3, &api.JobSpec{GpusPerNode: 2}), 30*time.Minute), // ends before
		withLimit(pending(4, &api.JobSpec{GpusPerNode: 2}), time.Hour),      // ends exactly at the start
		pending(5, &api.JobSpec{GpusPerNode: 1}),                            // unlimited: never before a window
	}
	v := &View{Nodes: nodes, Jobs: jobs, Reservations: []*api.Reservation{resv}}
	p := Schedule(v, t0, Config{})
	var ids []uint64
	for id := range resvPlaced(p) {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []uint64{3, 4}) {
		t.Fatalf("placed %v before the window, want [3 4] (the jobs that end by its start)", ids)
	}
	reasons := reasonsOf(p)
	if r := reasons[2]; r == nil || r.Reason != ReasonReservation || r.ExpectedStartUnixMs != start.UnixMilli() {
		t.Fatalf("member job 2 reason = %v, want %s expecting %d", r, ReasonReservation, start.UnixMilli())
	}
	// In the window, the member runs and the long job still waits.
	p = Schedule(&View{Nodes: nodes, Jobs: jobs, Reservations: []*api.Reservation{resv}}, start, Config{})
	got := resvPlaced(p)
	if _, ok := got[2]; !ok {
		t.Fatalf("in the window the member job did not start; placed %v, pending %v", got, p.Pending)
	}
	for _, id := range []uint64{1, 3, 4, 5} {
		if n, ok := got[id]; ok {
			t.Fatalf("outsider job %d placed on %v in the window", id, n)
		}
	}
	// After the end (before the leader removes it) the reservation holds
	// nothing, and its jobs that never started wait as ReservationDeleted.
	p = Schedule(&View{Nodes: nodes, Jobs: jobs, Reservations: []*api.Reservation{resv}}, start.Add(time.Hour), Config{})
	if _, ok := resvPlaced(p)[1]; !ok {
		t.Fatalf("after the window job 1 did not start; placed %v", resvPlaced(p))
	}
	if r := reasonsOf(p)[2]; r == nil || r.Reason != ReasonReservationDeleted {
		t.Fatalf("member job 2 after the end: reason %v, want %s", r, ReasonReservationDeleted)
	}
}

// TestReservationRunningJobsLeftAlone: a job running on a reserved node
// when the window opens (IGNORE_JOBS) keeps running; the reservation's
// job waits for its GPUs instead of sharing them.
func TestReservationRunningJobsLeftAlone(t *testing.T) {
	t0 := time.Unix(100_000, 0)
	nodes := []*api.Node{node("a", 4, 32)}
	resv := &api.Reservation{Name: "r", StartUnixMs: t0.UnixMilli(), EndUnixMs: t0.Add(time.Hour).UnixMilli(),
		Nodes: []string{"a"}, Accounts: []string{"proj"}, Flags: []string{api.ReservationIgnoreJobs}}
	jobs := []*api.Job{
		withLimit(running(1, &api.JobSpec{GpusPerNode: 3}, t0.Add(-time.Minute), gpuRank("a", 0, 1, 2)), 10*time.Minute),
		inResv(pending(2, &api.JobSpec{GpusPerNode: 2, Account: "proj"}), "r", "carol"),
	}
	p := Schedule(&View{Nodes: nodes, Jobs: jobs, Reservations: []*api.Reservation{resv}}, t0, Config{})
	if len(p.Preemptions) != 0 {
		t.Fatalf("preempted %v at the reservation's start", p.Preemptions)
	}
	got := resvPlaced(p)
	if _, ok := got[2]; ok {
		t.Fatal("job 2 placed on GPUs a running job holds")
	}
	if r := reasonsOf(p)[2]; r == nil || r.ExpectedStartUnixMs != t0.Add(9*time.Minute).UnixMilli() {
		t.Fatalf("job 2 reason = %v, want an expected start when job 1 ends", r)
	}
}

// TestPropertyReservationHolds replays random clusters with one advance
// reservation and a mix of its jobs and others, jobs ending exactly at
// their limits: a job of the reservation only ever starts inside the
// window and on its nodes, and any other job that starts on a reserved
// node ends by the window's start or starts after its end.
func TestPropertyReservationHolds(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		now := time.Unix(1_000_000, 0)
		v := &View{}
		n := rapid.IntRange(2, 5).Draw(rt, "nodes")
		for i := range n {
			v.Nodes = append(v.Nodes, node(fmt.Sprint("n", i), 4, 32))
		}
		ar := &api.Reservation{Name: "r", Accounts: []string{"proj"}}
		for i := range n {
			if rapid.Bool().Draw(rt, "reserved") {
				ar.Nodes = append(ar.Nodes, fmt.Sprint("n", i))
			}
		}
		if len(ar.Nodes) == 0 {
			ar.Nodes = []string{"n0"}
		}
		start := now.Add(time.Duration(rapid.IntRange(0, 3000).Draw(rt, "start")) * time.Second)
		end := start.Add(time.Duration(rapid.IntRange(100, 3000).Draw(rt, "length")) * time.Second)
		ar.StartUnixMs, ar.EndUnixMs = start.UnixMilli(), end.UnixMilli()
		reserved := map[string]bool{}
		for _, x := range ar.Nodes {
			reserved[x] = true
		}
		njobs := rapid.IntRange(1, 25).Draw(rt, "jobs")
		for id := uint64(1); id <= uint64(njobs); id++ {
			spec := &api.JobSpec{GpusPerNode: uint32(rapid.IntRange(1, 4).Draw(rt, "gpus")),
				TimeLimitS: int64(rapid.IntRange(1, 20).Draw(rt, "limit")) * 100}
			if rapid.IntRange(0, 5).Draw(rt, "unlimited") == 0 {
				spec.TimeLimitS = -1
			}
			if rapid.Bool().Draw(rt, "member") {
				spec.Reservation, spec.Account = "r", "proj"
			}
			v.Jobs = append(v.Jobs, pending(id, spec))
		}
		v.Reservations = []*api.Reservation{ar}
		ends := map[uint64]time.Time{}
		for step := 0; step < 200; step++ {
			p := Schedule(v, now, Config{Order: OrderFIFO, BackfillWindow: 1000 * time.Hour})
			for _, pl := range p.Placements {
				j := jobByID(v, pl.JobId)
				member := j.Spec.Reservation == "r"
				inWindow := !now.Before(start) && now.Before(end)
				for _, x := range pl.Allocation.Nodes {
					switch {
					case member && (!inWindow || !reserved[x]):
						rt.Fatalf("job %d of the reservation started at %v on %s; window [%v, %v), nodes %v", j.Id, now, x, start, end, ar.Nodes)
					case !member && reserved[x] && now.Before(end) && (j.Spec.TimeLimitS < 0 || now.Add(time.Duration(j.Spec.TimeLimitS)*time.Second).After(start)):
						rt.Fatalf("job %d (limit %ds) started at %v on reserved %s, running into the window [%v, %v)", j.Id, j.Spec.TimeLimitS, now, x, start, end)
					}
				}
			}
			v = applyAt(v, p, now)
			v.Reservations = []*api.Reservation{ar}
			for _, j := range v.Jobs {
				if j.State == api.JobState_RUNNING && j.Spec.TimeLimitS > 0 {
					ends[j.Id] = time.UnixMilli(j.StartUnixMs).Add(time.Duration(j.Spec.TimeLimitS) * time.Second)
				}
			}
			next := time.Time{}
			for _, e := range append(slices.Collect(maps.Values(ends)), start, end) {
				if e.After(now) && (next.IsZero() || e.Before(next)) {
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
			v = &View{Nodes: v.Nodes, Jobs: kept, Reservations: []*api.Reservation{ar}}
		}
	})
}

func jobByID(v *View, id uint64) *api.Job {
	for _, j := range v.Jobs {
		if j.Id == id {
			return j
		}
	}
	return nil
}
