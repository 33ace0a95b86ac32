package state

import (
	"testing"

	"github.com/loomhpc/loom/api"
)

// TestUsedGPUAccumulates follows one rank's used GPU time over reports:
// repeats and figures that go backwards count nothing, an end report adds
// its last growth, and a requeued job keeps what its first run used.
func TestUsedGPUAccumulates(t *testing.T) {
	f := NewTestFSM()
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n1", 1, 8)})
	id := submit(f, "", &api.JobSpec{Script: "x"}).JobID
	f.Apply(CmdApplyPlan, &api.PlanCommand{NowUnixMs: 1000, Placements: []*api.Placement{
		{JobId: id, Allocation: oneRankAlloc("n1", "GPU-n1-0", 29500)},
	}})
	report := func(gen uint64, st api.TaskState, used uint64) {
		t.Helper()
		ts := &api.TaskStatus{Rank: 0, State: st, UsedGpuMs: used}
		if st == api.TaskState_TASK_EXITED {
			ts.Reason, ts.ExitCode = api.TaskEndReason_TASK_END_EXITED, 1
		}
		res := f.Apply(CmdUpdateTasks, &api.UpdateTasksCommand{NowUnixMs: 9000, Request: &api.TaskUpdateRequest{
			Node: "n1", JobId: id, Generation: gen, Tasks: []*api.TaskStatus{ts}}})
		if res.Err != nil {
			t.Fatalf("report gen %d %s used %d: %v", gen, st, used, res.Err)
		}
	}
	steps := []struct {
		gen       uint64
		state     api.TaskState
		used      uint64
		wantJob   uint64
		wantState api.JobState
	}{
		{1, api.TaskState_TASK_RUNNING, 0, 0, api.JobState_RUNNING},
		{1, api.TaskState_TASK_RUNNING, 1500, 1500, api.JobState_RUNNING},
		{1, api.TaskState_TASK_RUNNING, 1500, 1500, api.JobState_RUNNING}, // a repeat
		{1, api.TaskState_TASK_RUNNING, 1200, 1500, api.JobState_RUNNING}, // late, smaller
		{1, api.TaskState_TASK_EXITED, 2500, 2500, api.JobState_PENDING},  // failed: requeued
		{1, api.TaskState_TASK_EXITED, 4000, 2500, api.JobState_PENDING},  // ends are final
	}
	for i, s := range steps {
		report(s.gen, s.state, s.used)
		j := f.Store.View().Job(id)
		if j.UsedGpuMs != s.wantJob || j.State != s.wantState {
			t.Fatalf("after report %d (%s, %d ms): job used %d ms, %s; want %d ms, %s",
				i, s.state, s.used, j.UsedGpuMs, j.State, s.wantJob, s.wantState)
		}
	}
	// The second generation's rank starts from 0 again; the job adds it.
	f.Apply(CmdApplyPlan, &api.PlanCommand{NowUnixMs: 10000, Placements: []*api.Placement{
		{JobId: id, Allocation: oneRankAlloc("n1", "GPU-n1-0", 29501)},
	}})
	report(2, api.TaskState_TASK_RUNNING, 700)
	if got := f.Store.View().Job(id).UsedGpuMs; got != 3200 {
		t.Fatalf("after the second generation's report: job used %d ms, want 3200", got)
	}
	// A report of the replaced generation is refused and adds nothing.
	res := f.Apply(CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{
		Node: "n1", JobId: id, Generation: 1, Tasks: []*api.TaskStatus{{Rank: 0, State: api.TaskState_TASK_RUNNING, UsedGpuMs: 9999}}}})
	if res.Err == nil {
		t.Fatalf("a stale generation's report was taken")
	}
	if got := f.Store.View().Job(id).UsedGpuMs; got != 3200 {
		t.Fatalf("after a stale report: job used %d ms, want 3200", got)
	}
}
