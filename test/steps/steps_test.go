//go:build e2e

// Package steps checks Slurm's execution model end to end, on real
// server and agent processes driven through the real commands: the batch
// script runs once, srun inside it runs job steps on the allocation's
// nodes, steps share the allocation without overcommitting it, and salloc
// and scancel JOB.STEP do what they do in Slurm.
package steps

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/test/cluster"
)

// slurmCommands are linked to the loom binary in the test's bin dir, the
// way make build links them, so that scripts find srun on their PATH.
var slurmCommands = []string{"sbatch", "srun", "salloc", "scontrol", "scancel", "sacct", "squeue"}

// testCluster is one server and its agents, with a bin dir of Slurm
// commands and a shared working directory for the jobs.
type testCluster struct {
	t    *testing.T
	dir  string // the jobs' working directory
	bin  string
	addr string
	jobs apirpc.JobServiceClient
}

// start runs a server and one agent per name, each with profile's GPUs.
func start(t *testing.T, profile string, nodes ...string) *testCluster {
	t.Helper()
	dir := cluster.OpenDir(t, "loom-steps-")
	logs := t.TempDir()
	srv := cluster.StartServer(t, logs, "server")
	for i, n := range nodes {
		cluster.StartAgent(t, logs, n, profile, 30000+200*i, srv)
	}
	jobs, nodesClient := cluster.Client(t, srv.Client())
	cluster.WaitFor(t, "the agents to register", 30*time.Second, func() bool {
		r, err := nodesClient.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == len(nodes)
	})
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range slurmCommands {
		if err := os.Symlink(cluster.Binary(t), filepath.Join(bin, c)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range append([]string{"server"}, nodes...) {
				b, _ := os.ReadFile(filepath.Join(logs, n+".log"))
				t.Logf("--- %s log (tail):\n%s", n, tail(string(b), 4000))
			}
		}
	})
	return &testCluster{t: t, dir: dir, bin: bin, addr: srv.Client(), jobs: jobs}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// command runs a Slurm command of the test's bin dir in the jobs' dir.
func (c *testCluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LOOM_ADDR="+c.addr, "PATH="+c.bin+":"+os.Getenv("PATH"), "SLURM_JOB_ID=")
	return cmd
}

// run runs a command and returns its standard output, failing the test
// when it exits non-zero.
func (c *testCluster) run(name string, args ...string) string {
	c.t.Helper()
	cmd := c.command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// sbatch writes script to the jobs' dir and submits it.
func (c *testCluster) sbatch(name, script string, args ...string) uint64 {
	c.t.Helper()
	path := filepath.Join(c.dir, name)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		c.t.Fatal(err)
	}
	out := c.run("sbatch", append(append([]string{"--parsable"}, args...), path)...)
	id, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil {
		c.t.Fatalf("sbatch printed %q, not a job id", out)
	}
	return id
}

// wait waits for job id to end and release its nodes.
func (c *testCluster) wait(id uint64, timeout time.Duration) *api.Job {
	c.t.Helper()
	var j *api.Job
	cluster.WaitFor(c.t, fmt.Sprintf("job %d to end", id), timeout, func() bool {
		j = cluster.Job(c.t, c.jobs, id)
		return j != nil && j.State.Terminal() && !j.HoldsResources()
	})
	return j
}

// output is the job's default output file (slurm-ID.out).
func (c *testCluster) output(id uint64) string {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("slurm-%d.out", id)))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Logf("slurm-%d.out:\n%s", id, b)
	return string(b)
}

// TestScriptRunsOnceAndSrunSpansTheAllocation is the first
// example: Slurm prints the script's line once and the step's tasks 0..3
// of 4, with no job but the one submitted.
func TestScriptRunsOnceAndSrunSpansTheAllocation(t *testing.T) {
	c := start(t, "pcie-4", "node1", "node2")
	id := c.sbatch("two.sbatch", `#!/bin/sh
#SBATCH -N 2 --ntasks-per-node=2
echo "script line on $(hostname -s 2>/dev/null || echo host) nodes=$SLURM_JOB_NODELIST"
srun sh -c 'echo step task $SLURM_PROCID of $SLURM_NTASKS on $SLURMD_NODENAME'
echo "master $(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
`)
	j := c.wait(id, 60*time.Second)
	out := c.output(id)
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("job %d ended %s (%s); output:\n%s", id, j.State, j.Reason, out)
	}
	if n := strings.Count(out, "script line"); n != 1 {
		t.Errorf("the script's line appears %d times, want once; output:\n%s", n, out)
	}
	for i := range 4 {
		node := "node1"
		if i >= 2 {
			node = "node2"
		}
		if want := fmt.Sprintf("step task %d of 4 on %s\n", i, node); !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "master node1\n") {
		t.Errorf("scontrol show hostnames | head -n 1 did not print node1:\n%s", out)
	}
	r, err := c.jobs.ListJobs(cluster.Ctx(t), &api.ListJobsRequest{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Jobs) != 1 {
		t.Errorf("the cluster has %d jobs, want only the one submitted (srun must not submit jobs)", len(r.Jobs))
	}
	acct := c.run("sacct", "-j", fmt.Sprint(id), "-P", "-n", "--format=JobID,State,ExitCode,NodeList")
	for _, want := range []string{
		fmt.Sprintf("%d|COMPLETED|0:0|node[1-2]", id),
		fmt.Sprintf("%d.batch|COMPLETED|0:0|node1", id),
		fmt.Sprintf("%d.0|COMPLETED|0:0|node[1-2]", id),
	} {
		if !slices.Contains(strings.Split(strings.TrimSpace(acct), "\n"), want) {
			t.Errorf("sacct -j %d lacks line %q:\n%s", id, want, acct)
		}
	}
}

// TestConcurrentStepsShareGPUsAndWait: two steps that each take every GPU
// of one node run at once on the two nodes; a third waits for one of them
// and then runs on the GPUs it freed; no GPU is used by two steps at once.
func TestConcurrentStepsShareGPUsAndWait(t *testing.T) {
	c := start(t, "pcie-4", "node1", "node2")
	id := c.sbatch("gpus.sbatch", `#!/bin/sh
#SBATCH -N 2 --ntasks-per-node=1 --gpus-per-node=4
srun -N1 -n1 --gpus-per-task=4 sh -c 'echo A $SLURMD_NODENAME $CUDA_VISIBLE_DEVICES; sleep 3; echo A done' &
srun -N1 -n1 --gpus-per-task=4 sh -c 'echo B $SLURMD_NODENAME $CUDA_VISIBLE_DEVICES; sleep 3; echo B done' &
sleep 1
srun -N1 -n1 --gpus-per-task=4 sh -c 'echo C $SLURMD_NODENAME $CUDA_VISIBLE_DEVICES'
wait
`)
	j := c.wait(id, 90*time.Second)
	out := c.output(id)
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("job %d ended %s (%s); output:\n%s", id, j.State, j.Reason, out)
	}
	if !strings.Contains(out, "Job step creation temporarily disabled") {
		t.Errorf("the third step did not wait for resources:\n%s", out)
	}
	// C started only after A or B had finished.
	c0 := strings.Index(out, "C ")
	if c0 < 0 || (strings.Index(out, "A done") > c0 && strings.Index(out, "B done") > c0) {
		t.Errorf("step C ran before either step that held the GPUs ended:\n%s", out)
	}
	line := regexp.MustCompile(`(?m)^([AB]) (node\d) (\S+)$`)
	seen := map[string]string{}
	for _, m := range line.FindAllStringSubmatch(out, -1) {
		if other, ok := seen[m[2]]; ok {
			t.Errorf("steps %s and %s both ran on %s at once", other, m[1], m[2])
		}
		seen[m[2]] = m[1]
		if n := len(strings.Split(m[3], ",")); n != 4 {
			t.Errorf("step %s saw %d GPUs (%s), want 4", m[1], n, m[3])
		}
	}
	if len(seen) != 2 {
		t.Errorf("steps A and B ran on %v, want one node each:\n%s", seen, out)
	}
	r, _ := c.jobs.GetJob(cluster.Ctx(t), &api.GetJobRequest{JobId: id})
	for _, st := range r.GetJob().GetSteps() {
		if st.State != api.JobState_COMPLETED {
			t.Errorf("step %s ended %s, want COMPLETED", api.StepName(st.Id), st.State)
		}
	}
}

// TestScancelStepEndsTheStepNotTheJob: scancel JOB.1 ends step 1 (srun
// exits non-zero), the script goes on, and the job completes.
func TestScancelStepEndsTheStepNotTheJob(t *testing.T) {
	c := start(t, "pcie-4", "node1")
	id := c.sbatch("cancel.sbatch", `#!/bin/sh
#SBATCH -N 1 -n 2
srun -n1 true
srun -n1 sleep 300
echo "srun exited $?"
srun -n1 echo after
`)
	var j *api.Job
	cluster.WaitFor(t, "step 1 to run", 60*time.Second, func() bool {
		j = cluster.Job(t, c.jobs, id)
		return j.Step(1) != nil && j.Step(1).State == api.JobState_RUNNING
	})
	c.run("scancel", fmt.Sprintf("%d.1", id))
	j = c.wait(id, 60*time.Second)
	out := c.output(id)
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("after scancel %d.1 the job ended %s (%s), want COMPLETED; output:\n%s", id, j.State, j.Reason, out)
	}
	if j.Step(1).State != api.JobState_CANCELLED {
		t.Errorf("step 1 is %s, want CANCELLED", j.Step(1).State)
	}
	if strings.Contains(out, "srun exited 0") || !strings.Contains(out, "after") {
		t.Errorf("want srun of the cancelled step to fail and the script to go on:\n%s", out)
	}
	acct := c.run("sacct", "-j", fmt.Sprint(id), "-P", "-n", "--format=JobID,State")
	for _, want := range []string{fmt.Sprintf("%d.1|CANCELLED", id), fmt.Sprintf("%d.2|COMPLETED", id), fmt.Sprintf("%d|COMPLETED", id)} {
		if !strings.Contains(acct, want+"\n") {
			t.Errorf("sacct lacks %q:\n%s", want, acct)
		}
	}
}

// TestBatchExitCodeIsTheJobs: the job ends with its script's exit code,
// and sacct shows the failed step's.
func TestBatchExitCodeIsTheJobs(t *testing.T) {
	c := start(t, "pcie-4", "node1")
	id := c.sbatch("fail.sbatch", "#!/bin/sh\nsrun sh -c 'exit 7'\necho srun=$?\nexit 3\n")
	j := c.wait(id, 60*time.Second)
	if j.State != api.JobState_FAILED || j.ExitCode != 3 {
		t.Fatalf("job ended %s with exit code %d, want FAILED 3", j.State, j.ExitCode)
	}
	if out := c.output(id); !strings.Contains(out, "srun=7") {
		t.Errorf("srun's exit status is not the step's:\n%s", out)
	}
	acct := c.run("sacct", "-j", fmt.Sprint(id), "-P", "-n", "--format=JobID,State,ExitCode")
	for _, want := range []string{fmt.Sprintf("%d|FAILED|3:0", id), fmt.Sprintf("%d.batch|FAILED|3:0", id), fmt.Sprintf("%d.0|FAILED|7:0", id)} {
		if !strings.Contains(acct, want+"\n") {
			t.Errorf("sacct lacks %q:\n%s", want, acct)
		}
	}
}

// TestSallocThenSrunListsBothNodes: salloc -N2 runs its command here with
// the allocation; srun hostname inside it runs on both nodes.
func TestSallocThenSrunListsBothNodes(t *testing.T) {
	c := start(t, "pcie-4", "node1", "node2")
	out := c.run("salloc", "-N2", "sh", "-c", `srun sh -c 'echo on $SLURMD_NODENAME'; echo nodes=$SLURM_JOB_NODELIST`)
	for _, want := range []string{"on node1\n", "on node2\n", "nodes=node[1-2]\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("salloc output lacks %q:\n%s", want, out)
		}
	}
	r, err := c.jobs.ListJobs(cluster.Ctx(t), &api.ListJobsRequest{All: true})
	if err != nil || len(r.Jobs) != 1 {
		t.Fatalf("jobs after salloc: %v %v, want the one allocation", r.GetJobs(), err)
	}
	j := c.wait(r.Jobs[0].Id, 30*time.Second)
	if j.State != api.JobState_COMPLETED {
		t.Errorf("the allocation ended %s, want COMPLETED once salloc's command exited 0", j.State)
	}
}

// TestFullClusterWithSrunNeverDeadlocks: jobs that take every GPU of the
// cluster and call srun all finish: srun runs inside their allocation
// instead of queueing behind them.
func TestFullClusterWithSrunNeverDeadlocks(t *testing.T) {
	c := start(t, "pcie-4", "node1", "node2")
	var ids []uint64
	for i := range 3 {
		ids = append(ids, c.sbatch(fmt.Sprintf("full%d.sbatch", i), `#!/bin/sh
#SBATCH -N 2 --gpus-per-node=4
srun sh -c 'echo task $SLURM_PROCID gpus $CUDA_VISIBLE_DEVICES'
`))
	}
	for _, id := range ids {
		if j := c.wait(id, 90*time.Second); j.State != api.JobState_COMPLETED {
			t.Errorf("job %d ended %s (%s), want COMPLETED", id, j.State, j.Reason)
		}
	}
}

// TestInterruptedSrunCancelsOnlyItsStep: Ctrl-C (SIGINT) on srun cancels
// its step; the allocation lives on and the next srun runs.
func TestInterruptedSrunCancelsOnlyItsStep(t *testing.T) {
	c := start(t, "pcie-4", "node1")
	out := c.run("salloc", "-N1", "sh", "-c", `srun sleep 300 & pid=$!
until scontrol show step "$SLURM_JOB_ID.0" 2>/dev/null | grep -q State=RUNNING; do sleep 0.2; done
kill -INT $pid; wait $pid; echo "srun=$?"
srun echo still here`)
	for _, want := range []string{"srun=130\n", "still here\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("salloc output lacks %q:\n%s", want, out)
		}
	}
	r, err := c.jobs.ListJobs(cluster.Ctx(t), &api.ListJobsRequest{All: true})
	if err != nil || len(r.Jobs) != 1 {
		t.Fatalf("jobs: %v %v, want the one allocation", r.GetJobs(), err)
	}
	j := c.wait(r.Jobs[0].Id, 30*time.Second)
	if j.State != api.JobState_COMPLETED || j.Step(0).GetState() != api.JobState_CANCELLED || j.Step(1).GetState() != api.JobState_COMPLETED {
		t.Errorf("job %s, step 0 %s, step 1 %s; want COMPLETED, CANCELLED, COMPLETED", j.State, j.Step(0).GetState(), j.Step(1).GetState())
	}
}
