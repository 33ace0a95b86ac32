package scheduler

import (
	"slices"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
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
