package server

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/state"
	"github.com/loomhpc/loom/state/acct"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestLimitsAndExpiry: submits over max_job_count or max_array_size are
// refused with the limit's names; a finished job leaves the live state
// after min_job_age, which frees its slot, and GetJob and ListJobs (sacct)
// still answer for it from the accounting store.
func TestLimitsAndExpiry(t *testing.T) {
	e := newAuthzEnvWith(t, func(c *Config) {
		c.Limits = &Limits{MaxJobCount: 2, MaxArraySize: 4, MinJobAge: 200 * time.Millisecond}
	})
	held := func() *api.SubmitRequest {
		return &api.SubmitRequest{Spec: &api.JobSpec{Script: "#!/bin/sh\n", Hold: true}}
	}
	first := e.submit(alice, held())
	e.submit(alice, held())
	jobs := apirpc.NewJobServiceClient(e.user(alice))
	refused := func(what string, req *api.SubmitRequest, want ...string) {
		t.Helper()
		_, err := jobs.Submit(ctx(t), req)
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("%s: err = %v, want ResourceExhausted", what, err)
		}
		for _, w := range want {
			if !strings.Contains(status.Convert(err).Message(), w) {
				t.Errorf("%s: message %q lacks %q", what, status.Convert(err).Message(), w)
			}
		}
	}
	refused("a third job", held(), "MaxJobCount", "max_job_count = 2")
	refused("--array=0-4", &api.SubmitRequest{Spec: &api.JobSpec{Script: "x", Array: "0-4"}}, "MaxArraySize", "max_array_size = 4")

	if _, err := jobs.Cancel(ctx(t), &api.CancelRequest{JobIds: []uint64{first}}); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, "the cancelled job to leave the live state", 10*time.Second, func() bool {
		return e.s.State().Job(first) == nil
	})
	got, err := jobs.GetJob(ctx(t), &api.GetJobRequest{JobId: first})
	if err != nil || got.Job.GetState() != api.JobState_CANCELLED {
		t.Fatalf("GetJob(%d) after expiry = %v, %v; want the cancelled job", first, got.GetJob(), err)
	}
	for _, req := range []*api.ListJobsRequest{{All: true, JobIds: []uint64{first}}, {All: true}} {
		l, err := jobs.ListJobs(ctx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Jobs) == 0 || l.Jobs[0].Id != first || l.Jobs[0].State != api.JobState_CANCELLED {
			t.Errorf("ListJobs(%v) after expiry = %v, want job %d CANCELLED first", req, l.Jobs, first)
		}
	}
	// The slot is free again.
	e.submit(alice, held())
}

// TestFairShareReadsArchivedJobs: a job that has left the live state
// still counts for its account's fair share.
func TestFairShareReadsArchivedJobs(t *testing.T) {
	st, err := acct.Open(filepath.Join(t.TempDir(), "acct.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	ran := &api.Job{Id: 1, User: "alice", State: api.JobState_COMPLETED, Spec: &api.JobSpec{Account: "physics"},
		SubmitUnixMs: now.Add(-2 * time.Hour).UnixMilli(), StartUnixMs: now.Add(-2 * time.Hour).UnixMilli(), EndUnixMs: now.Add(-time.Hour).UnixMilli(),
		Allocation: &api.Allocation{Ranks: []*api.Rank{{GpuUuids: []string{"GPU-0", "GPU-1"}}}}}
	if err := st.Archive(5, []*api.Job{ran}); err != nil {
		t.Fatal(err)
	}
	fs := fairShareCache{archive: st}
	got := fs.at(state.NewStore().View(), now, 24*time.Hour)
	// Two GPUs for an hour, decayed by at most a few percent.
	if u := got["physics"]; u < 0.9*2*3600 || u > 2*3600 {
		t.Errorf("fair-share usage of physics = %.0f GPU-seconds, want about %d", u, 2*3600)
	}
}
