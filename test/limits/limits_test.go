//go:build e2e

// Package limits checks the cluster limits of a real loom server (issue
// #14): a large array is refused by max_array_size, max_job_count holds
// until finished jobs age out (min_job_age), and a job that has left the
// live state still answers from the accounting store, also after the
// server is killed and started again.
package limits

import (
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/test/cluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestLimitsOfARealServer(t *testing.T) {
	dir := t.TempDir()
	srv := cluster.StartServer(t, dir, "server", "--max-job-count", "2", "--max-array-size", "1001", "--min-job-age", "1s")
	cluster.StartAgent(t, dir, "node1", "dgx-h100", 29500, srv)
	jobs, nodes := cluster.Client(t, srv.Client())
	cluster.WaitFor(t, "the agent to register", 20*time.Second, func() bool {
		r, err := nodes.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == 1
	})
	refused := func(what string, spec *api.JobSpec, want ...string) {
		t.Helper()
		_, err := jobs.Submit(cluster.Ctx(t), &api.SubmitRequest{Spec: spec})
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("%s: err = %v, want ResourceExhausted\n%s", what, err, srv.Tail())
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v lacks %q", what, err, w)
			}
		}
	}
	// A 3 MiB script (the gRPC message limit is 4 MiB) over 10001 tasks.
	big := "#!/bin/sh\n" + strings.Repeat("# padding\n", 3<<20/10)
	refused("--array=0-10000 of a 3 MiB script", &api.JobSpec{Script: big, Array: "0-10000", WorkingDir: dir},
		"MaxArraySize", "max_array_size = 1001")

	submit := func() uint64 {
		r, err := jobs.Submit(cluster.Ctx(t), &api.SubmitRequest{Spec: &api.JobSpec{Script: "#!/bin/sh\ntrue\n", WorkingDir: dir, GpusPerNode: 1}})
		if err != nil {
			t.Fatalf("submit: %v\n%s", err, srv.Tail())
		}
		return r.JobId
	}
	first, second := submit(), submit()
	refused("a third job", &api.JobSpec{Script: "#!/bin/sh\ntrue\n", WorkingDir: dir}, "MaxJobCount", "max_job_count = 2")
	for _, id := range []uint64{first, second} {
		cluster.WaitFor(t, "the jobs to complete", 30*time.Second, func() bool {
			return cluster.Job(t, jobs, id).State == api.JobState_COMPLETED
		})
	}
	// Once they are older than min_job_age they leave the live state, and
	// the slots are free.
	var third uint64
	cluster.WaitFor(t, "finished jobs to age out and free their slots", 30*time.Second, func() bool {
		r, err := jobs.Submit(cluster.Ctx(t), &api.SubmitRequest{Spec: &api.JobSpec{Script: "#!/bin/sh\ntrue\n", WorkingDir: dir}})
		third = r.GetJobId()
		return err == nil
	})
	check := func(when string) {
		t.Helper()
		for _, id := range []uint64{first, second} {
			if j := cluster.Job(t, jobs, id); j.State != api.JobState_COMPLETED {
				t.Errorf("%s: job %d is %s, want COMPLETED from the accounting store", when, id, j.State)
			}
		}
		r, err := jobs.ListJobs(cluster.Ctx(t), &api.ListJobsRequest{All: true})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[uint64]int{}
		for _, j := range r.Jobs {
			seen[j.Id]++
		}
		if seen[first] != 1 || seen[second] != 1 || seen[third] != 1 {
			t.Errorf("%s: sacct's listing holds jobs %v, want %d, %d and %d once each", when, seen, first, second, third)
		}
	}
	check("after expiry")
	srv.Kill()
	srv.Restart(t)
	cluster.WaitFor(t, "the restarted server to answer", 20*time.Second, func() bool {
		_, err := jobs.GetJob(cluster.Ctx(t), &api.GetJobRequest{JobId: third})
		return err == nil
	})
	check("after kill -9 and restart")
}
