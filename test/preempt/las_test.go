//go:build e2e

// Package preempt runs the las and gittins policies on a real cluster: a
// server whose loom.toml selects one in [scheduler], one agent with four
// GPUs, a long
// MNIST job holding all four, and a short job that arrives later. The
// short job preempts the long one, which gets its --signal, checkpoints,
// is requeued, resumes from that checkpoint and completes.
package preempt

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/test/cluster"
)

func learnerBinary(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	b, _ := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", "bin", "mnist"))
	if _, err := os.Stat(b); err != nil {
		t.Fatalf("no learner at %s: run make build (or make e2e) first", b)
	}
	return b
}

// configs select las with a 20 GPU-second first queue (a 4-GPU job
// leaves it after 5 s), a 1 s minimum run and no promotion; and gittins
// with the same minimum run and a margin of 1, so that the new job, whose
// index beats the long job's by far once the leader has learned from a
// finished job and by a little before (least attained service first),
// preempts it either way.
var configs = map[string]string{
	"las": `[scheduler]
policy = "las"
las_thresholds = [20]
las_min_run = "1s"
las_promote_factor = -1
`,
	"gittins": `[scheduler]
policy = "gittins"
las_min_run = "1s"
gittins_margin = 1
`,
}

func TestLASPreemptsLongJobWhichResumes(t *testing.T) {
	for _, policy := range []string{"las", "gittins"} {
		t.Run(policy, func(t *testing.T) { testPreemptsLongJob(t, configs[policy]) })
	}
}

func testPreemptsLongJob(t *testing.T, config string) {
	logs := t.TempDir()
	work := cluster.OpenDir(t, "loom-preempt-")
	conf := filepath.Join(logs, "loom.toml")
	if err := os.WriteFile(conf, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := cluster.StartServer(t, logs, "server", "--config", conf)
	cluster.StartAgent(t, logs, "node1", "pcie-4", 30000, srv)
	jobs, nodes := cluster.Client(t, srv.Client())
	cluster.WaitFor(t, "the agent to register", 30*time.Second, func() bool {
		r, err := nodes.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == 1
	})
	env := map[string]string{"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME")}
	submit := func(token string, spec *api.JobSpec) uint64 {
		spec.WorkingDir, spec.Env = work, env
		return cluster.SubmitRetrying(t, jobs, &api.SubmitRequest{Spec: spec, IdempotencyToken: token}, 20*time.Second)
	}
	// No periodic checkpoints: the only one the long job takes is the one
	// its --signal asks for, so resuming past step 0 proves it came.
	// The learner runs as a job step (srun), which --signal without B:
	// reaches.
	learner := learnerBinary(t)
	srun := filepath.Join(filepath.Dir(learner), "srun")
	long := submit("long", &api.JobSpec{Name: "long", NodesMin: 1, GpusPerNode: 4, TimeLimitS: 1200, Signal: "USR1@10",
		Output: "long-%j.out", Script: fmt.Sprintf("#!/bin/sh\nexec %s %s --steps 60000 --hidden 64 --log-every 1000 --checkpoint-every 0\n", srun, learner)})
	output := func() string {
		b, _ := os.ReadFile(filepath.Join(work, fmt.Sprintf("long-%d.out", long)))
		return string(b)
	}
	get := func(id uint64) *api.Job { return cluster.Job(t, jobs, id) }
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- long job output:\n%s", output())
			for _, n := range []string{"server", "node1"} {
				b, _ := os.ReadFile(filepath.Join(logs, n+".log"))
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("--- %s log (tail):\n%s", n, b)
			}
		}
	})
	// Past 20 GPU-seconds (4 GPUs for 5 s) the long job is in the second
	// queue, behind any new job.
	progress := regexp.MustCompile(`step=(\d+) epoch=`)
	cluster.WaitFor(t, "the long job to train for 6 s", 120*time.Second, func() bool {
		j := get(long)
		m := progress.FindAllStringSubmatch(output(), -1)
		return j != nil && j.State == api.JobState_RUNNING && len(m) > 0 &&
			time.Since(time.UnixMilli(j.StartUnixMs)) > 6*time.Second
	})

	short := submit("short", &api.JobSpec{Name: "short", NodesMin: 1, GpusPerNode: 1, TimeLimitS: 60,
		Output: "short-%j.out", Script: "#!/bin/sh\necho short job ran\n"})
	var s, l *api.Job
	cluster.WaitFor(t, "the short job to complete", 90*time.Second, func() bool {
		s = get(short)
		return s != nil && s.State.Terminal()
	})
	if s.State != api.JobState_COMPLETED {
		t.Fatalf("short job %s (%s), want COMPLETED", s.State, s.Reason)
	}
	cluster.WaitFor(t, "the long job to complete", 240*time.Second, func() bool {
		l = get(long)
		return l != nil && l.State.Terminal() && !l.HoldsResources()
	})
	if l.State != api.JobState_COMPLETED || l.PreemptCount != 1 || l.RestartCount != 0 {
		t.Fatalf("long job %s (%s), preempted %d times, restarted %d; want COMPLETED after 1 preemption and no failure",
			l.State, l.Reason, l.PreemptCount, l.RestartCount)
	}
	if l.AttainedGpuMs < 4*5000 {
		t.Errorf("long job's attained service before the preemption = %d GPU-ms, want at least 4 GPUs × 5 s", l.AttainedGpuMs)
	}
	if s.EndUnixMs > l.EndUnixMs {
		t.Errorf("short job ended at %d, after the long one (%d)", s.EndUnixMs, l.EndUnixMs)
	}
	out := output()
	signalled := regexp.MustCompile(`signalled: checkpointing at step (\d+)`).FindStringSubmatch(out)
	resumed := regexp.MustCompile(`resumed from checkpoint step (\d+)`).FindStringSubmatch(out)
	if signalled == nil || resumed == nil || signalled[1] != resumed[1] || signalled[1] == "0" {
		t.Fatalf("long job: signalled checkpoint %v, resumed from %v; want the same step > 0", signalled, resumed)
	}
	t.Logf("long job: checkpointed on its signal at step %s, resumed from it and completed; the short job ran in between", resumed[1])
}
