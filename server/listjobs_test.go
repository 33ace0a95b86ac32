package server

import (
	"slices"
	"testing"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
)

// TestListJobsPagesSummaries checks that a listing carries no script or
// environment, even to the owner, that pages in id order cover every job
// once, and that the user and state filters hold on every page.
func TestListJobsPagesSummaries(t *testing.T) {
	e := newAuthzEnv(t)
	spec := &api.JobSpec{Name: "p", Script: "#!/bin/sh\nbig-script\n", Env: map[string]string{"K": "v"},
		Output: "/home/alice/out", Hold: true}
	var aliceIDs []uint64
	for i := range 7 {
		uid := alice
		if i%3 == 2 {
			uid = bob
		}
		id := e.submit(uid, &api.SubmitRequest{Spec: spec})
		if uid == alice {
			aliceIDs = append(aliceIDs, id)
		}
	}
	jobs := apirpc.NewJobServiceClient(e.user(alice))

	pages := func(req *api.ListJobsRequest) (ids []uint64, n int) {
		t.Helper()
		for {
			resp, err := jobs.ListJobs(ctx(t), req)
			if err != nil {
				t.Fatalf("ListJobs(%v): %v", req, err)
			}
			n++
			if req.Limit > 0 && len(resp.Jobs) > int(req.Limit) {
				t.Fatalf("ListJobs(%v) returned %d jobs, over the limit", req, len(resp.Jobs))
			}
			for _, j := range resp.Jobs {
				if j.Spec.GetScript() != "" || len(j.Spec.GetEnv()) != 0 || j.Secret != "" {
					t.Errorf("job %d in a listing carries script %q env %v secret %q, want none", j.Id, j.Spec.GetScript(), j.Spec.GetEnv(), j.Secret)
				}
				if j.User == "alice" && j.Spec.GetOutput() == "" {
					t.Errorf("alice's job %d in her listing lost its output path", j.Id)
				}
				if j.User == "bob" && j.Spec.GetOutput() != "" {
					t.Errorf("bob's job %d in alice's listing shows output path %q", j.Id, j.Spec.GetOutput())
				}
				ids = append(ids, j.Id)
			}
			if resp.NextAfterId == 0 {
				return ids, n
			}
			req.AfterId = resp.NextAfterId
		}
	}
	all, n := pages(&api.ListJobsRequest{Limit: 2})
	if want := []uint64{1, 2, 3, 4, 5, 6, 7}; !slices.Equal(all, want) || n != 4 {
		t.Errorf("pages of 2: ids %v in %d pages, want %v in 4", all, n, want)
	}
	mine, _ := pages(&api.ListJobsRequest{User: "alice", Limit: 3, States: []api.JobState{api.JobState_PENDING}})
	if !slices.Equal(mine, aliceIDs) {
		t.Errorf("alice's pending jobs in pages of 3: %v, want %v", mine, aliceIDs)
	}
	some, _ := pages(&api.ListJobsRequest{JobIds: []uint64{6, 2, 6, 99, 4}, Limit: 1})
	if want := []uint64{2, 4, 6}; !slices.Equal(some, want) {
		t.Errorf("jobs 6,2,6,99,4 in pages of 1: %v, want %v", some, want)
	}
	whole, _ := pages(&api.ListJobsRequest{})
	if len(whole) != 7 {
		t.Errorf("listing without a limit: %d jobs, want 7", len(whole))
	}
	// The full job is still there for GetJob.
	got, err := jobs.GetJob(ctx(t), &api.GetJobRequest{JobId: aliceIDs[0]})
	if err != nil || got.Job.Spec.Script == "" || got.Job.Spec.Env["K"] != "v" {
		t.Errorf("GetJob of alice's own job: %v, %v: want its script and environment", got, err)
	}
}
