//go:build e2e

package steps

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/internal/harness"
)

// require skips a test that needs a program this machine lacks, or fails
// it where CI has installed everything (LOOM_E2E_REQUIRE=1).
func require(t *testing.T, prog, install string) string {
	t.Helper()
	path, err := exec.LookPath(prog)
	if err == nil {
		return path
	}
	harness.Require(t, fmt.Sprintf("%s (%s): %v", prog, install, err), false)
	return ""
}

// TestMPIRunInsideAllocation: Open MPI's mpirun, run in a batch script of
// 2 nodes × 2 tasks, finds the allocation from SLURM_* variables, starts
// its daemons with srun (a job step of one task per node) and runs an
// allreduce over 4 ranks; every rank prints the right sum.
func TestMPIRunInsideAllocation(t *testing.T) {
	mpicc := require(t, "mpicc", "apt-get install libopenmpi-dev")
	require(t, "mpirun", "apt-get install openmpi-bin")
	c := start(t, "pcie-4", "node1", "node2")
	prog := filepath.Join(c.dir, "allreduce")
	if out, err := exec.Command(mpicc, "-o", prog, "testdata/allreduce.c").CombinedOutput(); err != nil {
		t.Fatalf("mpicc: %v\n%s", err, out)
	}
	// As root mpirun wants to be told that this is meant (the tests run
	// jobs as whoever runs them). The two simulated nodes share one host,
	// where Open MPI's shared-memory transport names its segments by host
	// name and the two nodes' ranks would collide: TCP only.
	id := c.sbatch("mpi.sbatch", fmt.Sprintf(`#!/bin/sh
#SBATCH -N 2 --ntasks-per-node=2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,tcp
mpirun %s
`, prog))
	j := c.wait(id, 120*time.Second)
	out := c.output(id)
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("job %d ended %s (%s); output:\n%s", id, j.State, j.Reason, out)
	}
	for r := range 4 {
		node := "node1"
		if r >= 2 {
			node = "node2"
		}
		if want := fmt.Sprintf("allreduce rank %d of 4 node %s sum 10\n", r, node); !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// mpirun started its daemons as a step: one task on each node.
	st := j.Step(0)
	if st == nil || len(st.GetAllocation().GetNodes()) != 2 || len(st.GetAllocation().GetRanks()) != 2 {
		t.Errorf("mpirun's daemons did not run as step 0 with one task on each of 2 nodes: %v", st)
	}
}
