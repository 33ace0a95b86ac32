package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

// A job that RunsSteps is an allocation. On each of its nodes the agent
// holds a slot per rank of the allocation: no process, just the node's
// share of the allocation, reported RUNNING while it is held and ended
// once every step task of the job on the node has stopped. What runs are
// the steps' tasks: the batch step (the script, on the first node) and
// the steps srun creates.

// stepKey is the taskKey.step of step id.
func stepKey(id uint32) uint32 { return id + 1 }

// stepID returns the job step k belongs to, if any.
func (k taskKey) stepID() (uint32, bool) { return k.step - 1, k.step != 0 }

// signalsUnknown marks a recovered step task: the step's signal count at
// the next update is taken as delivered.
const signalsUnknown = math.MaxUint32

// reconcileSteps makes this node's part of allocation as match the
// servers' view: its slots, and its steps' tasks. Called with a.mu held.
func (a *Agent) reconcileSteps(as *api.AssignedAllocation, want map[taskKey]bool) {
	j := as.Job
	al := j.Allocation
	for i, r := range al.Ranks {
		if r.Node != a.cfg.Name {
			continue
		}
		k := taskKey{j.Id, al.Generation, r.Rank, 0}
		t := a.tasks[k]
		if t == nil {
			if al.Tasks[i].Ended() || a.ranHere(k) {
				continue
			}
			// A slot has no process to lose: an agent restarted while the
			// allocation runs simply holds it again.
			t = a.startSlot(k, j, r)
		}
		if as.Stop {
			t.requestStop()
		} else {
			want[k] = true
		}
	}
	for _, st := range j.Steps {
		sa := st.Allocation
		if sa == nil {
			continue
		}
		stop := as.Stop || st.State.Terminal()
		for i, r := range sa.Ranks {
			if r.Node != a.cfg.Name {
				continue
			}
			k := taskKey{j.Id, sa.Generation, r.Rank, stepKey(st.Id)}
			ts := sa.Tasks[i]
			t := a.tasks[k]
			if t == nil && a.ranHere(k) {
				continue
			}
			switch {
			case t != nil && stop:
				t.requestStopOf(j)
			case t != nil:
				want[k] = true
				a.deliverSignals(t, st)
			case ts.Ended():
			case stop:
				a.goFunc(func() {
					a.report(k, &api.TaskStatus{Rank: r.Rank, State: api.TaskState_TASK_EXITED,
						Reason: api.TaskEndReason_TASK_END_KILLED, EndedUnixMs: time.Now().UnixMilli(), Message: "cancelled before start"})
				})
			case ts.State == api.TaskState_TASK_PENDING:
				want[k] = true
				t := a.newTask(k, stepView(j, st), r)
				t.full, t.step = j, st
				t.signalsSeen = st.SignalCount
				a.goFunc(func() {
					defer a.forgetTask(t)
					if end, h := a.runTask(t); end != nil {
						a.finishTask(t, end, h)
					}
				})
			default:
				a.goFunc(func() {
					a.report(k, &api.TaskStatus{Rank: r.Rank, State: api.TaskState_TASK_EXITED,
						Reason: api.TaskEndReason_TASK_END_LOST, EndedUnixMs: time.Now().UnixMilli(), Message: "agent restarted and lost the task"})
				})
			}
		}
	}
}

// deliverSignals passes on the signals scancel --signal sent the step
// since the task last looked. Called with a.mu held.
func (a *Agent) deliverSignals(t *task, st *api.Step) {
	if t.signalsSeen == signalsUnknown {
		t.signalsSeen = st.SignalCount
	}
	for ; t.signalsSeen < st.SignalCount; t.signalsSeen++ {
		select {
		case t.signals <- syscall.Signal(st.Signal):
		default: // the task has not taken the last ones yet: one will do
		}
	}
}

// startSlot holds rank r of allocation j on this node until the
// allocation ends here. Called with a.mu held.
func (a *Agent) startSlot(k taskKey, j *api.Job, r *api.Rank) *task {
	t := &task{key: k, job: j, rank: r, stop: make(chan struct{}), finished: make(chan struct{}), slot: true}
	a.tasks[k] = t
	a.outs[outKey{k.job, k.rank, k.step}] = taskOutput{gen: k.gen, done: t.finished}
	a.goFunc(func() {
		defer a.forgetTask(t)
		a.holdSlot(t)
	})
	return t
}

// holdSlot reports the slot running, waits for the allocation to end here
// (or reach its time limit), stops every step task of the job on this
// node, and only then reports the slot ended: the servers hand its GPUs
// to other jobs once nothing of this one runs on them.
func (a *Agent) holdSlot(t *task) {
	j, r := t.job, t.rank
	started := time.Now()
	running := &api.TaskStatus{Rank: r.Rank, State: api.TaskState_TASK_RUNNING, StartedUnixMs: started.UnixMilli()}
	a.setRunning(t, running)
	a.startUsage(t)
	if !a.report(t.key, running) {
		return
	}
	var limit <-chan time.Time
	if j.Spec.TimeLimitS > 0 && j.StartUnixMs > 0 {
		timer := time.NewTimer(time.Until(time.UnixMilli(j.StartUnixMs).Add(time.Duration(j.Spec.TimeLimitS) * time.Second)))
		defer timer.Stop()
		limit = timer.C
	}
	var detach <-chan struct{}
	if a.cfg.DetachOnClose {
		detach = a.ctx.Done()
	}
	end := &api.TaskStatus{Rank: r.Rank, State: api.TaskState_TASK_EXITED, Reason: api.TaskEndReason_TASK_END_KILLED,
		StartedUnixMs: started.UnixMilli(), Message: "allocation ended"}
	select {
	case <-t.stop:
	case <-limit:
		end.Reason, end.Message = api.TaskEndReason_TASK_END_TIMEOUT, fmt.Sprintf("time limit of %s reached", api.FormatSlurmDuration(j.Spec.TimeLimitS))
	case <-detach:
		return // the next agent holds the slot again
	}
	a.stopJobSteps(t.key.job, end.Reason)
	end.EndedUnixMs = time.Now().UnixMilli()
	end.UsedGpuMs = a.usedGPUMs(t)
	a.report(t.key, end)
}

// stopJobSteps stops every step task of job on this node, to end with
// reason, and waits for their ends to be reported.
func (a *Agent) stopJobSteps(job uint64, reason api.TaskEndReason) {
	a.mu.Lock()
	var tasks []*task
	for k, t := range a.tasks {
		if _, ok := k.stepID(); ok && k.job == job {
			tasks = append(tasks, t)
		}
	}
	a.mu.Unlock()
	for _, t := range tasks {
		t.requestStopFor(reason)
	}
	for _, t := range tasks {
		<-t.finished
	}
}

// stepView is job j as a task of step st sees it: the step's allocation
// (its tasks are the ranks: RANK, WORLD_SIZE and MASTER_* are the step's)
// and, for the batch step, the job's spec (the script, its output file);
// for an srun step the step's spec with the job's limits, image and
// mounts.
func stepView(j *api.Job, st *api.Step) *api.Job {
	v := &api.Job{
		Id: j.Id, User: j.User, Uid: j.Uid, Gid: j.Gid, State: j.State, StartUnixMs: j.StartUnixMs,
		RestartCount: j.RestartCount, ArrayJobId: j.ArrayJobId, ArrayTaskId: j.ArrayTaskId, SubmitHost: j.SubmitHost,
		Secret: j.Secret, // every step's tasks prove it to netcoll
		Spec:   j.Spec, Allocation: st.Allocation,
		// The one step of a view names the step it is of (%s in --output).
		Steps: []*api.Step{{Id: st.Id}},
	}
	if st.Id != api.StepBatch {
		spec := proto.Clone(st.Spec).(*api.JobSpec)
		spec.Name = j.Spec.Name
		spec.Image, spec.Mounts = j.Spec.Image, j.Spec.Mounts
		spec.TimeLimitS, spec.Signal = j.Spec.TimeLimitS, j.Spec.Signal
		spec.Partition, spec.Account = j.Spec.Partition, j.Spec.Account
		spec.NtasksPerNode, spec.CpusPerTask = j.Spec.NtasksPerNode, j.Spec.CpusPerTask
		if spec.WorkingDir == "" {
			spec.WorkingDir = j.Spec.WorkingDir
		}
		v.Spec = spec
	}
	return v
}

// taskOutputs returns where task k (rank r of job view j) writes. A
// gang's rank and the batch step write to --output/--error (default
// slurm-%j.out); an srun step's task writes to the step's --output when
// it has one, else to its own files in the agent's data dir, one per
// task and stream, which srun reads back through the servers: each line
// is then known to come from its task.
func (a *Agent) taskOutputs(k taskKey, j *api.Job, r *api.Rank) (stdout, stderr string) {
	id, ok := k.stepID()
	if !ok || id == api.StepBatch || j.Spec.Output != "" {
		return outputPaths(j, r)
	}
	dir := a.stepDir(k)
	stdout = filepath.Join(dir, fmt.Sprintf("task-%d.out", r.Rank))
	stderr = stdout
	if j.Spec.Error != "" {
		_, stderr = outputPaths(j, r)
	} else {
		stderr = filepath.Join(dir, fmt.Sprintf("task-%d.err", r.Rank))
	}
	return stdout, stderr
}

// stepDir is where a step's tasks keep their output on this node.
func (a *Agent) stepDir(k taskKey) string {
	id, _ := k.stepID()
	return filepath.Join(a.cfg.DataDir, "jobs", fmt.Sprintf("%d.%d", k.job, k.gen), "step-"+api.StepName(id))
}

// prepareStepDir makes a step's output dir, owned by the job's user who
// opens the files there. Its parent, which also holds the batch script,
// stays the agent's (agentOwnedDir): the user owns only the new step dir,
// made by the agent in a directory the user cannot change, so nothing
// there can be swapped under the agent.
func (a *Agent) prepareStepDir(k taskKey, j *api.Job) error {
	dir := a.stepDir(k)
	if err := agentOwnedDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("step output dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("step output dir: %w", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(dir, int(j.Uid), int(j.Gid)); err != nil {
			return fmt.Errorf("chown step output dir: %w", err)
		}
	}
	return nil
}

// signalledBeforeLimit says whether --signal=spec warns task k before the
// time limit: every rank of a gang; with B: the batch step only, without
// it every other step.
func signalledBeforeLimit(k taskKey, spec string) bool {
	id, ok := k.stepID()
	if !ok {
		return true
	}
	return (id == api.StepBatch) == api.SignalBatchOnly(spec)
}

// stepEnv is the environment of a step task: the rank contract over the
// step's tasks, with Slurm's allocation variables (of the whole job) and
// step variables, and LOOM_ADDR so that srun in the script finds the
// servers.
func (a *Agent) stepEnv(t *task) []string {
	v, r := t.job, t.rank
	env := rankEnvMap(v, r, a.cfg.Name)
	id, _ := t.key.stepID()
	job := t.full.Allocation
	u := func(n int) string { return strconv.Itoa(n) }
	jobID := strconv.FormatUint(v.Id, 10)
	var perNodeTasks, perNodeCPUs []int
	gpusHere, cpusHere := 0, 0
	for _, name := range job.Nodes {
		tasks, cpus := 0, 0
		for _, rk := range job.Ranks {
			if rk.Node == name {
				tasks++
				cpus += int(rk.Cpus)
				if name == a.cfg.Name {
					gpusHere += len(rk.GpuUuids)
					cpusHere += int(rk.Cpus)
				}
			}
		}
		perNodeTasks = append(perNodeTasks, tasks)
		perNodeCPUs = append(perNodeCPUs, cpus)
	}
	alloc := map[string]string{
		"SLURM_JOBID":             jobID,
		"SLURM_JOB_NODELIST":      api.CompressHostlist(job.Nodes),
		"SLURM_NODELIST":          api.CompressHostlist(job.Nodes),
		"SLURM_JOB_NUM_NODES":     u(len(job.Nodes)),
		"SLURM_NNODES":            u(len(job.Nodes)),
		"SLURM_NTASKS":            u(len(job.Ranks)),
		"SLURM_NPROCS":            u(len(job.Ranks)),
		"SLURM_TASKS_PER_NODE":    api.SlurmCounts(perNodeTasks),
		"SLURM_JOB_CPUS_PER_NODE": api.SlurmCounts(perNodeCPUs),
		"SLURM_CPUS_ON_NODE":      u(cpusHere),
		"SLURM_GPUS_ON_NODE":      u(gpusHere),
		"SLURM_SUBMIT_HOST":       v.SubmitHost,
		"SLURM_CLUSTER_NAME":      "loom",
	}
	maps.Copy(alloc, a.clientEnv())
	if n := v.Spec.NtasksPerNode; n != 0 {
		alloc["SLURM_NTASKS_PER_NODE"] = u(int(n))
	}
	if c := v.Spec.CpusPerTask; c != 0 {
		alloc["SLURM_CPUS_PER_TASK"] = u(int(c))
	}
	if acct := v.Spec.Account; acct != "" {
		alloc["SLURM_JOB_ACCOUNT"] = acct
	}
	for k, val := range alloc {
		env[k] = val
	}
	// The links come first: inside a Loom allocation srun, scontrol and
	// the rest must reach Loom even on a host that also has Slurm's
	// commands in /usr/bin. The directory holds only those links, so it
	// shadows nothing else on the job's PATH.
	if a.cmdDir != "" {
		env["PATH"] = a.cmdDir + ":" + env["PATH"]
	}
	if id != api.StepBatch {
		sa := v.Allocation
		var perNode []int
		for _, name := range sa.Nodes {
			n := 0
			for _, rk := range sa.Ranks {
				if rk.Node == name {
					n++
				}
			}
			perNode = append(perNode, n)
		}
		sid := strconv.FormatUint(uint64(id), 10)
		step := map[string]string{
			"SLURM_STEP_ID":             sid,
			"SLURM_STEPID":              sid,
			"SLURM_STEP_NUM_TASKS":      u(len(sa.Ranks)),
			"SLURM_NTASKS":              u(len(sa.Ranks)),
			"SLURM_NPROCS":              u(len(sa.Ranks)),
			"SLURM_STEP_NUM_NODES":      u(len(sa.Nodes)),
			"SLURM_NNODES":              u(len(sa.Nodes)),
			"SLURM_STEP_NODELIST":       api.CompressHostlist(sa.Nodes),
			"SLURM_STEP_TASKS_PER_NODE": api.SlurmCounts(perNode),
			"SLURM_TASKS_PER_NODE":      api.SlurmCounts(perNode),
			"SLURM_STEP_GPUS":           strings.Join(uintStrings(r.GpuIndexes), ","),
		}
		if c := t.step.GetSpec().GetCpusPerTask(); c != 0 {
			step["SLURM_CPUS_PER_TASK"] = u(int(c))
		}
		for k, val := range step {
			env[k] = val
		}
	}
	out := make([]string, 0, len(env))
	for k, val := range env {
		out = append(out, k+"="+val)
	}
	return out
}

func uintStrings(v []uint32) []string {
	out := make([]string, len(v))
	for i, n := range v {
		out[i] = strconv.FormatUint(uint64(n), 10)
	}
	return out
}

// slurmCommands are the commands job steps may call; they are names of
// the one loom binary.
var slurmCommands = []string{"srun", "scontrol", "scancel", "sbatch", "salloc", "squeue", "sacct", "sinfo"}

// linkCommands links the Slurm commands in dir to binary (default the
// running executable) and returns dir, or "" when it cannot.
func linkCommands(dir, binary string, log *slog.Logger) string {
	if binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return ""
		}
		binary = exe
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Warn("cannot provide srun to job steps", "dir", dir, "err", err)
		return ""
	}
	for _, c := range slurmCommands {
		link := filepath.Join(dir, c)
		_ = os.Remove(link)
		if err := os.Symlink(binary, link); err != nil {
			log.Warn("cannot provide srun to job steps", "link", link, "err", err)
			return ""
		}
	}
	return dir
}

// clientEnv is how the Slurm commands inside a job reach the servers: the
// address (ClientAddr, else the servers the agent uses) and, for TCP, the
// CA that verifies them or the word that the cluster runs without TLS.
// Who the commands are is proved again by the connection (MUNGE, or the
// local socket's peer credentials), never by these variables.
func (a *Agent) clientEnv() map[string]string {
	addr := a.cfg.ClientAddr
	if addr == "" {
		addr = strings.Join(a.cfg.Servers, ",")
	}
	env := map[string]string{"LOOM_ADDR": addr}
	switch {
	case a.cfg.TLS != nil:
		env["LOOM_CACERT"] = a.cfg.TLS.CA
	default:
		env["LOOM_TLS"] = "false"
	}
	return env
}
