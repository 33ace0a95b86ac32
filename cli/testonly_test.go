package cli

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
)

func (f *fakeServer) TestSubmit(_ context.Context, req *api.SubmitRequest) (*api.TestSubmitResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tests = append(f.tests, proto.Clone(req).(*api.SubmitRequest))
	if f.fail != nil {
		return nil, f.fail
	}
	return f.testResp, nil
}

// TestTestOnly checks that --test-only submits nothing and prints Slurm's
// line (sbatch(1): "sbatch: Job 0 to start at TIME using N processors on
// nodes LIST in partition P"), for sbatch, srun and salloc.
func TestTestOnly(t *testing.T) {
	start := testNow.Add(90 * time.Minute)
	for _, cmd := range []struct{ name, arg string }{{"sbatch", "--wrap=true"}, {"srun", "true"}, {"salloc", "true"}} {
		t.Run(cmd.name, func(t *testing.T) {
			f := &fakeServer{testResp: &api.TestSubmitResponse{StartUnixMs: start.UnixMilli(), Nodes: []string{"gpu01", "gpu02"}, Cpus: 8, Partition: "batch"}}
			te := newTestEnv(cmd.name, f.start(t))
			if code := te.run(t, "--test-only", "-N2", cmd.arg); code != 0 {
				t.Fatalf("%s --test-only exited %d: %s", cmd.name, code, te.err)
			}
			if len(f.submits) != 0 || len(f.tests) != 1 || f.tests[0].GetSpec().GetNodesMin() != 2 {
				t.Errorf("%s --test-only -N2 made submits %v and tests %v, want one test of a 2-node job and no submit", cmd.name, f.submits, f.tests)
			}
			want := cmd.name + ": Job 0 to start at " + slurmTimestamp(start.UnixMilli(), time.UTC) + " using 8 processors on nodes gpu[01-02] in partition batch\n"
			if got := te.err.String(); got != want {
				t.Errorf("%s --test-only printed %q, want %q", cmd.name, got, want)
			}
		})
	}
	f := &fakeServer{testResp: &api.TestSubmitResponse{Partition: "batch", Reason: "Dependency"}}
	te := newTestEnv("sbatch", f.start(t))
	if code := te.run(t, "--test-only", "--wrap=true"); code != 0 {
		t.Fatalf("sbatch --test-only exited %d: %s", code, te.err)
	}
	if got, want := te.err.String(), "sbatch: Job 0 would be queued in partition batch but the scheduler plans no start for it now (reason Dependency)\n"; got != want {
		t.Errorf("sbatch --test-only without a plan printed %q, want %q", got, want)
	}
}

// TestTestOnlyInAllocation checks that srun --test-only inside an
// allocation is refused rather than run as a step.
func TestTestOnlyInAllocation(t *testing.T) {
	f := &fakeServer{jobs: testJobs()}
	te := newTestEnv("srun", f.start(t), "SLURM_JOB_ID=12")
	if code := te.run(t, "--test-only", "hostname"); code != 1 {
		t.Errorf("srun --test-only in job 12 exited %d, want 1", code)
	}
	if want := "srun: error: --test-only: job 12's steps start in its allocation; run srun --test-only outside it\n"; te.err.String() != want {
		t.Errorf("srun --test-only in job 12 printed %q, want %q", te.err.String(), want)
	}
	if len(f.tests) != 0 || len(f.submits) != 0 {
		t.Errorf("srun --test-only in an allocation asked %v and submitted %v, want nothing", f.tests, f.submits)
	}
}
