package state

import (
	"errors"
	"testing"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

// TestUpdateTasksBatchEqualsEntries: a batch of task reports leaves a job
// as the same reports committed one entry each would, and each report
// gets its own refusal.
func TestUpdateTasksBatchEqualsEntries(t *testing.T) {
	report := func(node string, rank uint32, gen uint64, st api.TaskState) *api.TaskUpdateRequest {
		ts := &api.TaskStatus{Rank: rank, State: st, StartedUnixMs: 1500}
		if st == api.TaskState_TASK_EXITED {
			ts.Reason, ts.EndedUnixMs = api.TaskEndReason_TASK_END_EXITED, 1900
		}
		return &api.TaskUpdateRequest{Node: node, JobId: 1, Generation: gen, Tasks: []*api.TaskStatus{ts}}
	}
	reports := []*api.TaskUpdateRequest{
		report("n1", 0, 1, api.TaskState_TASK_RUNNING),
		report("n2", 1, 7, api.TaskState_TASK_RUNNING), // stale generation: refused
		report("n2", 1, 1, api.TaskState_TASK_RUNNING),
		report("n1", 0, 1, api.TaskState_TASK_EXITED),
		report("n2", 1, 1, api.TaskState_TASK_EXITED),
		report("n2", 1, 1, api.TaskState_TASK_RUNNING), // after its end: ignored
	}
	one, batched := NewTestFSM(), NewTestFSM()
	for _, f := range []*TestFSM{one, batched} {
		twoNodeGang(f, &api.JobSpec{Script: "x"})
	}
	var singleErrs []error
	for _, r := range reports {
		singleErrs = append(singleErrs, one.Apply(CmdUpdateTasks, &api.UpdateTasksCommand{Request: r, NowUnixMs: 2000}).Err)
	}
	before := batched.Store.View().Index()
	res := batched.Apply(CmdUpdateTasksBatch, &api.UpdateTasksBatchCommand{Requests: reports, NowUnixMs: 2000})
	if len(res.Errs) != len(reports) {
		t.Fatalf("batch of %d reports: %d errors, want one each", len(reports), len(res.Errs))
	}
	for i := range reports {
		if (res.Errs[i] == nil) != (singleErrs[i] == nil) {
			t.Errorf("report %d: batch err = %v, one entry's err = %v", i, res.Errs[i], singleErrs[i])
		}
	}
	if !errors.Is(res.Errs[1], ErrStaleGeneration) {
		t.Errorf("stale report in a batch: err = %v, want ErrStaleGeneration", res.Errs[1])
	}
	want, got := proto.Clone(one.Store.View().Job(1)).(*api.Job), proto.Clone(batched.Store.View().Job(1)).(*api.Job)
	want.ModifyIndex, got.ModifyIndex = 0, 0 // the batch is one entry, not six
	if !proto.Equal(got, want) {
		t.Fatalf("job after the batch:\n%v\nwant, as after one entry each:\n%v", got, want)
	}
	if got.State != api.JobState_COMPLETED {
		t.Fatalf("job state = %s, want COMPLETED", got.State)
	}
	if after := batched.Store.View().Index(); after != before+1 {
		t.Fatalf("index after the batch = %d, want %d: one entry", after, before+1)
	}
}
