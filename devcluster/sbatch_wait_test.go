package devcluster

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/cli"
	"github.com/loomhpc/loom/internal/harness"
)

// TestSbatchWaitFollowsTheJob: sbatch --wait returns only once the job has
// run to its end, with the job's exit code.
func TestSbatchWaitFollowsTheJob(t *testing.T) {
	c, _ := startCluster(t, 1)
	t.Setenv("LOOM_ADDR", c.Addr())
	t.Chdir(t.TempDir())
	var out, errOut bytes.Buffer
	start := time.Now()
	rc := cli.Run(context.Background(), "sbatch", []string{"--wait", "-N", "1", "--wrap", "sleep 1; exit 4"}, nil, &out, &errOut)
	if rc != 4 {
		t.Fatalf("sbatch --wait exited %d, want the job's 4 (stdout %q, stderr %q)", rc, out.String(), errOut.String())
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("sbatch --wait returned after %s, before the 1 s job could end", took)
	}
}

// TestScontrolRequeue: scontrol requeue stops a running gang and it runs
// again as its next generation, counting one restart.
func TestScontrolRequeue(t *testing.T) {
	c, jobs := startCluster(t, 2)
	t.Setenv("LOOM_ADDR", c.Addr())
	id := submit(t, jobs, &api.JobSpec{Name: "again", NodesMin: 2, NtasksPerNode: 1, GpusPerNode: 1,
		Script: "#!/bin/sh\nexec sleep 60\n"})
	harness.WaitFor(t, "the job to run", 15*time.Second, func() bool { return getJob(t, jobs, id).State == api.JobState_RUNNING })
	var out, errOut bytes.Buffer
	if rc := cli.Run(context.Background(), "scontrol", []string{"requeue", fmt.Sprint(id)}, nil, &out, &errOut); rc != 0 {
		t.Fatalf("scontrol requeue exited %d: %s", rc, errOut.String())
	}
	harness.WaitFor(t, "the job to run again", 30*time.Second, func() bool {
		j := getJob(t, jobs, id)
		return j.State == api.JobState_RUNNING && j.GetAllocation().GetGeneration() == 2
	})
	if j := getJob(t, jobs, id); j.RestartCount != 1 {
		t.Fatalf("restart count %d, want 1", j.RestartCount)
	}
	errOut.Reset()
	if rc := cli.Run(context.Background(), "scontrol", []string{"requeue", "999"}, nil, &out, &errOut); rc == 0 || !strings.Contains(errOut.String(), "999") {
		t.Fatalf("requeue of an unknown job: exit %d, stderr %q", rc, errOut.String())
	}
	if _, err := jobs.Cancel(context.Background(), &api.CancelRequest{JobIds: []uint64{id}}); err != nil {
		t.Fatal(err)
	}
}
