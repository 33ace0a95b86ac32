package server

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
)

// TestListJobsFastPathMatchesSummary checks that a listing through gRPC,
// written from encoded summaries, carries exactly what summary (or
// queueSummary, in the queue view) builds for the caller (the owner's jobs whole, another user's with private fields
// blanked), and that a job's change shows in the next listing rather than
// its summary from before.
func TestListJobsFastPathMatchesSummary(t *testing.T) {
	e := newAuthzEnv(t)
	spec := &api.JobSpec{Name: "c", Script: "#!/bin/sh\nsecret-script\n", Env: map[string]string{"K": "v"},
		Output: "/home/x/out", WorkingDir: "/home/x", Hold: true}
	a := e.submit(alice, &api.SubmitRequest{Spec: spec})
	b := e.submit(bob, &api.SubmitRequest{Spec: spec})
	jobs := apirpc.NewJobServiceClient(e.user(alice))
	callers := []struct {
		jobs  apirpc.JobServiceClient
		id    auth.Identity
		other uint64 // the job whose private fields this caller may not see
	}{
		{jobs, auth.Identity{UID: alice, Method: auth.MethodLocal}, b},
		{apirpc.NewJobServiceClient(e.user(bob)), auth.Identity{UID: bob, Method: auth.MethodLocal}, a},
	}

	check := func(when string) {
		t.Helper()
		// Each caller twice in each view: the second listing comes from
		// the cache, and bob's from summaries alice's listing put there.
		for i := range 8 {
			c, view := callers[i%2], api.ListView(i/4)
			resp, err := c.jobs.ListJobs(ctx(t), &api.ListJobsRequest{All: true, View: view})
			if err != nil {
				t.Fatalf("%s: ListJobs: %v", when, err)
			}
			if len(resp.Jobs) != 2 || resp.Jobs[0].Id != a || resp.Jobs[1].Id != b {
				t.Fatalf("%s: ListJobs = %v, want jobs %d and %d", when, resp.Jobs, a, b)
			}
			snap, err := e.s.readAt(ctx(t), resp.Index)
			if err != nil {
				t.Fatalf("%s: readAt(%d): %v", when, resp.Index, err)
			}
			for _, got := range resp.Jobs {
				want := e.s.listedAs(c.id, view, snap.Job(got.Id))
				if !proto.Equal(got, want) {
					t.Errorf("%s: listed job %d in %v = %v, want %v", when, got.Id, view, got, want)
				}
				if got.Id == c.other && (got.Spec.GetOutput() != "" || got.Spec.GetWorkingDir() != "") {
					t.Errorf("%s: job %d listed to uid %d in %v with output %q and working directory %q, want them blanked",
						when, got.Id, c.id.UID, view, got.Spec.GetOutput(), got.Spec.GetWorkingDir())
				}
			}
		}
	}
	check("held")
	if _, err := jobs.Cancel(ctx(t), &api.CancelRequest{JobIds: []uint64{a}}); err != nil {
		t.Fatalf("Cancel(%d): %v", a, err)
	}
	check("after cancel")
	resp, err := jobs.ListJobs(ctx(t), &api.ListJobsRequest{JobIds: []uint64{a}})
	if err != nil {
		t.Fatalf("ListJobs(%d): %v", a, err)
	}
	if got := resp.Jobs[0].State; got != api.JobState_CANCELLED {
		t.Errorf("listed job %d after cancel has state %v, want CANCELLED", a, got)
	}
}

// TestListJobsQueueViewSharesArraySpecs checks that a queue-view listing
// sends an array's spec with its first task of each page only, and that
// api.FillSharedSpecs gives every task the spec it lists.
func TestListJobsQueueViewSharesArraySpecs(t *testing.T) {
	e := newAuthzEnv(t)
	first := e.submit(alice, &api.SubmitRequest{Spec: &api.JobSpec{Name: "arr", Script: "#!/bin/sh\n", WorkingDir: "/home/x", Hold: true, Array: "0-4"}})
	jobs := apirpc.NewJobServiceClient(e.user(alice))
	var listed []*api.Job
	for after := uint64(0); ; {
		resp, err := jobs.ListJobs(ctx(t), &api.ListJobsRequest{View: api.ListView_LIST_VIEW_QUEUE, AfterId: after, Limit: 3})
		if err != nil {
			t.Fatalf("ListJobs: %v", err)
		}
		for i, j := range resp.Jobs {
			if hasSpec := j.Spec != nil; hasSpec != (i == 0) {
				t.Errorf("job %d, %d. of its page, listed with spec %v, want one only for the first of a page", j.Id, i+1, j.Spec)
			}
		}
		listed = append(listed, resp.Jobs...)
		if after = resp.NextAfterId; after == 0 {
			break
		}
	}
	if len(listed) != 5 || listed[0].Id != first {
		t.Fatalf("listed %v, want the 5 tasks from job %d", listed, first)
	}
	api.FillSharedSpecs(listed)
	for _, j := range listed {
		if j.Spec.GetName() != "arr" || j.Spec.GetWorkingDir() != "/home/x" {
			t.Errorf("job %d after FillSharedSpecs has spec %v, want the array's", j.Id, j.Spec)
		}
	}
}
