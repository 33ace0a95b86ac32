package cli

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
)

// heldArray is n held array tasks as `sbatch --hold --array --wrap` queues
// them, as a listing carries them (no script, no environment).
func heldArray(n int) []*api.Job {
	jobs := make([]*api.Job, n)
	var spec *api.JobSpec
	for i := range jobs {
		if i%1000 == 0 {
			// One spec for each array's tasks, as in the state.
			spec = &api.JobSpec{
				Name: "wrap", NodesMin: 1, NodesMax: 1, Ntasks: 1, CpusPerTask: 1, TimeLimitS: 3600,
				Argv: []string{"/bin/sh", "-c", "true"}, WorkingDir: "/home/loomalice/work",
				Output: "/home/loomalice/work/slurm-%A_%a.out", Array: "0-999", Hold: true, Account: "vision",
			}
		}
		id := uint64(1000 + i)
		jobs[i] = &api.Job{
			Id: id, User: "loomalice", Uid: 1001, Gid: 1001, State: api.JobState_PENDING, Reason: "JobHeldUser",
			Priority: 4294, SubmitUnixMs: ms(time.Minute), CreateIndex: 40 + id, ModifyIndex: 40 + id,
			ArrayJobId: 1000 + uint64(i/1000)*1000, ArrayTaskId: uint32(i % 1000), SubmitHost: "login1",
			IdempotencyToken: fmt.Sprintf("3f2a9c1e-8b7d-4e6f-a5c4-%012d", i/1000), Spec: spec,
		}
	}
	return jobs
}

// BenchmarkSqueue times squeue over a queue of held array tasks served by
// the fake server in pages, as the real one pages them, in the queue view
// and as whole summaries (what servers without the view send). The fake
// encodes each page on every call (the real server keeps them encoded),
// so the client's share is best read from a CPU profile.
func BenchmarkSqueue(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		for _, whole := range []bool{false, true} {
			b.Run(fmt.Sprintf("jobs=%d/whole=%t", n, whole), func(b *testing.B) {
				f := &fakeServer{jobs: heldArray(n), page: listPageJobs, wholeJobs: whole}
				te := newTestEnv("squeue", f.start(b))
				te.stdout = io.Discard
				b.ReportAllocs()
				for b.Loop() {
					if code := run(context.Background(), te.env, nil); code != 0 {
						b.Fatalf("squeue = %d: %s", code, te.err)
					}
				}
			})
		}
	}
}
