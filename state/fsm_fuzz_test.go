package state

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

// fuzzFSM returns an FSM holding two nodes, a running job on one of them
// and a pending one, at index 4.
func fuzzFSM() *TestFSM {
	f := NewTestFSM()
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n1", 2, 8), NowUnixMs: 1000})
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n2", 2, 8), NowUnixMs: 1000})
	f.Apply(CmdSubmitJobs, &api.SubmitJobsCommand{NowUnixMs: 1000, Requests: []*api.SubmitRequest{
		{Spec: &api.JobSpec{Script: "x", GpusPerNode: 1}, User: "alice", Uid: 1000, Gid: 1000, IdempotencyToken: "a"},
		{Spec: &api.JobSpec{Script: "y", Array: "0-3"}, User: "bob", Uid: 1001, Gid: 1001, IdempotencyToken: "b"},
	}})
	f.Apply(CmdApplyPlan, &api.PlanCommand{NowUnixMs: 2000, SnapshotIndex: 3,
		Placements: []*api.Placement{{JobId: 1, Allocation: oneRankAlloc("n1", "GPU-n1-0", 29500)}}})
	return f
}

// applyOrPanic applies data as the entry at index and returns the result,
// or the panic's message.
func applyOrPanic(f *TestFSM, index uint64, data []byte) (res *Result, panicked string) {
	defer func() {
		if r := recover(); r != nil {
			panicked = fmt.Sprint(r)
		}
	}()
	return f.ApplyEntry(index, data), ""
}

// The panics ApplyEntry documents: an entry it cannot decode, and may not
// skip, stops the server.
var documentedPanics = []string{"state: empty log entry at index ", "state: log entry at index ", "state: cannot decode "}

// FuzzApplyEntry applies arbitrary bytes as a committed entry to a small
// cluster's state. Properties: it panics only as documented for an
// undecodable entry; otherwise two replicas that apply it reach the same
// state, which records the entry's index, survives a snapshot and restore
// unchanged, and goes on taking commands.
func FuzzApplyEntry(f *testing.F) {
	seed := func(c CommandType, msg proto.Message) {
		b, err := Encode(c, msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(CmdSubmitJob, &api.SubmitJobCommand{NowUnixMs: 3000, Request: &api.SubmitRequest{Spec: &api.JobSpec{Script: "z", NodesMin: 2, GpusPerNode: 2}, User: "carol", Uid: 1002}})
	seed(CmdCancelJobs, &api.CancelJobsCommand{NowUnixMs: 3000, Request: &api.CancelRequest{JobIds: []uint64{1, 2, 99}, User: "alice", Uid: 1000}})
	seed(CmdApplyPlan, &api.PlanCommand{NowUnixMs: 3000, Placements: []*api.Placement{{JobId: 2, Allocation: oneRankAlloc("n2", "GPU-n2-1", 29501)}},
		Pending: []*api.PendingReason{{JobId: 2, Reason: "Resources"}}})
	seed(CmdUpdateTasks, &api.UpdateTasksCommand{NowUnixMs: 3000, Request: &api.TaskUpdateRequest{Node: "n1", JobId: 1, Generation: 1,
		Tasks: []*api.TaskStatus{{Rank: 0, State: api.TaskState_TASK_EXITED, ExitCode: 3}}}})
	seed(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n3", 1, 4), NowUnixMs: 3000})
	seed(CmdNodeState, &api.NodeStateCommand{Name: "n1", State: api.NodeState_DOWN, Reason: "dead", NowUnixMs: 3000})
	seed(CmdServerMember, &api.ServerMembershipCommand{Server: &api.ServerInfo{Id: "s2", RpcAddr: "127.0.0.1:1"}})
	seed(CmdHoldJobs, &api.HoldJobsCommand{JobIds: []uint64{2}, Uid: 1001, NowUnixMs: 3000})
	seed(CmdRequeueJobs, &api.RequeueJobsCommand{JobIds: []uint64{1}, NowUnixMs: 3000})
	seed(CmdCreateStep, &api.CreateStepCommand{NowUnixMs: 3000, Request: &api.CreateStepRequest{JobId: 1,
		Spec: &api.JobSpec{Argv: []string{"hostname"}, Ntasks: 2}, Uid: 1000}})
	seed(CmdCancelSteps, &api.CancelStepsCommand{NowUnixMs: 3000, Request: &api.CancelStepsRequest{JobId: 1, StepIds: []uint32{0}, Signal: 10}})
	seed(CmdCompleteAllocation, &api.CompleteAllocationCommand{NowUnixMs: 3000, Request: &api.CompleteAllocationRequest{JobId: 1, ExitCode: 1}})
	seed(CmdUpdateJob, &api.UpdateJobCommand{NowUnixMs: 3000, Uid: 1000, Request: &api.UpdateJobRequest{JobId: 2, TimeLimitS: proto.Int64(60), Name: proto.String("u")}})
	seed(CmdUpdateJob, &api.UpdateJobCommand{NowUnixMs: 3000})
	seed(CmdReservation, &api.ReservationCommand{Op: api.ReservationOp_RESERVATION_CREATE, NowUnixMs: 3000, Reservation: &api.Reservation{
		Name: "r", StartUnixMs: 4000, EndUnixMs: 9000, Nodes: []string{"n1"}, Users: []string{"alice"}, Flags: []string{"IGNORE_JOBS"}}})
	seed(CmdReservation, &api.ReservationCommand{Op: api.ReservationOp_RESERVATION_CREATE, NowUnixMs: 3000, Reservation: &api.Reservation{
		Name: "c", StartUnixMs: 4000, EndUnixMs: 9000, NodeCount: 1, Accounts: []string{"p"}}})
	f.Add([]byte{})
	f.Add([]byte{byte(CmdSubmitJob), 0xff})
	f.Add([]byte{0x80 | 42, 1, 2, 3})

	f.Fuzz(func(t *testing.T, data []byte) {
		const index = 5
		a, b := fuzzFSM(), fuzzFSM()
		resA, panicA := applyOrPanic(a, index, data)
		_, panicB := applyOrPanic(b, index, data)
		if panicA != panicB {
			t.Fatalf("two replicas disagree: panic %q and %q", panicA, panicB)
		}
		if panicA != "" {
			for _, p := range documentedPanics {
				if strings.HasPrefix(panicA, p) {
					return
				}
			}
			t.Fatalf("ApplyEntry(%d, %x) panicked with %q, which is not a documented panic for an undecodable entry", index, data, panicA)
		}
		if resA == nil || resA.Index != index || a.Store.View().Index() != index {
			t.Fatalf("ApplyEntry(%d) = %+v, state index %d; want both %d", index, resA, a.Store.View().Index(), index)
		}
		snapA, err := a.Store.View().Marshal()
		if err != nil {
			t.Fatal(err)
		}
		snapB, err := b.Store.View().Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(snapA, snapB) {
			t.Fatalf("two replicas applying %x reached different states", data)
		}
		r := NewTestFSM()
		if err := r.Restore(bytes.NewReader(snapA)); err != nil {
			t.Fatalf("restore of the state after %x: %v", data, err)
		}
		if again, err := r.Store.View().Marshal(); err != nil || !bytes.Equal(again, snapA) {
			t.Fatalf("snapshot after %x changed on a restore (%v)", data, err)
		}
		// The state still takes commands.
		next, _ := Encode(CmdSubmitJob, &api.SubmitJobCommand{NowUnixMs: 4000,
			Request: &api.SubmitRequest{Spec: &api.JobSpec{Script: "w"}, User: "dave", Uid: 1003, IdempotencyToken: "after"}})
		if res, p := applyOrPanic(a, index+1, next); p != "" || res.Err != nil || res.JobID == 0 {
			t.Fatalf("a submit after %x: %+v, panic %q", data, res, p)
		}
	})
}
