package state

import (
	"slices"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
)

func TestSubmitExpandsArray(t *testing.T) {
	tests := []struct {
		array string
		want  []uint32
	}{
		{"0-3%2", []uint32{0, 1, 2, 3}},
		{"1,3,5-7", []uint32{1, 3, 5, 6, 7}},
		{"0-8:4", []uint32{0, 4, 8}},
	}
	for _, tt := range tests {
		t.Run(tt.array, func(t *testing.T) {
			f := NewTestFSM()
			first := submit(f, "tok", &api.JobSpec{Script: "x", Array: tt.array}).JobID
			snap := f.Store.View()
			var got []uint32
			for j := range snap.Jobs() {
				if j.ArrayJobId != first {
					t.Fatalf("job %d: array job id %d, want %d", j.Id, j.ArrayJobId, first)
				}
				got = append(got, j.ArrayTaskId)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("--array=%s: tasks %v, want %v", tt.array, got, tt.want)
			}
			if again := submit(f, "tok", &api.JobSpec{Script: "x", Array: tt.array}).JobID; again != first {
				t.Fatalf("retried array submit = %d, want %d", again, first)
			}
			if next := submit(f, "", &api.JobSpec{Script: "x"}).JobID; next != first+uint64(len(tt.want)) {
				t.Fatalf("next job id = %d, want %d", next, first+uint64(len(tt.want)))
			}
		})
	}
}

func TestSubmitBadArrayFails(t *testing.T) {
	for _, a := range []string{"x", "5-1", "0-3%0", "0-3:0"} {
		f := NewTestFSM()
		id := submit(f, "", &api.JobSpec{Script: "x", Array: a}).JobID
		if j := f.Store.View().Job(id); j.State != api.JobState_FAILED {
			t.Errorf("--array=%s: state %s, want FAILED", a, j.State)
		}
	}
}

func TestHoldAndRelease(t *testing.T) {
	f := NewTestFSM()
	id := submit(f, "", &api.JobSpec{Script: "x", Hold: true}).JobID
	if j := f.Store.View().Job(id); j.Reason != ReasonHeld {
		t.Fatalf("--hold: reason %q, want %q", j.Reason, ReasonHeld)
	}
	if res := f.Apply(CmdHoldJobs, &api.HoldJobsCommand{JobIds: []uint64{id}, Release: true, Uid: 2000}); res.Err == nil {
		t.Fatalf("another user released the job")
	}
	f.Apply(CmdHoldJobs, &api.HoldJobsCommand{JobIds: []uint64{id}, Release: true, Uid: 1000})
	if j := f.Store.View().Job(id); j.Spec.Hold || j.Reason != ReasonNone {
		t.Fatalf("after release: hold=%v reason %q", j.Spec.Hold, j.Reason)
	}
	f.Apply(CmdHoldJobs, &api.HoldJobsCommand{JobIds: []uint64{id}})
	if j := f.Store.View().Job(id); !j.Spec.Hold {
		t.Fatalf("scontrol hold did not hold")
	}
}

func TestPlanPreemptsAndRequeues(t *testing.T) {
	f := NewTestFSM()
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n1", 1, 8)})
	no := false
	victim := submit(f, "", &api.JobSpec{Script: "x"}).JobID
	fixed := submit(f, "", &api.JobSpec{Argv: []string{"x"}, Requeue: &no}).JobID
	f.Apply(CmdApplyPlan, &api.PlanCommand{NowUnixMs: 1000, Placements: []*api.Placement{
		{JobId: victim, Allocation: oneRankAlloc("n1", "GPU-n1-0", 29500)},
		{JobId: fixed, Allocation: &api.Allocation{Ranks: []*api.Rank{{Node: "n1", Cpus: 1, Port: 29502}}, Nodes: []string{"n1"}}},
	}})
	high := submit(f, "", &api.JobSpec{Script: "x", Qos: "high"}).JobID
	f.Apply(CmdApplyPlan, &api.PlanCommand{NowUnixMs: 5000, Preemptions: []*api.Preemption{
		{JobId: victim, ForJobId: high}, {JobId: fixed, ForJobId: high},
	}})
	snap := f.Store.View()
	v := snap.Job(victim)
	if v.State != api.JobState_PENDING || v.Reason != ReasonPreempted || v.RestartCount != 0 {
		t.Fatalf("victim: %s %q restarts %d, want PENDING Preempted 0", v.State, v.Reason, v.RestartCount)
	}
	// It keeps the service its run attained: 1 GPU from 1 s to 5 s.
	if v.AttainedGpuMs != 4000 || v.PreemptCount != 1 {
		t.Fatalf("victim: attained %d GPU-ms, preempted %d times; want 4000 and 1", v.AttainedGpuMs, v.PreemptCount)
	}
	if !v.HoldsResources() {
		t.Fatalf("victim released its GPU before its ranks reported the end")
	}
	if s := snap.Job(fixed).State; s != api.JobState_PREEMPTED {
		t.Fatalf("non-requeueable victim: %s, want PREEMPTED", s)
	}
	// A new allocation of the victim gets the next generation.
	f.Apply(CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{Node: "n1", JobId: victim, Generation: 1,
		Tasks: []*api.TaskStatus{{Rank: 0, State: api.TaskState_TASK_EXITED, Reason: api.TaskEndReason_TASK_END_KILLED}}}})
	f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: victim, Allocation: oneRankAlloc("n1", "GPU-n1-0", 29503)}}})
	if g := f.Store.View().Job(victim).Allocation.Generation; g != 2 {
		t.Fatalf("re-placed victim generation %d, want 2", g)
	}
}

// TestRequeueJobs: scontrol requeue sends a running gang back to the queue
// holding its GPUs until its ranks have ended, then it runs again as the
// next generation; pending, foreign and --no-requeue jobs are refused.
func TestRequeueJobs(t *testing.T) {
	f := NewTestFSM()
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n1", 1, 8)})
	no := false
	run := submit(f, "", &api.JobSpec{Script: "x"}).JobID
	fixed := submit(f, "", &api.JobSpec{Script: "x", Requeue: &no}).JobID
	waiting := submit(f, "", &api.JobSpec{Script: "x"}).JobID
	f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{
		{JobId: run, Allocation: oneRankAlloc("n1", "GPU-n1-0", 29500)},
		{JobId: fixed, Allocation: &api.Allocation{Ranks: []*api.Rank{{Node: "n1", Cpus: 1, Port: 29502}}, Nodes: []string{"n1"}}},
	}})
	if res := f.Apply(CmdRequeueJobs, &api.RequeueJobsCommand{JobIds: []uint64{run}, Uid: 2000}); res.Err == nil {
		t.Fatal("another user requeued the job")
	}
	res := f.Apply(CmdRequeueJobs, &api.RequeueJobsCommand{JobIds: []uint64{run, fixed, waiting}, Uid: 1000})
	if !slices.Equal(res.JobIDs, []uint64{run}) || res.Err == nil ||
		!strings.Contains(res.Err.Error(), "--no-requeue") || !strings.Contains(res.Err.Error(), "already pending") {
		t.Fatalf("requeue: ids %v err %v; want only the running job, and errors for the other two", res.JobIDs, res.Err)
	}
	j := f.Store.View().Job(run)
	if j.State != api.JobState_PENDING || j.Reason != ReasonRequeued || j.RestartCount != 1 || !j.HoldsResources() {
		t.Fatalf("requeued job: %s %q restarts %d holds %v; want PENDING Requeued 1, still holding its GPU", j.State, j.Reason, j.RestartCount, j.HoldsResources())
	}
	f.Apply(CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{Node: "n1", JobId: run, Generation: 1,
		Tasks: []*api.TaskStatus{{Rank: 0, State: api.TaskState_TASK_EXITED, Reason: api.TaskEndReason_TASK_END_KILLED}}}})
	if j := f.Store.View().Job(run); j.HoldsResources() || j.State != api.JobState_PENDING {
		t.Fatalf("after its rank ended: %s holds %v; want PENDING and free", j.State, j.HoldsResources())
	}
	f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: run, Allocation: oneRankAlloc("n1", "GPU-n1-0", 29503)}}})
	if g := f.Store.View().Job(run).Allocation.Generation; g != 2 {
		t.Fatalf("re-placed job generation %d, want 2", g)
	}
}
