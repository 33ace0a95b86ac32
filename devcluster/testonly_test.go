package devcluster

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/internal/harness"
)

// TestTestOnlyMatchesSchedule checks sbatch --test-only against what the
// scheduler then does: on an idle cluster a job is answered "now" on the
// node it then runs on; behind a job that holds both nodes, a two-node
// gang is answered the end of that job's time limit and both nodes, and
// it starts there no later than that (plus one scheduling cycle).
// Nothing is submitted by the test itself.
func TestTestOnlyMatchesSchedule(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and runs jobs for several seconds")
	}
	// Start returns once both agents have registered.
	c, jobs := startCluster(t, 2)
	test := func(spec *api.JobSpec) *api.TestSubmitResponse {
		t.Helper()
		spec.WorkingDir = t.TempDir()
		before := c.Server.State().NextJobID()
		resp, err := jobs.TestSubmit(context.Background(), &api.SubmitRequest{Spec: spec})
		if err != nil {
			t.Fatalf("TestSubmit: %v", err)
		}
		if after := c.Server.State().NextJobID(); after != before {
			t.Fatalf("TestSubmit submitted a job (next id %d -> %d)", before, after)
		}
		return resp
	}
	const cycle = 1000 // ms: one scheduling cycle plus the agents' end reports

	one := &api.JobSpec{GpusPerNode: 8, TimeLimitS: 3, Script: "#!/bin/sh\nsleep 2\n"}
	asked := time.Now().UnixMilli()
	answer := test(proto.Clone(one).(*api.JobSpec))
	if answer.StartUnixMs < asked || answer.StartUnixMs > time.Now().UnixMilli() || len(answer.Nodes) != 1 {
		t.Fatalf("test-only on an idle cluster = %v, want a start now on one node", answer)
	}
	blocker := submit(t, jobs, one)
	harness.WaitFor(t, "the job to start", 10*time.Second, func() bool { return getJob(t, jobs, blocker).StartUnixMs != 0 })
	if got := getJob(t, jobs, blocker).Allocation.GetNodes(); !slices.Equal(got, answer.Nodes) {
		t.Errorf("the job runs on %v; test-only said %v", got, answer.Nodes)
	}
	other := submit(t, jobs, &api.JobSpec{GpusPerNode: 8, TimeLimitS: 3, Script: "#!/bin/sh\nsleep 2\n"})
	harness.WaitFor(t, "the second job to start", 10*time.Second, func() bool { return getJob(t, jobs, other).StartUnixMs != 0 })

	gangSpec := &api.JobSpec{NodesMin: 2, GpusPerNode: 8, TimeLimitS: 10, Script: "#!/bin/sh\ntrue\n"}
	answer = test(proto.Clone(gangSpec).(*api.JobSpec))
	ends := max(getJob(t, jobs, blocker).StartUnixMs, getJob(t, jobs, other).StartUnixMs) + 3000
	if answer.StartUnixMs < ends-cycle || answer.StartUnixMs > ends+cycle || len(answer.Nodes) != 2 || answer.Cpus == 0 {
		t.Fatalf("test-only behind two 3 s jobs ending at %d = %v, want a start then on both nodes", ends, answer)
	}
	gang := submit(t, jobs, gangSpec)
	g := waitDone(t, jobs, gang)
	if g.StartUnixMs > answer.StartUnixMs+cycle {
		t.Errorf("the gang started at %d, %d ms after test-only's %d", g.StartUnixMs, g.StartUnixMs-answer.StartUnixMs, answer.StartUnixMs)
	}
	got := slices.Sorted(slices.Values(g.Allocation.GetNodes()))
	if want := slices.Sorted(slices.Values(answer.Nodes)); !slices.Equal(got, want) {
		t.Errorf("the gang ran on %v; test-only said %v", got, want)
	}
	t.Logf("test-only start %d, actual %d (%+d ms)", answer.StartUnixMs, g.StartUnixMs, g.StartUnixMs-answer.StartUnixMs)
}
