package state

import (
	"errors"
	"slices"
	"testing"

	"github.com/loomhpc/loom/api"
)

func resvCmd(op api.ReservationOp, r *api.Reservation) *api.ReservationCommand {
	return &api.ReservationCommand{Op: op, Reservation: r, NowUnixMs: 1000}
}

func createResv(f *TestFSM, r *api.Reservation) *Result {
	return f.Apply(CmdReservation, resvCmd(api.ReservationOp_RESERVATION_CREATE, r))
}

func resvFSM(t *testing.T, nodes ...string) *TestFSM {
	t.Helper()
	f := NewTestFSM()
	for _, n := range nodes {
		f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode(n, 2, 8)})
	}
	return f
}

// TestReservationCreateOverlapDelete: names are unique, overlapping
// reservations on the same nodes are refused unless OVERLAP or MAINT,
// nodes must exist, and delete removes.
func TestReservationCreateOverlapDelete(t *testing.T) {
	f := resvFSM(t, "n1", "n2", "n3")
	base := &api.Reservation{Name: "a", StartUnixMs: 10_000, EndUnixMs: 20_000, Nodes: []string{"n2", "n1"}, Users: []string{"alice"}}
	if res := createResv(f, base); res.Err != nil {
		t.Fatalf("create a: %v", res.Err)
	}
	if got := f.Store.View().Reservation("a").Nodes; !slices.Equal(got, []string{"n1", "n2"}) {
		t.Fatalf("a.Nodes = %v, want sorted [n1 n2]", got)
	}
	tests := []struct {
		name string
		r    *api.Reservation
		want error // nil: accepted
	}{
		{"same name", &api.Reservation{Name: "a", StartUnixMs: 30_000, EndUnixMs: 40_000, Nodes: []string{"n3"}, Users: []string{"bob"}}, ErrReservationExists},
		{"overlap", &api.Reservation{Name: "b", StartUnixMs: 15_000, EndUnixMs: 25_000, Nodes: []string{"n2", "n3"}, Users: []string{"bob"}}, ErrReservationConflict},
		{"unknown node", &api.Reservation{Name: "c", StartUnixMs: 15_000, EndUnixMs: 25_000, Nodes: []string{"n9"}, Users: []string{"bob"}}, ErrNodeNotFound},
		{"adjacent window", &api.Reservation{Name: "d", StartUnixMs: 20_000, EndUnixMs: 25_000, Nodes: []string{"n1"}, Users: []string{"bob"}}, nil},
		{"other nodes", &api.Reservation{Name: "e", StartUnixMs: 15_000, EndUnixMs: 25_000, Nodes: []string{"n3"}, Users: []string{"bob"}}, nil},
		{"overlap flag", &api.Reservation{Name: "f", StartUnixMs: 15_000, EndUnixMs: 25_000, Nodes: []string{"n2"}, Users: []string{"bob"}, Flags: []string{api.ReservationOverlap}}, nil},
		{"maint flag", &api.Reservation{Name: "g", StartUnixMs: 15_000, EndUnixMs: 25_000, Nodes: []string{"n1"}, Accounts: []string{"ops"}, Flags: []string{api.ReservationMaint}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := createResv(f, tt.r)
			if tt.want == nil && res.Err != nil || tt.want != nil && !errors.Is(res.Err, tt.want) {
				t.Fatalf("create %s = %v, want %v", tt.r.Name, res.Err, tt.want)
			}
		})
	}
	if res := f.Apply(CmdReservation, resvCmd(api.ReservationOp_RESERVATION_DELETE, &api.Reservation{Name: "a"})); res.Err != nil {
		t.Fatalf("delete a: %v", res.Err)
	}
	if f.Store.View().Reservation("a") != nil {
		t.Fatal("a still there after delete")
	}
	if res := f.Apply(CmdReservation, resvCmd(api.ReservationOp_RESERVATION_DELETE, &api.Reservation{Name: "a"})); !errors.Is(res.Err, ErrReservationNotFound) {
		t.Fatalf("delete a again = %v, want %v", res.Err, ErrReservationNotFound)
	}
	// With a gone, b's overlap with it is no longer a conflict (f, which
	// may share, starts at 15000).
	if res := createResv(f, &api.Reservation{Name: "b", StartUnixMs: 12_000, EndUnixMs: 15_000, Nodes: []string{"n2"}, Users: []string{"bob"}}); res.Err != nil {
		t.Fatalf("create b after a's delete: %v", res.Err)
	}
}

// TestReservationValidation: what the FSM refuses whatever the state.
func TestReservationValidation(t *testing.T) {
	f := resvFSM(t, "n1")
	tests := []struct {
		name string
		r    *api.Reservation
	}{
		{"no name", &api.Reservation{StartUnixMs: 1, EndUnixMs: 2, Nodes: []string{"n1"}, Users: []string{"u"}}},
		{"end before start", &api.Reservation{Name: "x", StartUnixMs: 5, EndUnixMs: 2, Nodes: []string{"n1"}, Users: []string{"u"}}},
		{"nobody", &api.Reservation{Name: "x", StartUnixMs: 1, EndUnixMs: 2, Nodes: []string{"n1"}}},
		{"no nodes", &api.Reservation{Name: "x", StartUnixMs: 1, EndUnixMs: 2, Users: []string{"u"}}},
		{"unknown flag", &api.Reservation{Name: "x", StartUnixMs: 1, EndUnixMs: 2, Nodes: []string{"n1"}, Users: []string{"u"}, Flags: []string{"FLEX"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fe *api.FieldError
			if res := createResv(f, tt.r); !errors.As(res.Err, &fe) {
				t.Fatalf("create %v = %v, want a field error", tt.r, res.Err)
			}
		})
	}
	if n := len(slices.Collect(f.Store.View().Reservations())); n != 0 {
		t.Fatalf("%d reservations after refused creates, want 0", n)
	}
}

// TestReservationRunningJobsAndNodeCount: a running job that would still
// run at the start blocks a reservation on its node unless IGNORE_JOBS;
// NodeCnt picks nodes free for the window, once.
func TestReservationRunningJobsAndNodeCount(t *testing.T) {
	f := resvFSM(t, "n1", "n2", "n3")
	submit(f, "", &api.JobSpec{Script: "x", TimeLimitS: 60}) // ends at 1000+60s
	f.Apply(CmdApplyPlan, &api.PlanCommand{NowUnixMs: 1000, Placements: []*api.Placement{{JobId: 1, Allocation: oneRankAlloc("n1", "GPU-n1-0", 29500)}}})
	if j := f.Store.View().Job(1); !j.HoldsResources() {
		t.Fatalf("job 1 state %s, want it placed", j.State)
	}
	r := &api.Reservation{Name: "m", StartUnixMs: 30_000, EndUnixMs: 90_000, Nodes: []string{"n1"}, Users: []string{"alice"}}
	if res := createResv(f, r); !errors.Is(res.Err, ErrReservationConflict) {
		t.Fatalf("create on a busy node = %v, want %v", res.Err, ErrReservationConflict)
	}
	after := &api.Reservation{Name: "later", StartUnixMs: 200_000, EndUnixMs: 300_000, Nodes: []string{"n1"}, Users: []string{"alice"}}
	if res := createResv(f, after); res.Err != nil {
		t.Fatalf("create after the job's limit: %v", res.Err)
	}
	r.Flags = []string{api.ReservationIgnoreJobs}
	if res := createResv(f, r); res.Err != nil {
		t.Fatalf("create with IGNORE_JOBS: %v", res.Err)
	}
	cnt := &api.Reservation{Name: "cnt", StartUnixMs: 30_000, EndUnixMs: 90_000, NodeCount: 2, Users: []string{"alice"}}
	if res := createResv(f, cnt); res.Err != nil {
		t.Fatalf("create NodeCnt=2: %v", res.Err)
	}
	if got := f.Store.View().Reservation("cnt").Nodes; !slices.Equal(got, []string{"n2", "n3"}) {
		t.Fatalf("NodeCnt=2 picked %v, want [n2 n3] (n1 is in m)", got)
	}
	more := &api.Reservation{Name: "more", StartUnixMs: 30_000, EndUnixMs: 90_000, NodeCount: 1, Users: []string{"alice"}}
	if res := createResv(f, more); !errors.Is(res.Err, ErrReservationConflict) {
		t.Fatalf("create NodeCnt=1 with every node taken = %v, want %v", res.Err, ErrReservationConflict)
	}
}

// TestReservationUpdateAndExpire: an update replaces fields and is
// checked like a create; expire removes only a reservation whose end has
// passed.
func TestReservationUpdateAndExpire(t *testing.T) {
	f := resvFSM(t, "n1", "n2")
	createResv(f, &api.Reservation{Name: "a", StartUnixMs: 10_000, EndUnixMs: 20_000, Nodes: []string{"n1"}, Users: []string{"alice"}, CreatedBy: "root"})
	createResv(f, &api.Reservation{Name: "b", StartUnixMs: 30_000, EndUnixMs: 40_000, Nodes: []string{"n1"}, Users: []string{"alice"}})
	up := &api.Reservation{Name: "a", StartUnixMs: 10_000, EndUnixMs: 35_000, Nodes: []string{"n1"}, Users: []string{"alice", "bob"}}
	if res := f.Apply(CmdReservation, resvCmd(api.ReservationOp_RESERVATION_UPDATE, up)); !errors.Is(res.Err, ErrReservationConflict) {
		t.Fatalf("update into b's window = %v, want %v", res.Err, ErrReservationConflict)
	}
	up.EndUnixMs = 25_000
	if res := f.Apply(CmdReservation, resvCmd(api.ReservationOp_RESERVATION_UPDATE, up)); res.Err != nil {
		t.Fatalf("update: %v", res.Err)
	}
	got := f.Store.View().Reservation("a")
	if got.EndUnixMs != 25_000 || !slices.Equal(got.Users, []string{"alice", "bob"}) || got.CreatedBy != "root" {
		t.Fatalf("after update a = %v, want end 25000, users alice,bob, created by root", got)
	}
	f.Apply(CmdReservation, &api.ReservationCommand{Op: api.ReservationOp_RESERVATION_EXPIRE, Reservation: &api.Reservation{Name: "a"}, NowUnixMs: 24_999})
	if f.Store.View().Reservation("a") == nil {
		t.Fatal("expire before the end removed a")
	}
	f.Apply(CmdReservation, &api.ReservationCommand{Op: api.ReservationOp_RESERVATION_EXPIRE, Reservation: &api.Reservation{Name: "a"}, NowUnixMs: 25_000})
	if f.Store.View().Reservation("a") != nil {
		t.Fatal("expire at the end left a")
	}
}

// TestReservationInStateHash: a reservation changes the state hash.
func TestReservationInStateHash(t *testing.T) {
	f := resvFSM(t, "n1")
	before, _ := f.Store.View().Hash()
	createResv(f, &api.Reservation{Name: "a", StartUnixMs: 10_000, EndUnixMs: 20_000, Nodes: []string{"n1"}, Users: []string{"alice"}})
	if after, _ := f.Store.View().Hash(); after == before {
		t.Fatal("creating a reservation left the state hash unchanged")
	}
}

// TestReservationAllows: users, accounts, and both.
func TestReservationAllows(t *testing.T) {
	tests := []struct {
		users, accounts []string
		user, account   string
		want            bool
	}{
		{[]string{"alice"}, nil, "alice", "x", true},
		{[]string{"alice"}, nil, "bob", "x", false},
		{nil, []string{"proj"}, "bob", "proj", true},
		{nil, []string{"proj"}, "bob", "other", false},
		{[]string{"alice"}, []string{"proj"}, "alice", "other", false},
		{[]string{"alice"}, []string{"proj"}, "alice", "proj", true},
		{nil, nil, "alice", "proj", false},
	}
	for _, tt := range tests {
		r := &api.Reservation{Users: tt.users, Accounts: tt.accounts}
		if got := r.Allows(tt.user, tt.account); got != tt.want {
			t.Errorf("Users=%v Accounts=%v Allows(%q, %q) = %v, want %v", tt.users, tt.accounts, tt.user, tt.account, got, tt.want)
		}
	}
}

// TestPlanRespectsActiveReservations: the FSM refuses a placement of an
// outsider on a node of an active reservation, and of a job of a
// reservation outside its nodes or its window.
func TestPlanRespectsActiveReservations(t *testing.T) {
	f := resvFSM(t, "n1", "n2")
	createResv(f, &api.Reservation{Name: "r", StartUnixMs: 5000, EndUnixMs: 9000, Nodes: []string{"n2"}, Users: []string{"alice"}})
	submit(f, "", &api.JobSpec{Script: "x"})                   // 1: outsider
	submit(f, "", &api.JobSpec{Script: "x", Reservation: "r"}) // 2: member
	tests := []struct {
		name   string
		job    uint64
		node   string
		now    int64
		placed int
	}{
		{"outsider on a reserved node in the window", 1, "n2", 6000, 0},
		{"member outside its nodes", 2, "n1", 6000, 0},
		{"member before the window", 2, "n2", 4000, 0},
		{"member after the window", 2, "n2", 9000, 0},
		{"outsider on a reserved node before the window", 1, "n2", 4000, 1},
		{"member on its node in the window", 2, "n2", 6000, 1},
	}
	port := uint32(29500)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port++
			res := f.Apply(CmdApplyPlan, &api.PlanCommand{NowUnixMs: tt.now,
				Placements: []*api.Placement{{JobId: tt.job, Allocation: oneRankAlloc(tt.node, "GPU-"+tt.node+"-"+string(rune('0'+tt.job-1)), port)}}})
			if res.Placed != tt.placed {
				t.Fatalf("placing job %d on %s at %d: placed %d, want %d", tt.job, tt.node, tt.now, res.Placed, tt.placed)
			}
		})
	}
}
