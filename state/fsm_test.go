package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"
)

func submit(f *TestFSM, token string, spec *api.JobSpec) *Result {
	return f.Apply(CmdSubmitJob, &api.SubmitJobCommand{
		Request:   &api.SubmitRequest{Spec: spec, User: "alice", Uid: 1000, Gid: 1000, IdempotencyToken: token},
		NowUnixMs: 1000,
	})
}

func oneRankAlloc(node, gpu string, port uint32) *api.Allocation {
	return &api.Allocation{Ranks: []*api.Rank{{Rank: 0, Node: node, GpuUuids: []string{gpu}, Cpus: 1, Port: port}}, Nodes: []string{node}}
}

func TestSubmitAssignsMonotonicIDsAndHonoursTokens(t *testing.T) {
	f := NewTestFSM()
	spec := &api.JobSpec{Script: "#!/bin/sh\ntrue\n"}
	for want := uint64(1); want <= 3; want++ {
		if got := submit(f, fmt.Sprint("tok", want), spec).JobID; got != want {
			t.Fatalf("submit %d: job id = %d, want %d", want, got, want)
		}
	}
	if got := submit(f, "tok2", spec).JobID; got != 2 {
		t.Fatalf("resubmit with token tok2: job id = %d, want 2 (the first job)", got)
	}
	if n := f.Store.View().NumJobs(); n != 3 {
		t.Fatalf("jobs after a retried submit = %d, want 3", n)
	}
}

func TestPlanRejectsDoubleAllocation(t *testing.T) {
	f := NewTestFSM()
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n1", 2, 8)})
	submit(f, "", &api.JobSpec{Script: "x"})
	submit(f, "", &api.JobSpec{Script: "x"})
	gpu := "GPU-n1-0"
	res := f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{
		{JobId: 1, Allocation: oneRankAlloc("n1", gpu, 29500)},
		{JobId: 2, Allocation: oneRankAlloc("n1", gpu, 29501)},
	}})
	if res.Placed != 1 || res.Rejected != 1 {
		t.Fatalf("plan placing two jobs on %s: placed %d rejected %d, want 1 and 1", gpu, res.Placed, res.Rejected)
	}
	if st := f.Store.View().Job(2).State; st != api.JobState_PENDING {
		t.Fatalf("rejected job state = %s, want PENDING", st)
	}
	// A drained node takes nothing new.
	f.Apply(CmdNodeState, &api.NodeStateCommand{Name: "n1", State: api.NodeState_DRAIN, Reason: "maintenance"})
	res = f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: 2, Allocation: oneRankAlloc("n1", "GPU-n1-1", 29502)}}})
	if res.Placed != 0 {
		t.Fatalf("plan onto a drained node placed %d, want 0", res.Placed)
	}
}

func TestGangLifecycle(t *testing.T) {
	ranks := func(states ...api.TaskState) []*api.TaskStatus {
		var out []*api.TaskStatus
		for i, s := range states {
			out = append(out, &api.TaskStatus{Rank: uint32(i), State: s})
		}
		return out
	}
	exited := func(rank uint32, code int32, reason api.TaskEndReason) *api.TaskStatus {
		return &api.TaskStatus{Rank: rank, State: api.TaskState_TASK_EXITED, ExitCode: code, Reason: reason}
	}
	ok := api.TaskEndReason_TASK_END_EXITED
	tests := []struct {
		name    string
		updates [][]*api.TaskStatus // one UpdateTasks per element
		want    api.JobState
		live    bool
	}{
		{"all start", [][]*api.TaskStatus{ranks(api.TaskState_TASK_RUNNING, api.TaskState_TASK_RUNNING)}, api.JobState_RUNNING, true},
		{"one starts", [][]*api.TaskStatus{ranks(api.TaskState_TASK_RUNNING)}, api.JobState_CONFIGURING, true},
		{"all exit 0", [][]*api.TaskStatus{{exited(0, 0, ok), exited(1, 0, ok)}}, api.JobState_COMPLETED, false},
		{"one fails", [][]*api.TaskStatus{{exited(0, 3, ok)}}, api.JobState_FAILED, true},
		{"timeout", [][]*api.TaskStatus{{exited(1, 0, api.TaskEndReason_TASK_END_TIMEOUT)}, {exited(0, 0, api.TaskEndReason_TASK_END_KILLED)}}, api.JobState_TIMEOUT, false},
		{"failure is final", [][]*api.TaskStatus{{exited(0, 0, ok)}, {exited(1, 1, ok)}, {exited(1, 0, ok)}}, api.JobState_FAILED, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewTestFSM()
			f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n1", 2, 8)})
			submit(f, "", &api.JobSpec{Script: "x", Requeue: proto.Bool(false)})
			a := &api.Allocation{Nodes: []string{"n1"}, Ranks: []*api.Rank{
				{Rank: 0, Node: "n1", GpuUuids: []string{"GPU-n1-0"}, Port: 29500},
				{Rank: 1, Node: "n1", GpuUuids: []string{"GPU-n1-1"}, Port: 29501},
			}}
			if res := f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: 1, Allocation: a}}}); res.Placed != 1 {
				t.Fatalf("placement refused")
			}
			for _, u := range tt.updates {
				f.Apply(CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{Node: "n1", JobId: 1, Generation: 1, Tasks: u}})
			}
			j := f.Store.View().Job(1)
			if j.State != tt.want || j.HoldsResources() != tt.live {
				t.Fatalf("state = %s (holds resources %v), want %s (%v)", j.State, j.HoldsResources(), tt.want, tt.live)
			}
		})
	}
}

func TestUpdateFromStaleGenerationIsRefused(t *testing.T) {
	f := NewTestFSM()
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n1", 1, 8)})
	submit(f, "", &api.JobSpec{Script: "x"})
	f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: 1, Allocation: oneRankAlloc("n1", "GPU-n1-0", 29500)}}})
	res := f.Apply(CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{Node: "n1", JobId: 1, Generation: 7,
		Tasks: []*api.TaskStatus{{Rank: 0, State: api.TaskState_TASK_RUNNING}}}})
	if !errors.Is(res.Err, ErrStaleGeneration) {
		t.Fatalf("update with generation 7 of a generation-1 allocation: err = %v, want ErrStaleGeneration", res.Err)
	}
}

func TestCancelChecksOwner(t *testing.T) {
	f := NewTestFSM()
	submit(f, "", &api.JobSpec{Script: "x"})
	res := f.Apply(CmdCancelJobs, &api.CancelJobsCommand{Request: &api.CancelRequest{JobIds: []uint64{1}, User: "bob", Uid: 1001}})
	if !errors.Is(res.Err, ErrPermission) {
		t.Fatalf("bob cancelling alice's job: err = %v, want ErrPermission", res.Err)
	}
	res = f.Apply(CmdCancelJobs, &api.CancelJobsCommand{Request: &api.CancelRequest{JobIds: []uint64{1, 9}, Uid: 1000}})
	if !errors.Is(res.Err, ErrJobNotFound) || len(res.JobIDs) != 1 {
		t.Fatalf("cancel [1 9]: cancelled %v err %v, want [1] and ErrJobNotFound", res.JobIDs, res.Err)
	}
	if st := f.Store.View().Job(1).State; st != api.JobState_CANCELLED {
		t.Fatalf("state after cancel = %s, want CANCELLED", st)
	}
}

// TestSnapshotRestoreRoundTrip: a restored FSM holds exactly the state that
// was snapshotted, and keeps honouring idempotency tokens.
func TestSnapshotRestoreRoundTrip(t *testing.T) {
	f := NewTestFSM()
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n1", 2, 8)})
	for i := range 5 {
		submit(f, fmt.Sprint("t", i), &api.JobSpec{Script: "x"})
	}
	f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: 2, Allocation: oneRankAlloc("n1", "GPU-n1-0", 29500)}}})
	f.Apply(CmdCancelJobs, &api.CancelJobsCommand{Request: &api.CancelRequest{JobIds: []uint64{3}}})
	if res := f.Apply(CmdReservation, &api.ReservationCommand{Op: api.ReservationOp_RESERVATION_CREATE, NowUnixMs: 1000,
		Reservation: &api.Reservation{Name: "maint", StartUnixMs: 5000, EndUnixMs: 9000, Nodes: []string{"n1"}, Users: []string{"alice"},
			Flags: []string{api.ReservationIgnoreJobs}}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	before, err := f.Store.View().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g := NewTestFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(before))); err != nil {
		t.Fatal(err)
	}
	after, _ := g.Store.View().Marshal()
	if !bytes.Equal(before, after) {
		t.Fatal("restored state differs from the snapshot")
	}
	if r := g.Store.View().Reservation("maint"); r == nil || r.EndUnixMs != 9000 {
		t.Fatalf("restored Reservation(maint) = %v, want the one created", r)
	}
	g.index = f.index
	if id := submit(g, "t4", &api.JobSpec{Script: "x"}).JobID; id != 5 {
		t.Fatalf("after restore, resubmit of token t4 = job %d, want 5", id)
	}
	if id := submit(g, "new", &api.JobSpec{Script: "x"}).JobID; id != 6 {
		t.Fatalf("after restore, next job id = %d, want 6", id)
	}
}

// TestUndecodableEntryPanics: an entry the FSM cannot apply, and may not
// skip, stops the server with a message naming what and where.
func TestUndecodableEntryPanics(t *testing.T) {
	next := CommandType(1)
	for commands[next].apply != nil {
		next++
	}
	tests := []struct {
		name string
		data []byte
		want string // in the panic message
	}{
		{"empty", nil, "empty log entry at index 7"},
		{"unknown type", []byte{100, 1, 2}, "command type 100, which this server does not know and may not skip"},
		{"next unassigned type", []byte{byte(next)}, fmt.Sprintf("index 7 has command type %d", next)},
		{"highest type without the flag", []byte{0x7f}, "command type 127"},
		{"known type, bad payload", []byte{byte(CmdSubmitJob), 0xff, 0xff}, "cannot decode SubmitJob at index 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if msg, _ := r.(string); !strings.Contains(msg, tt.want) {
					t.Fatalf("ApplyEntry(7, %v) panicked with %v, want a message containing %q", tt.data, r, tt.want)
				}
			}()
			NewTestFSM().ApplyEntry(7, tt.data)
		})
	}
}

// TestUnknownIgnorableEntryIsSkipped: an entry of an unknown type flagged
// CmdIgnorable changes nothing but the applied index, is logged once per
// type, and the entries after it apply as usual.
func TestUnknownIgnorableEntryIsSkipped(t *testing.T) {
	var logs bytes.Buffer
	st := NewStore()
	f := NewFSM(st, slog.New(slog.NewTextHandler(&logs, nil)))
	apply := func(index uint64, c CommandType, msg proto.Message) *Result {
		t.Helper()
		data, err := Encode(c, msg)
		if err != nil {
			t.Fatal(err)
		}
		return f.ApplyEntry(index, data)
	}
	apply(1, CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n1", 1, 8)})
	apply(2, CmdSubmitJob, &api.SubmitJobCommand{Request: &api.SubmitRequest{Spec: &api.JobSpec{Script: "x"}}})
	before := st.View()
	wantHash, _ := before.Hash()

	entries := []struct {
		index uint64
		data  []byte
	}{
		{3, []byte{0x80 | 11, 1, 2, 3}},
		{4, []byte{0xff}},
		{5, []byte{0x80 | 11}},
	}
	for _, e := range entries {
		res := f.ApplyEntry(e.index, e.data)
		if res.Index != e.index || res.Err != nil || res.JobID != 0 {
			t.Fatalf("ApplyEntry(%d, type %d) = %+v, want index %d and nothing else", e.index, e.data[0], res, e.index)
		}
		v := st.View()
		if v.Index() != e.index {
			t.Fatalf("after skipping entry %d the state's index = %d, want %d", e.index, v.Index(), e.index)
		}
		same := *v
		same.index = before.index
		if h, _ := same.Hash(); h != wantHash || v.NodesVersion() != before.NodesVersion() {
			t.Fatalf("skipping entry %d changed the state beyond its index", e.index)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := st.WaitIndex(ctx, 5); err != nil {
		t.Fatalf("WaitIndex(5) after skipped entries: %v", err)
	}
	if got := strings.Count(logs.String(), "skipping log entries"); got != 2 {
		t.Fatalf("skipped types 139, 255, 139: %d log lines, want 2 (once per type):\n%s", got, logs.String())
	}
	for _, want := range []string{"command_type=139 index=3", "command_type=255 index=4"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if res := apply(6, CmdSubmitJob, &api.SubmitJobCommand{Request: &api.SubmitRequest{Spec: &api.JobSpec{Script: "x"}}}); res.JobID != 2 {
		t.Fatalf("submit after the skipped entries: job %d, want 2", res.JobID)
	}
}

// TestPropertyNoGPUOrCoreAllocatedTwice drives the FSM with random plans
// (some deliberately conflicting), task reports and cancels, and checks
// after every entry that no GPU and no core is held by two live
// allocations, no rank holds a core its node lacks or other than one core
// per CPU, and every acknowledged submit is still there.
func TestPropertyNoGPUOrCoreAllocatedTwice(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		f := NewTestFSM()
		nodes := rapid.IntRange(1, 3).Draw(rt, "nodes")
		for i := range nodes {
			f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode(fmt.Sprint("n", i), 4, 16)})
		}
		acked := map[uint64]bool{}
		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for range steps {
			snap := f.Store.View()
			switch rapid.IntRange(0, 4).Draw(rt, "op") {
			case 0:
				acked[submit(f, "", &api.JobSpec{Script: "x"}).JobID] = true
			case 1:
				if snap.NextJobID() == 1 {
					continue
				}
				id := rapid.Uint64Range(1, snap.NextJobID()-1).Draw(rt, "job")
				n := fmt.Sprint("n", rapid.IntRange(0, nodes-1).Draw(rt, "node"))
				gpu := fmt.Sprintf("GPU-%s-%d", n, rapid.IntRange(0, 3).Draw(rt, "gpu"))
				port := uint32(29500 + rapid.IntRange(0, 20).Draw(rt, "port"))
				a := oneRankAlloc(n, gpu, port)
				// Cores drawn past the node's 16, repeated, or fewer
				// than the rank's CPUs must all be refused.
				if cores := rapid.SliceOfN(rapid.Uint32Range(0, 17), 0, 3).Draw(rt, "cores"); len(cores) > 0 {
					a.Ranks[0].Cores = cores
					a.Ranks[0].Cpus = uint32(len(cores) + rapid.IntRange(-1, 0).Draw(rt, "short"))
				}
				f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: id, Allocation: a}}})
			case 2:
				for j := range snap.ActiveJobs() {
					if a := j.GetAllocation(); a.Live() {
						end := rapid.Bool().Draw(rt, "end")
						st := &api.TaskStatus{Rank: 0, State: api.TaskState_TASK_RUNNING}
						if end {
							st = &api.TaskStatus{Rank: 0, State: api.TaskState_TASK_EXITED, Reason: api.TaskEndReason_TASK_END_EXITED}
						}
						f.Apply(CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{Node: a.Ranks[0].Node, JobId: j.Id, Generation: a.Generation, Tasks: []*api.TaskStatus{st}}})
						break
					}
				}
			case 3:
				if snap.NextJobID() > 1 {
					id := rapid.Uint64Range(1, snap.NextJobID()-1).Draw(rt, "cancel")
					f.Apply(CmdCancelJobs, &api.CancelJobsCommand{Request: &api.CancelRequest{JobIds: []uint64{id}}})
				}
			case 4:
				// The leader's group commit: reports of several jobs (some
				// twice) in one entry.
				var batch []*api.TaskUpdateRequest
				for j := range snap.ActiveJobs() {
					a := j.GetAllocation()
					if !a.Live() {
						continue
					}
					for range rapid.IntRange(0, 2).Draw(rt, "reports") {
						st := &api.TaskStatus{Rank: 0, State: api.TaskState_TASK_RUNNING}
						if rapid.Bool().Draw(rt, "end") {
							st = &api.TaskStatus{Rank: 0, State: api.TaskState_TASK_EXITED, Reason: api.TaskEndReason_TASK_END_EXITED}
						}
						batch = append(batch, &api.TaskUpdateRequest{Node: a.Ranks[0].Node, JobId: j.Id, Generation: a.Generation, Tasks: []*api.TaskStatus{st}})
					}
				}
				f.Apply(CmdUpdateTasksBatch, &api.UpdateTasksBatchCommand{Requests: batch})
			}
			checkInvariants(rt, f.Store.View(), acked)
		}
	})
}

func checkInvariants(t *rapid.T, snap *View, acked map[uint64]bool) {
	holder := map[string]uint64{}
	cores := map[string]uint64{}
	for j := range snap.Jobs() {
		if !j.HoldsResources() {
			continue
		}
		for _, r := range j.Allocation.Ranks {
			for _, g := range r.GpuUuids {
				if other, ok := holder[g]; ok {
					t.Fatalf("GPU %s held by jobs %d and %d", g, other, j.Id)
				}
				holder[g] = j.Id
			}
			if len(r.Cores) != 0 && uint32(len(r.Cores)) != r.Cpus {
				t.Fatalf("job %d rank %d holds cores %v for %d CPUs", j.Id, r.Rank, r.Cores, r.Cpus)
			}
			for _, c := range r.Cores {
				if n := snap.Node(r.Node); c >= n.Cpus {
					t.Fatalf("job %d holds core %d of %s, which has %d", j.Id, c, r.Node, n.Cpus)
				}
				key := fmt.Sprint(r.Node, "/", c)
				if other, ok := cores[key]; ok {
					t.Fatalf("core %s held by jobs %d and %d", key, other, j.Id)
				}
				cores[key] = j.Id
			}
		}
	}
	for id := range acked {
		if snap.Job(id) == nil {
			t.Fatalf("acknowledged job %d is gone", id)
		}
	}
}

func twoNodeGang(f *TestFSM, spec *api.JobSpec) {
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n1", 2, 8)})
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n2", 2, 8)})
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n3", 2, 8)})
	submit(f, "", spec)
	place(f, 1, "n1", "n2")
}

func place(f *TestFSM, id uint64, n1, n2 string) *Result {
	a := &api.Allocation{Nodes: []string{n1, n2}, Ranks: []*api.Rank{
		{Rank: 0, Node: n1, GpuUuids: []string{"GPU-" + n1 + "-0"}, Port: 29500},
		{Rank: 1, Node: n2, GpuUuids: []string{"GPU-" + n2 + "-0"}, Port: 29500},
	}}
	return f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: id, Allocation: a}}})
}

func running(f *TestFSM, node string, rank uint32, gen uint64) {
	f.Apply(CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{Node: node, JobId: 1, Generation: gen,
		Tasks: []*api.TaskStatus{{Rank: rank, State: api.TaskState_TASK_RUNNING}}}})
}

// TestNodeDownRequeuesWholeGang: when one node of a running gang goes down
// the job returns to the queue with its restart count bumped; it is not
// placed again while its rank on the surviving node still runs, and then
// gets the next generation.
func TestNodeDownRequeuesWholeGang(t *testing.T) {
	f := NewTestFSM()
	twoNodeGang(f, &api.JobSpec{Script: "x"})
	running(f, "n1", 0, 1)
	running(f, "n2", 1, 1)
	f.Apply(CmdNodeState, &api.NodeStateCommand{Name: "n2", State: api.NodeState_DOWN, Reason: "gossip: dead"})
	j := f.Store.View().Job(1)
	if j.State != api.JobState_PENDING || j.RestartCount != 1 || j.Reason != ReasonRequeued {
		t.Fatalf("after node down: state %s restarts %d reason %q, want PENDING 1 Requeued", j.State, j.RestartCount, j.Reason)
	}
	if !j.HoldsResources() {
		t.Fatal("rank 0 on n1 still runs, but the job no longer holds its resources")
	}
	if res := place(f, 1, "n1", "n3"); res.Placed != 0 {
		t.Fatal("requeued gang placed again while a rank of its last allocation still runs")
	}
	f.Apply(CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{Node: "n1", JobId: 1, Generation: 1,
		Tasks: []*api.TaskStatus{{Rank: 0, State: api.TaskState_TASK_EXITED, Reason: api.TaskEndReason_TASK_END_KILLED, Signal: 15}}}})
	if j := f.Store.View().Job(1); j.State != api.JobState_PENDING || j.RestartCount != 1 {
		t.Fatalf("after the survivor's kill report: %s with %d restarts, want PENDING with 1", j.State, j.RestartCount)
	}
	if res := place(f, 1, "n1", "n3"); res.Placed != 1 {
		t.Fatal("requeued gang not placed once its old ranks were gone")
	}
	if g := f.Store.View().Job(1).Allocation.Generation; g != 2 {
		t.Fatalf("generation after requeue = %d, want 2", g)
	}
}

func TestRequeuePolicy(t *testing.T) {
	tests := []struct {
		name     string
		spec     *api.JobSpec
		restarts uint32
		want     api.JobState
	}{
		{"batch default", &api.JobSpec{Script: "x"}, 0, api.JobState_PENDING},
		{"no-requeue", &api.JobSpec{Script: "x", Requeue: proto.Bool(false)}, 0, api.JobState_NODE_FAIL},
		{"srun default", &api.JobSpec{Argv: []string{"true"}}, 0, api.JobState_NODE_FAIL},
		{"limit reached", &api.JobSpec{Script: "x", MaxRestarts: proto.Uint32(2)}, 2, api.JobState_NODE_FAIL},
	}
	// A node failure; the same policy applies to a rank's failure, below.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewTestFSM()
			twoNodeGang(f, tt.spec)
			if tt.restarts > 0 {
				// Pretend earlier requeues: restart count is part of the job.
				f.Store.publish(func() *View {
					tx := f.Store.View().txn(f.index)
					j := cloneJob(tx.job(1))
					j.RestartCount = tt.restarts
					tx.putJob(j)
					return tx.commit()
				}())
			}
			f.Apply(CmdNodeState, &api.NodeStateCommand{Name: "n2", State: api.NodeState_DOWN})
			if got := f.Store.View().Job(1).State; got != tt.want {
				t.Fatalf("after node down: %s, want %s", got, tt.want)
			}
		})
	}
}

// TestRankFailureRequeues: when a rank fails (as a node's peers do when it
// dies mid-collective) a requeueable gang restarts, up to its limit; a
// timed-out one does not.
func TestRankFailureRequeues(t *testing.T) {
	tests := []struct {
		name   string
		spec   *api.JobSpec
		reason api.TaskEndReason
		want   api.JobState
	}{
		{"exit 1, batch default", &api.JobSpec{Script: "x"}, api.TaskEndReason_TASK_END_EXITED, api.JobState_PENDING},
		{"exit 1, no-requeue", &api.JobSpec{Script: "x", Requeue: proto.Bool(false)}, api.TaskEndReason_TASK_END_EXITED, api.JobState_FAILED},
		{"exit 1, no restarts left", &api.JobSpec{Script: "x", MaxRestarts: proto.Uint32(0)}, api.TaskEndReason_TASK_END_EXITED, api.JobState_FAILED},
		{"timeout", &api.JobSpec{Script: "x"}, api.TaskEndReason_TASK_END_TIMEOUT, api.JobState_TIMEOUT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewTestFSM()
			twoNodeGang(f, tt.spec)
			f.Apply(CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{Node: "n1", JobId: 1, Generation: 1,
				Tasks: []*api.TaskStatus{{Rank: 0, State: api.TaskState_TASK_EXITED, Reason: tt.reason, ExitCode: 1}}}})
			if got := f.Store.View().Job(1).State; got != tt.want {
				t.Fatalf("after rank 0 ended (%s): %s, want %s", tt.reason, got, tt.want)
			}
		})
	}
}

// TestMalformedCommandIsRefused: a command that decodes but lacks what
// its type needs is refused with ErrMalformedCommand on every replica
// alike, changing nothing but the applied index, instead of crashing them
// all (FuzzApplyEntry found these).
func TestMalformedCommandIsRefused(t *testing.T) {
	tests := []struct {
		name string
		c    CommandType
		msg  proto.Message
	}{
		{"submit without request", CmdSubmitJob, &api.SubmitJobCommand{}},
		{"submit without spec", CmdSubmitJob, &api.SubmitJobCommand{Request: &api.SubmitRequest{User: "alice"}}},
		{"batch with a request without spec", CmdSubmitJobs, &api.SubmitJobsCommand{Requests: []*api.SubmitRequest{{}}}},
		{"task update without request", CmdUpdateTasks, &api.UpdateTasksCommand{}},
		{"node without name", CmdRegisterNode, &api.RegisterNodeCommand{}},
		{"step without request", CmdCreateStep, &api.CreateStepCommand{}},
		{"step without spec", CmdCreateStep, &api.CreateStepCommand{Request: &api.CreateStepRequest{JobId: 1}}},
		{"step cancel without request", CmdCancelSteps, &api.CancelStepsCommand{}},
		{"allocation end without request", CmdCompleteAllocation, &api.CompleteAllocationCommand{}},
		{"reservation command without reservation", CmdReservation, &api.ReservationCommand{Op: api.ReservationOp_RESERVATION_CREATE}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewTestFSM()
			submit(f, "a", &api.JobSpec{Script: "x"})
			before, _ := f.Store.View().Marshal()
			res := f.Apply(tt.c, tt.msg)
			if !errors.Is(res.Err, ErrMalformedCommand) {
				t.Fatalf("Apply(%s) err = %v, want ErrMalformedCommand", tt.c, res.Err)
			}
			if f.Store.View().Index() != 2 {
				t.Fatalf("applied index = %d, want 2", f.Store.View().Index())
			}
			after := *f.Store.View()
			after.index = 1
			if b, _ := after.Marshal(); !bytes.Equal(b, before) {
				t.Fatalf("Apply(%s) changed the state", tt.c)
			}
		})
	}
	// A cancel without a request names no job and cancels none.
	f := NewTestFSM()
	submit(f, "a", &api.JobSpec{Script: "x"})
	if res := f.Apply(CmdCancelJobs, &api.CancelJobsCommand{}); res.Err != nil || len(res.JobIDs) != 0 {
		t.Fatalf("cancel without request = %+v, want nothing cancelled", res)
	}
}
