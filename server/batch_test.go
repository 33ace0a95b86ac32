package server

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/pki"
)

// TestTaskReportsGroupCommitted: reports that reach the leader together,
// and are committed together, each get their own answer: the index of an
// entry whose state shows the report, or the refusal of their own (a
// stale generation), never a neighbour's.
func TestTaskReportsGroupCommitted(t *testing.T) {
	e := newAuthzEnv(t)
	const jobs = 8
	var ids []uint64
	for range jobs {
		ids = append(ids, e.submit(alice, &api.SubmitRequest{Spec: &api.JobSpec{Script: "#!/bin/sh\n"}}))
	}
	store := e.s.raft.Store()
	harness.WaitFor(t, "every job placed on node1", 10*time.Second, func() bool {
		for _, id := range ids {
			if store.View().Job(id).GetAllocation() == nil {
				return false
			}
		}
		return true
	})
	agent := apirpc.NewAgentServiceClient(e.daemon(pki.RoleAgent, "node1"))
	type answer struct {
		index uint64
		err   error
	}
	answers := make([]answer, jobs+1)
	var wg sync.WaitGroup
	for i := range jobs + 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := ids[i%jobs]
			gen := store.View().Job(id).Allocation.Generation
			if i == jobs {
				gen += 5 // a stale agent's report, among the others
			}
			r, err := agent.UpdateTasks(ctx(t), &api.TaskUpdateRequest{Node: "node1", JobId: id, Generation: gen,
				Tasks: []*api.TaskStatus{{Rank: 0, State: api.TaskState_TASK_RUNNING, StartedUnixMs: 1}}})
			answers[i] = answer{r.GetIndex(), err}
		}()
	}
	wg.Wait()
	for i, a := range answers[:jobs] {
		if a.err != nil {
			t.Fatalf("report of job %d: %v", ids[i], a.err)
		}
		v, err := store.WaitIndex(ctx(t), a.index)
		if err != nil {
			t.Fatal(err)
		}
		if st := v.Job(ids[i]).Allocation.Tasks[0].State; st != api.TaskState_TASK_RUNNING {
			t.Errorf("job %d at the index its report returned (%d): task 0 %s, want TASK_RUNNING", ids[i], a.index, st)
		}
	}
	if code := status.Code(answers[jobs].err); code != codes.FailedPrecondition {
		t.Errorf("stale generation's report: %v, want %s", answers[jobs].err, codes.FailedPrecondition)
	}
}
