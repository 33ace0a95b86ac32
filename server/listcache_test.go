package server

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
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
	jobs := api.NewJobServiceClient(e.user(alice))
	callers := []struct {
		jobs  api.JobServiceClient
		id    auth.Identity
		other uint64 // the job whose private fields this caller may not see
	}{
		{jobs, auth.Identity{UID: alice, Method: auth.MethodLocal}, b},
		{api.NewJobServiceClient(e.user(bob)), auth.Identity{UID: bob, Method: auth.MethodLocal}, a},
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
