//go:build e2e

// Package containerd runs Loom's containerd driver against the real
// daemon: loom server and agent processes (bin/loom, built by make e2e)
// with --driver containerd, an image built here from a static Go program,
// and jobs submitted as an ordinary user. It skips only where it cannot
// run at all: not root, or no containerd.
package containerd

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ctrdriver "github.com/loomhpc/loom/agent/driver/containerd"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
)

// uid and gid are whom the test jobs run as: cluster.UserA, not root and
// not the test's own user; newEnv looks them up.
var uid, gid uint32

// env is one test's cluster: a server and containerd agents.
type env struct {
	t      *testing.T
	dir    string // world-writable: the job's user writes its output here
	srv    *cluster.Server
	agents []*cluster.Proc
	names  []string
	jobs   apirpc.JobServiceClient
	ctr    *containerd.Client
}

func requireContainerd(t *testing.T) *containerd.Client {
	t.Helper()
	harness.Require(t, "root (the containers run as another user)", os.Geteuid() == 0)
	_, err := os.Stat(ctrdriver.DefaultSocket)
	harness.Require(t, fmt.Sprintf("containerd running (no %s; CI starts it in .ci/run)", ctrdriver.DefaultSocket), err == nil)
	c, err := containerd.New(ctrdriver.DefaultSocket, containerd.WithTimeout(5*time.Second))
	harness.Require(t, fmt.Sprintf("containerd answering at %s (%v)", ctrdriver.DefaultSocket, err), err == nil)
	t.Cleanup(func() { c.Close() })
	return c
}

// newEnv imports the probe image and starts a server and n agents.
func newEnv(t *testing.T, n int) *env {
	t.Helper()
	c := requireContainerd(t)
	dir := cluster.OpenDir(t, "loom-ctr-")
	archive := buildProbeArchive(t, t.TempDir())
	if out, err := exec.Command(cluster.Binary(t), "image", "import", archive).CombinedOutput(); err != nil {
		t.Fatalf("loom image import: %v\n%s", err, out)
	}
	user := cluster.LookupUser(t, cluster.UserA)
	uid, gid = user.UID, user.GID
	e := &env{t: t, dir: dir, ctr: c}
	// Registered before the agents start, so it runs after they are
	// killed: a failed test leaves nothing in the loom namespace.
	t.Cleanup(e.removeContainers)
	e.srv = cluster.StartServer(t, dir, "server")
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("ctr%d", i)
		e.names = append(e.names, name)
		args := append([]string{"agent", "--name", name, "--servers", e.srv.RPC,
			"--data-dir", filepath.Join(dir, name), "--listen-addr", "127.0.0.1:0", "--metrics-addr", "-",
			"--profile", "pcie-4", "--nvml=false", "--kill-grace", "2s", "--driver", "containerd",
			"--ports", fmt.Sprintf("%d-%d", 31000+100*i, 31099+100*i)}, cluster.AgentTLSArgs(t, dir, name)...)
		e.agents = append(e.agents, cluster.Start(t, dir, name, args...))
	}
	var nodes apirpc.NodeServiceClient
	e.jobs, nodes = cluster.ClientAs(t, e.srv.Client(), user)
	cluster.WaitFor(t, "the agents to register", 30*time.Second, func() bool {
		r, err := nodes.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == n
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(e.srv.Tail())
			for _, a := range e.agents {
				t.Log(a.Tail())
			}
		}
	})
	return e
}

func (e *env) submit(spec *api.JobSpec) uint64 {
	e.t.Helper()
	if spec.Image == "" {
		spec.Image = probeImage
	}
	if spec.WorkingDir == "" {
		spec.WorkingDir = e.dir
	}
	r, err := e.jobs.Submit(cluster.Ctx(e.t), &api.SubmitRequest{Spec: spec})
	if err != nil {
		e.t.Fatalf("submit: %v", err)
	}
	return r.JobId
}

func (e *env) job(id uint64) *api.Job {
	e.t.Helper()
	r, err := e.jobs.GetJob(cluster.Ctx(e.t), &api.GetJobRequest{JobId: id})
	if err != nil {
		e.t.Fatalf("get job %d: %v", id, err)
	}
	return r.Job
}

func (e *env) waitEnd(id uint64, timeout time.Duration) *api.Job {
	e.t.Helper()
	cluster.WaitFor(e.t, fmt.Sprintf("job %d to end", id), timeout, func() bool { return e.job(id).State.Terminal() })
	return e.job(id)
}

// containers lists what the test's agents have in the loom namespace.
func (e *env) containers() []string {
	e.t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), ctrdriver.DefaultNamespace)
	var out []string
	for _, n := range e.names {
		cs, err := e.ctr.Containers(ctx, fmt.Sprintf("labels.%q==%q", ctrdriver.LabelNode, n))
		if err != nil {
			e.t.Fatal(err)
		}
		for _, c := range cs {
			out = append(out, c.ID())
		}
	}
	return out
}

// removeContainers kills and deletes whatever the test's agents left.
func (e *env) removeContainers() {
	ctx := namespaces.WithNamespace(context.Background(), ctrdriver.DefaultNamespace)
	for _, n := range e.names {
		cs, _ := e.ctr.Containers(ctx, fmt.Sprintf("labels.%q==%q", ctrdriver.LabelNode, n))
		for _, c := range cs {
			if task, err := c.Task(ctx, nil); err == nil {
				task.Delete(ctx, containerd.WithProcessKill)
			}
			c.Delete(ctx, containerd.WithSnapshotCleanup)
		}
	}
}

func (e *env) requireNoContainers() {
	e.t.Helper()
	// The agent cleans up right after the end is reported.
	cluster.WaitFor(e.t, "the agents to remove their containers", 10*time.Second, func() bool { return len(e.containers()) == 0 })
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGangRunsAsUserWithGPUsAndLimits is a 2-node, 2-rank-per-node gang
// from the imported archive: every rank runs as the submitting user, sees
// exactly its GPUs, and is held to --mem.
func TestGangRunsAsUserWithGPUsAndLimits(t *testing.T) {
	e := newEnv(t, 2)
	const memMB = 64
	id := e.submit(&api.JobSpec{NodesMin: 2, NodesMax: 2, NtasksPerNode: 2, GpusPerNode: 2, MemPerNodeMb: memMB,
		Argv: []string{"/probe", "id"}, Output: "out-%t.txt"})
	j := e.waitEnd(id, 60*time.Second)
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("job ended %s (%s), want COMPLETED", j.State, j.Reason)
	}
	for _, r := range j.Allocation.Ranks {
		out := readFile(t, filepath.Join(e.dir, fmt.Sprintf("out-%d.txt", r.Rank)))
		want := []string{
			fmt.Sprintf("rank=%d ", r.Rank),
			fmt.Sprintf(" uid=%d gid=%d ", uid, gid),
			" cuda=" + strings.Join(r.GpuUuids, ",") + " ",
			fmt.Sprintf(" mem_limit=%d ", memMB<<20),
			fmt.Sprintf(" cpu_quota=%d\n", r.Cpus*100000),
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("rank %d printed %q, want it to contain %q", r.Rank, out, w)
			}
		}
		if len(r.GpuUuids) != 1 {
			t.Errorf("rank %d holds GPUs %v, want 1 (2 per node, 2 ranks per node)", r.Rank, r.GpuUuids)
		}
		// The output file was written as the user too, not by the root agent.
		if fi, err := os.Stat(filepath.Join(e.dir, fmt.Sprintf("out-%d.txt", r.Rank))); err != nil {
			t.Error(err)
		} else if owner := fi.Sys().(*syscall.Stat_t).Uid; owner != uid {
			t.Errorf("rank %d's output file is owned by uid %d, want %d", r.Rank, owner, uid)
		}
	}
	e.requireNoContainers()
}

// TestMountsAndResultDir gives ranks a read-only data mount and checks
// that their results land in LOOM_RESULT_DIR on the host, as their user.
func TestMountsAndResultDir(t *testing.T) {
	e := newEnv(t, 1)
	data := filepath.Join(e.dir, "dataset")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "input.txt"), []byte("42"), 0o644); err != nil {
		t.Fatal(err)
	}
	results := filepath.Join(e.dir, "results")
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 2, Argv: []string{"/probe", "mounts"},
		Mounts: []string{data + ":/data:ro"}, Env: map[string]string{"LOOM_RESULT_DIR": results}, Output: "mounts-%t.txt"})
	if j := e.waitEnd(id, 60*time.Second); j.State != api.JobState_COMPLETED {
		t.Fatalf("job ended %s (%s), want COMPLETED", j.State, j.Reason)
	}
	for rank := range 2 {
		out := readFile(t, filepath.Join(e.dir, fmt.Sprintf("mounts-%d.txt", rank)))
		for _, w := range []string{`input="42" err=<nil>`, "write_data_err=true", "err=<nil>\n"} {
			if !strings.Contains(out, w) {
				t.Errorf("rank %d printed %q, want it to contain %q", rank, out, w)
			}
		}
		res := filepath.Join(results, fmt.Sprintf("rank-%d.txt", rank))
		if got := readFile(t, res); got != fmt.Sprintf("result of rank %d\n", rank) {
			t.Errorf("%s = %q", res, got)
		}
		if fi, err := os.Stat(res); err == nil && fi.Sys().(*syscall.Stat_t).Uid != uid {
			t.Errorf("%s is owned by uid %d, want %d", res, fi.Sys().(*syscall.Stat_t).Uid, uid)
		}
	}
	if fi, err := os.Stat(results); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uid {
		t.Errorf("LOOM_RESULT_DIR %s: %v, want it created by uid %d", results, err, uid)
	}
	if _, err := os.Stat(filepath.Join(data, "scribble")); err == nil {
		t.Errorf("a rank wrote into the read-only data mount")
	}
	e.requireNoContainers()
}

// TestOutOfMemoryTimeoutAndCancel ends jobs the three ways a rank is made
// to end: past its memory, past its time, and cancelled.
func TestOutOfMemoryTimeoutAndCancel(t *testing.T) {
	e := newEnv(t, 2)

	oom := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, MemPerNodeMb: 32,
		Argv: []string{"/probe", "alloc", "256"}, Output: "oom.txt"})
	slow := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, TimeLimitS: 5, Signal: "USR1@3",
		Argv: []string{"/probe", "trap", "600"}, Output: "slow.txt"})
	if j := e.waitEnd(oom, 60*time.Second); j.State != api.JobState_OUT_OF_MEMORY {
		t.Errorf("job allocating 256 MB under --mem=32M ended %s (%s), want OUT_OF_MEMORY", j.State, j.Reason)
	}
	// --signal=USR1@3 reaches the rank at 2 s; SIGTERM at the 5 s limit is
	// ignored (the probe is its container's pid 1), so SIGKILL follows
	// after the agents' 2 s grace.
	if j := e.waitEnd(slow, 60*time.Second); j.State != api.JobState_TIMEOUT {
		t.Errorf("job past --time=0:05 ended %s (%s), want TIMEOUT", j.State, j.Reason)
	}
	if out := readFile(t, filepath.Join(e.dir, "slow.txt")); !strings.Contains(out, "got SIGUSR1") {
		t.Errorf("job with --signal=USR1@3 did not get SIGUSR1 before its limit; output %q", out)
	}

	gang := e.submit(&api.JobSpec{NodesMin: 2, NodesMax: 2, NtasksPerNode: 2, GpusPerNode: 2,
		Argv: []string{"/probe", "sleep", "600"}, Output: "gang-%t.txt"})
	cluster.WaitFor(t, "the gang's ranks to run", 60*time.Second, func() bool {
		j := e.job(gang)
		if j.State != api.JobState_RUNNING {
			return false
		}
		for _, ts := range j.Allocation.Tasks {
			if ts.State != api.TaskState_TASK_RUNNING {
				return false
			}
		}
		return true
	})
	if got := len(e.containers()); got != 4 {
		t.Errorf("%d containers run for a 4-rank gang, want 4", got)
	}
	cancelled := time.Now()
	if _, err := e.jobs.Cancel(cluster.Ctx(t), &api.CancelRequest{JobIds: []uint64{gang}}); err != nil {
		t.Fatal(err)
	}
	j := e.waitEnd(gang, 30*time.Second)
	if j.State != api.JobState_CANCELLED {
		t.Errorf("cancelled gang ended %s, want CANCELLED", j.State)
	}
	// The job is CANCELLED at once; its ranks end as the agents stop them.
	cluster.WaitFor(t, "the cancelled gang's ranks to end", 30*time.Second, func() bool {
		j = e.job(gang)
		for _, ts := range j.Allocation.Tasks {
			if !ts.Ended() {
				return false
			}
		}
		return true
	})
	const grace = 2 * time.Second
	for _, ts := range j.Allocation.Tasks {
		// The end is stamped by the agent when the rank is gone; allow a
		// second over the grace for the report to travel.
		if took := time.UnixMilli(ts.EndedUnixMs).Sub(cancelled); took > grace+time.Second {
			t.Errorf("rank %d ended %s after the cancel, want within the %s grace", ts.Rank, took, grace)
		}
	}
	e.requireNoContainers()
}

// ticks checks that an output file holds "tick 1".."tick n" each exactly
// once, in order: the rank ran once, from start to end.
func ticks(t *testing.T, path string, n int) {
	t.Helper()
	var want strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&want, "tick %d\n", i)
	}
	if got := readFile(t, path); got != want.String() {
		t.Errorf("%s holds %q, want tick 1..%d once each", path, got, n)
	}
}

// TestAgentKill9ReattachesToRunningContainers kills the agent with SIGKILL
// while two jobs run, lets one of them end while no agent watches, and
// starts the agent again: both jobs complete, each rank having run once.
func TestAgentKill9ReattachesToRunningContainers(t *testing.T) {
	e := newEnv(t, 1)
	short := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, Argv: []string{"/probe", "tick", "20"}, Output: "short.txt"})
	long := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 2, Argv: []string{"/probe", "tick", "60"}, Output: "long-%t.txt"})
	cluster.WaitFor(t, "both jobs to print", 60*time.Second, func() bool {
		for _, f := range []string{"short.txt", "long-0.txt", "long-1.txt"} {
			if b, _ := os.ReadFile(filepath.Join(e.dir, f)); !strings.Contains(string(b), "tick 2\n") {
				return false
			}
		}
		return true
	})
	agent := e.agents[0]
	agent.Kill()
	// The short job ends while no agent runs; its container stays, stopped,
	// for the next agent to see.
	cluster.WaitFor(t, "the short job to end with no agent", 30*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(e.dir, "short.txt"))
		return strings.Contains(string(b), "tick 20\n")
	})
	if got := len(e.containers()); got != 3 {
		t.Errorf("%d containers while the agent is down, want 3", got)
	}
	agent.Restart(t)
	for _, id := range []uint64{short, long} {
		j := e.waitEnd(id, 60*time.Second)
		if j.State != api.JobState_COMPLETED || j.RestartCount != 0 {
			t.Errorf("job %d ended %s (%s) after %d restarts, want COMPLETED without restarts", id, j.State, j.Reason, j.RestartCount)
		}
		for _, ts := range j.Allocation.Tasks {
			if ts.Reason != api.TaskEndReason_TASK_END_EXITED {
				t.Errorf("job %d rank %d ended %s (%s), want EXITED", id, ts.Rank, ts.Reason, ts.Message)
			}
		}
	}
	ticks(t, filepath.Join(e.dir, "short.txt"), 20)
	ticks(t, filepath.Join(e.dir, "long-0.txt"), 60)
	ticks(t, filepath.Join(e.dir, "long-1.txt"), 60)
	if log := readFile(t, agent.Log); strings.Count(log, `msg="rank recovered"`) != 3 {
		t.Errorf("the restarted agent recovered %d ranks, want 3", strings.Count(log, `msg="rank recovered"`))
	}
	e.requireNoContainers()
}

// TestLogsFollowStreamsLive follows a running rank with `loom logs -f`:
// lines arrive while the rank runs, and the stream and the --output file
// both hold every line.
func TestLogsFollowStreamsLive(t *testing.T) {
	e := newEnv(t, 1)
	const n = 30
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, Argv: []string{"/probe", "tick", fmt.Sprint(n)}, Output: "ticks.txt"})
	cluster.WaitFor(t, "the job to run", 60*time.Second, func() bool { return e.job(id).State == api.JobState_RUNNING })
	cmd := exec.Command(cluster.Binary(t), "logs", "-f", fmt.Sprint(id))
	cmd.Env = append(os.Environ(), "LOOM_ADDR="+e.srv.Client())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	liveLines := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if !e.job(id).State.Terminal() {
			liveLines++
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("loom logs -f: %v\n%s", err, stderr.String())
	}
	if liveLines == 0 {
		t.Errorf("loom logs -f printed nothing while the job ran")
	}
	if len(lines) != n || lines[0] != "tick 1" || lines[n-1] != fmt.Sprintf("tick %d", n) {
		t.Errorf("loom logs -f printed %d lines %q, want tick 1..%d", len(lines), lines, n)
	}
	if j := e.waitEnd(id, 30*time.Second); j.State != api.JobState_COMPLETED {
		t.Errorf("job ended %s, want COMPLETED", j.State)
	}
	ticks(t, filepath.Join(e.dir, "ticks.txt"), n)
}

// pidOf finds the loom process whose command line holds arg (an agent's
// own data dir): cluster.Proc can only SIGKILL.
func pidOf(t *testing.T, arg string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(string(b), "\x00")
		if len(args) > 1 && args[1] == "agent" && slices.Contains(args, arg) {
			return pid
		}
	}
	t.Fatalf("no agent process with %s on its command line", arg)
	return 0
}

// TestAgentStopLeavesRanksRunning stops the agent the polite way (SIGTERM,
// as an upgrade would): its containers keep running, and the next agent
// re-attaches to them.
func TestAgentStopLeavesRanksRunning(t *testing.T) {
	e := newEnv(t, 1)
	id := e.submit(&api.JobSpec{NodesMin: 1, NodesMax: 1, NtasksPerNode: 1, Argv: []string{"/probe", "tick", "30"}, Output: "ticks.txt"})
	out := filepath.Join(e.dir, "ticks.txt")
	cluster.WaitFor(t, "the job to print", 60*time.Second, func() bool {
		b, _ := os.ReadFile(out)
		return strings.Contains(string(b), "tick 2\n")
	})
	agent := e.agents[0]
	pid := pidOf(t, filepath.Join(e.dir, e.names[0]))
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, "the agent to exit", 30*time.Second, func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return os.IsNotExist(err)
	})
	if got := len(e.containers()); got != 1 {
		t.Fatalf("%d containers after the agent stopped, want its rank's 1 still there", got)
	}
	agent.Kill() // no-op on the exited process; lets Restart start it again
	agent.Restart(t)
	if j := e.waitEnd(id, 60*time.Second); j.State != api.JobState_COMPLETED {
		t.Errorf("job ended %s (%s) across an agent restart, want COMPLETED", j.State, j.Reason)
	}
	ticks(t, out, 30)
	e.requireNoContainers()
}
