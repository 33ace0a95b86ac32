package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loomhpc/loom/agent/driver"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/auth"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// task is one rank, allocation slot or step task this agent runs.
type task struct {
	key taskKey
	// job is the job as the task sees it: for a step task, the step's
	// view (stepView), whose allocation is the step's.
	job      *api.Job
	rank     *api.Rank
	stop     chan struct{} // closed to ask the rank to stop
	stopOnce sync.Once
	finished chan struct{} // closed when the goroutine has reported the end
	stdout   string
	stderr   string
	// signals carries scancel --signal to the supervising goroutine;
	// signalsSeen (guarded by the agent's mu) is the step's signal count
	// already delivered.
	signals     chan syscall.Signal
	signalsSeen uint32
	// full and step are the job as assigned and the step, for a step
	// task started by this agent (nil for recovered ones: they are only
	// supervised, and their environment was made at start).
	full *api.Job
	step *api.Step
	// slot marks an allocation's slot: no process of its own.
	slot bool
	// stopReason is how a stop request ends the task (set before stop
	// closes): KILLED, or TIMEOUT when its allocation reached its limit.
	stopReason api.TaskEndReason
	// preempted (set before stop closes) says the stop is a preemption:
	// the task gets its job's --signal and its lead first.
	preempted bool
	// memMB is the memory limit the task was started with.
	memMB uint64
	// cores are the node's cores the task runs on, out of its
	// allocation's (Rank.cores).
	cores []int
	// running is the task's running report (guarded by the agent's mu;
	// nil before it runs): usage reports repeat it with the GPU time used.
	running *api.TaskStatus
}

func (t *task) requestStop() { t.requestStopFor(api.TaskEndReason_TASK_END_KILLED) }

// requestStopFor asks the task to stop, to end with reason.
func (t *task) requestStopFor(reason api.TaskEndReason) {
	t.stopOnce.Do(func() {
		t.stopReason = reason
		close(t.stop)
	})
}

// requestStopOf asks the task to stop because job j stops: a preemption
// when the scheduler preempted j, otherwise a plain stop.
func (t *task) requestStopOf(j *api.Job) {
	t.stopOnce.Do(func() {
		t.stopReason = api.TaskEndReason_TASK_END_KILLED
		t.preempted = j.Preempted()
		close(t.stop)
	})
}

// reconcile makes the node's ranks match the servers' view: start what is
// assigned and not running, stop what is over or stale, and report ranks
// the servers think run here but this agent does not know.
func (a *Agent) reconcile(u *api.AllocationUpdate) {
	a.mu.Lock()
	defer a.mu.Unlock()
	want := map[taskKey]bool{}
	for _, as := range u.Allocations {
		if as.Job.Spec.RunsSteps() {
			a.reconcileSteps(as, want)
			continue
		}
		j := as.Job
		al := j.Allocation
		for i, r := range al.Ranks {
			if r.Node != a.cfg.Name {
				continue
			}
			k := taskKey{j.Id, al.Generation, r.Rank, 0}
			ts := al.Tasks[i]
			t := a.tasks[k]
			if t == nil && a.ranHere(k) {
				// Its end is reported; this update was taken before the
				// servers heard of the start or the end, and reached an
				// agent that lagged behind the stream.
				continue
			}
			switch {
			case as.Stop && t != nil:
				t.requestStopOf(j)
			case as.Stop && !ts.Ended():
				// Never started here (or already gone): tell the servers so
				// the allocation's resources are released.
				a.goFunc(func() {
					a.report(k, &api.TaskStatus{Rank: r.Rank, State: api.TaskState_TASK_EXITED,
						Reason: api.TaskEndReason_TASK_END_KILLED, EndedUnixMs: time.Now().UnixMilli(), Message: "cancelled before start"})
				})
			case !as.Stop && t == nil && ts.State == api.TaskState_TASK_PENDING:
				want[k] = true
				a.startTask(k, j, r)
			case !as.Stop && t == nil && ts.State == api.TaskState_TASK_RUNNING:
				a.goFunc(func() {
					a.report(k, &api.TaskStatus{Rank: r.Rank, State: api.TaskState_TASK_EXITED,
						Reason: api.TaskEndReason_TASK_END_LOST, EndedUnixMs: time.Now().UnixMilli(), Message: "agent restarted and lost the rank"})
				})
			}
			if t != nil && !as.Stop {
				want[k] = true
			}
		}
	}
	// Ranks of allocations no longer assigned here (a newer generation, or
	// an allocation we missed the end of) must not keep running.
	for k, t := range a.tasks {
		if !want[k] {
			t.requestStop()
		}
	}
}

// ranHere says whether this agent already ran rank k to its end. A rank
// starts at most once per generation: starting it again would run the
// user's program twice and truncate its output. Called with a.mu held.
func (a *Agent) ranHere(k taskKey) bool {
	o, ok := a.outs[outKey{k.job, k.rank, k.step}]
	return ok && o.gen == k.gen
}

// startTask launches rank r in its own goroutine. Called with a.mu held.
func (a *Agent) startTask(k taskKey, j *api.Job, r *api.Rank) {
	t := a.newTask(k, j, r)
	a.goFunc(func() {
		defer a.forgetTask(t)
		if end, h := a.runTask(t); end != nil {
			a.finishTask(t, end, h)
		}
	})
}

// newTask registers a rank as this agent's. Called with a.mu held.
func (a *Agent) newTask(k taskKey, j *api.Job, r *api.Rank) *task {
	t := &task{key: k, job: j, rank: r, stop: make(chan struct{}), finished: make(chan struct{}), signals: make(chan syscall.Signal, 4)}
	t.stdout, t.stderr = a.taskOutputs(k, j, r)
	a.tasks[k] = t
	a.outs[outKey{k.job, k.rank, k.step}] = taskOutput{gen: k.gen, uid: j.Uid, stdout: t.stdout, stderr: t.stderr, done: t.finished}
	pruneOutputs(a.outs, maxRememberedOutputs)
	return t
}

// maxRememberedOutputs bounds how many ranks' output paths an agent keeps
// for loom logs; beyond it the oldest finished jobs' are forgotten (their
// files stay where --output put them).
const maxRememberedOutputs = 20000

// pruneOutputs drops the finished ranks of the oldest jobs until outs
// holds at most limit entries. Running ranks are always kept.
func pruneOutputs(outs map[outKey]taskOutput, limit int) {
	if len(outs) <= limit {
		return
	}
	var done []outKey
	for k, o := range outs {
		if isClosed(o.done) {
			done = append(done, k)
		}
	}
	slices.SortFunc(done, func(a, b outKey) int {
		if a.job != b.job {
			return cmp.Compare(a.job, b.job)
		}
		return cmp.Compare(a.rank, b.rank)
	})
	// Prune to 90% so the walk is not repeated for every new rank.
	for _, k := range done {
		if len(outs) <= limit*9/10 {
			break
		}
		delete(outs, k)
	}
}

func (a *Agent) forgetTask(t *task) {
	a.mu.Lock()
	delete(a.tasks, t.key)
	a.mu.Unlock()
	close(t.finished)
}

// finishTask reports how the rank ended, then lets the driver clean up and
// forgets the rank's record. An agent that dies before the report is taken
// finds the ended rank again on restart and reports it then; the servers
// ignore a second report of an end.
func (a *Agent) finishTask(t *task, end *api.TaskStatus, h driver.Handle) {
	end.Rank = t.rank.Rank
	end.State = api.TaskState_TASK_EXITED
	end.EndedUnixMs = time.Now().UnixMilli()
	end.OutputPath = t.stdout
	end.UsedGpuMs = a.usedGPUMs(t)
	if !a.report(t.key, end) {
		return // the agent is stopping: keep the record for the next run
	}
	if h != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := h.Cleanup(ctx); err != nil {
			a.log.Warn("rank cleanup failed", "job_id", t.key.job, "rank", t.rank.Rank, "err", err)
		}
		cancel()
	}
	if err := a.state.deleteTask(t.key); err != nil {
		a.log.Warn("forgetting the rank's record failed", "job_id", t.key.job, "rank", t.rank.Rank, "err", err)
	}
}

// runTask starts the rank and supervises it to its end. The handle is nil
// when the rank never started; the status is nil when the agent stopped
// and left the rank running (DetachOnClose).
func (a *Agent) runTask(t *task) (*api.TaskStatus, driver.Handle) {
	j, r := t.job, t.rank
	log := a.log.With("job_id", j.Id, "rank", r.Rank)
	spec, err := a.taskSpec(t)
	if err != nil {
		log.Warn("rank not started", "err", err)
		return &api.TaskStatus{Reason: api.TaskEndReason_TASK_END_START_FAILED, ExitCode: 1, Message: err.Error()}, nil
	}
	// The record goes first: a rank the driver starts is never one a
	// restarted agent does not know of. It holds the start time as of
	// this moment, a few milliseconds before the driver's start, rather
	// than being written again after it: one write (and fsync) per rank
	// instead of two, and a restarted agent times the limit from at most
	// that much too early.
	started := time.Now()
	rec := &taskRecord{Job: j, Rank: r, Stdout: t.stdout, Stderr: t.stderr, Cores: t.cores, StartedUnixMs: started.UnixMilli()}
	if err := a.state.putTask(t.key, rec); err != nil {
		log.Warn("rank not started", "err", err)
		return &api.TaskStatus{Reason: api.TaskEndReason_TASK_END_START_FAILED, ExitCode: 1, Message: "agent state: " + err.Error()}, nil
	}
	h, err := a.cfg.Driver.Start(a.ctx, spec)
	if err != nil {
		log.Warn("rank failed to start", "err", err)
		return &api.TaskStatus{Reason: api.TaskEndReason_TASK_END_START_FAILED, ExitCode: 1, Message: err.Error()}, nil
	}
	started = time.Now()
	a.metrics.observeStart(t.key, j, started)
	log.Info("rank started", "pid", h.PID(), "stdout", t.stdout)
	return a.superviseTask(t, h, started), h
}

// superviseTask reports the rank running and waits for its end, enforcing
// the time limit (counted from started) and stop requests. It returns nil
// when the agent stops with DetachOnClose: the rank runs on, and the next
// agent re-attaches to it.
func (a *Agent) superviseTask(t *task, h driver.Handle, started time.Time) *api.TaskStatus {
	j, r := t.job, t.rank
	log := a.log.With("job_id", j.Id, "rank", r.Rank)
	running := &api.TaskStatus{Rank: r.Rank, State: api.TaskState_TASK_RUNNING,
		StartedUnixMs: started.UnixMilli(), OutputPath: t.stdout}
	a.setRunning(t, running)
	a.startUsage(t)
	a.goFunc(func() { a.report(t.key, running) })

	// A gang's time limit counts from its rank's start; a step's from
	// its job's, whose limit it shares.
	from := started
	if t.key.step != 0 && j.StartUnixMs > 0 {
		from = time.UnixMilli(j.StartUnixMs)
	}
	var limit, warn <-chan time.Time
	if j.Spec.TimeLimitS > 0 {
		timer := time.NewTimer(time.Duration(j.Spec.TimeLimitS)*time.Second - time.Since(from))
		defer timer.Stop()
		limit = timer.C
	}
	// --signal=SIG@SECS: warn SECS before the limit (validated at submit,
	// so a parse error here cannot happen): every rank of a gang; with B:
	// the batch step only, otherwise the other steps.
	warnSig, lead, _ := api.ParseSignal(j.Spec.Signal)
	if j.Spec.Signal != "" && j.Spec.TimeLimitS > 0 && signalledBeforeLimit(t.key, j.Spec.Signal) {
		timer := time.NewTimer(time.Duration(j.Spec.TimeLimitS-lead)*time.Second - time.Since(from))
		defer timer.Stop()
		warn = timer.C
	}
	type result struct {
		ex  driver.Exit
		err error
	}
	waitCtx, cancelWait := context.WithCancel(context.Background())
	defer cancelWait()
	exited := make(chan result, 1)
	go func() {
		ex, err := h.Wait(waitCtx)
		exited <- result{ex, err}
	}()
	var detach <-chan struct{}
	if a.cfg.DetachOnClose {
		detach = a.ctx.Done()
	}
	reason := api.TaskEndReason_TASK_END_EXITED
	msg := ""
	var res result
wait:
	select {
	case <-warn:
		log.Info("signalling the rank before its time limit", "signal", warnSig, "seconds_left", lead)
		if err := h.Signal(warnSig); err != nil {
			log.Warn("could not signal the rank", "err", err)
		}
		warn = nil
		goto wait
	case sig := <-t.signals:
		log.Info("signalling the task (scancel --signal)", "signal", sig)
		if err := h.Signal(sig); err != nil {
			log.Warn("could not signal the task", "err", err)
		}
		goto wait
	case <-detach:
		log.Info("agent stopping; rank left running for the next agent")
		return nil
	case res = <-exited:
	case <-limit:
		reason, msg = api.TaskEndReason_TASK_END_TIMEOUT, fmt.Sprintf("time limit of %s reached", api.FormatSlurmDuration(j.Spec.TimeLimitS))
		log.Info("rank reached its time limit")
		res.ex, res.err = driver.Stop(context.Background(), h, a.cfg.KillGrace)
	case <-t.stop:
		reason, msg = t.stopReason, "stopped by the agent (job cancelled or gang ended)"
		if reason == api.TaskEndReason_TASK_END_TIMEOUT {
			msg = fmt.Sprintf("time limit of %s reached", api.FormatSlurmDuration(j.Spec.TimeLimitS))
		}
		if t.preempted && j.Spec.Signal != "" {
			// As before a time limit: --signal to the tasks it names, and
			// its lead to checkpoint for every task of the job (a batch
			// script's srun keeps relaying its step's output), then
			// SIGTERM and the kill grace.
			msg = "preempted"
			if signalledBeforeLimit(t.key, j.Spec.Signal) {
				log.Info("job preempted: signalling the task before stopping it", "signal", warnSig, "seconds", lead)
				if err := h.Signal(warnSig); err != nil {
					log.Warn("could not signal the task", "err", err)
				}
			}
			lt := time.NewTimer(time.Duration(lead) * time.Second)
			select {
			case res = <-exited:
				lt.Stop()
				break wait
			case <-lt.C:
			}
		} else if t.preempted {
			msg = "preempted"
		}
		res.ex, res.err = driver.Stop(context.Background(), h, a.cfg.KillGrace)
	}
	ex, werr := res.ex, res.err
	st := &api.TaskStatus{Reason: reason, ExitCode: int32(ex.Code), Signal: int32(ex.Signal), StartedUnixMs: started.UnixMilli(), Message: msg}
	switch {
	case werr != nil && errors.Is(werr, driver.ErrStart):
		st.Reason, st.Message = api.TaskEndReason_TASK_END_START_FAILED, werr.Error()
	case werr != nil:
		// The driver lost the rank: how it ended is unknown, and the
		// servers treat it as a lost node's rank (requeue or fail).
		st.Reason, st.Message = api.TaskEndReason_TASK_END_LOST, werr.Error()
	case ex.OOM:
		st.Reason = api.TaskEndReason_TASK_END_OOM
		st.Message = fmt.Sprintf("killed by the out-of-memory killer at its limit of %d MB", cmp.Or(t.memMB, r.MemMb))
		if id, ok := t.key.stepID(); ok {
			// As Slurm names it (StepId=12.batch): which of the job's
			// steps outgrew the limit.
			st.Message = fmt.Sprintf("step %d.%s %s", j.Id, api.StepName(id), st.Message)
		}
	}
	log.Info("rank ended", "exit_code", ex.Code, "signal", ex.Signal, "reason", st.Reason)
	return st
}

// recoverTasks re-attaches to the ranks an earlier run of this agent
// started, before the first allocation update arrives, so that they are
// known (not reported lost, not started twice). Ranks of stale generations
// are recovered too; the first update stops them. Records of ranks the
// driver no longer has are dropped: the servers' view then decides (a rank
// they think runs is reported lost, a pending one is started).
func (a *Agent) recoverTasks() error {
	recs, err := a.state.allTasks()
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(recs))
	byID := map[string]taskKey{}
	for k := range recs {
		id := taskID(k)
		ids = append(ids, id)
		byID[id] = k
	}
	ctx, cancel := context.WithTimeout(a.ctx, time.Minute)
	defer cancel()
	handles, err := a.cfg.Driver.Recover(ctx, ids)
	if err != nil {
		return fmt.Errorf("agent: recovering ranks: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, rec := range recs {
		h, ok := handles[taskID(k)]
		if !ok {
			if err := a.state.deleteTask(k); err != nil {
				return fmt.Errorf("agent: state: %w", err)
			}
			continue
		}
		started := time.Now()
		if rec.StartedUnixMs > 0 {
			started = time.UnixMilli(rec.StartedUnixMs)
		}
		t := a.newTask(k, rec.Job, rec.Rank)
		t.signalsSeen = signalsUnknown
		t.cores = rec.Cores
		a.log.Info("rank recovered", "job_id", k.job, "generation", k.gen, "rank", k.rank, "driver", a.cfg.Driver.Name())
		a.goFunc(func() {
			defer a.forgetTask(t)
			if end := a.superviseTask(t, h, started); end != nil {
				a.finishTask(t, end, h)
			}
		})
	}
	return nil
}

// taskID names a task to the driver: job.generation.rank for a gang's
// rank, job.generation.sSTEP.task for a step's task.
func taskID(k taskKey) string {
	if id, ok := k.stepID(); ok {
		return fmt.Sprintf("%d.%d.s%s.%d", k.job, k.gen, api.StepName(id), k.rank)
	}
	return fmt.Sprintf("%d.%d.%d", k.job, k.gen, k.rank)
}

// errRootRefused is why a job submitted by root does not start.
var errRootRefused = errors.New("refusing to run a job as root (uid 0); an admin may allow it with the agent's allow_root setting")

// taskSpec turns a rank or step task into what the driver needs:
// identity, script or command, environment and output files. The job's
// user is the uid the servers proved; its name, primary group and groups
// come from this node's NSS, and a uid that does not resolve here is
// refused.
func (a *Agent) taskSpec(t *task) (driver.TaskSpec, error) {
	j, r, stdout, stderr := t.job, t.rank, t.stdout, t.stderr
	env := rankEnv(j, r, a.cfg.Name)
	if t.full != nil {
		env = a.stepEnv(t)
	}
	s := driver.TaskSpec{
		ID:     taskID(t.key),
		Env:    env,
		Dir:    workingDir(j),
		UID:    j.Uid,
		GID:    j.Gid,
		Stdout: stdout,
		Stderr: stderr,
		GPUs:   r.GpuUuids,
		CPUs:   r.Cpus,
		MemMB:  nodeMemMB(j.Allocation, r),
		Image:  j.Spec.Image,

		GPUIndexes: r.GpuIndexes,
		Labels: map[string]string{
			"loom.job": strconv.FormatUint(j.Id, 10), "loom.generation": strconv.FormatUint(j.Allocation.Generation, 10),
			"loom.rank": strconv.FormatUint(uint64(r.Rank), 10), "loom.user": j.User,
		},
	}
	if id, ok := t.key.stepID(); ok {
		s.Labels["loom.step"] = api.StepName(id)
	}
	if t.full != nil {
		// A step's view charges no memory: the job's --mem on this node
		// holds for every step task here.
		s.MemMB = nodeMemMB(t.full.Allocation, r)
	}
	t.memMB = s.MemMB
	spec := j.Spec
	if t.full != nil {
		spec = t.full.Spec
	}
	s.PrivateTmp, s.AllowSwap = spec.PrivateTmp, spec.AllowSwap
	if err := a.bindCPUs(t, &s); err != nil {
		return s, err
	}
	s.TruncateStdout, s.TruncateStderr = truncateOutputsOf(j, stdout, stderr, func(o *api.Rank) (string, string) {
		return a.taskOutputs(taskKey{t.key.job, t.key.gen, o.Rank, t.key.step}, j, o)
	})
	if id, ok := t.key.stepID(); ok && id != api.StepBatch && j.Spec.Output == "" {
		if err := a.prepareStepDir(t.key, j); err != nil {
			return s, err
		}
	}
	if j.Uid == 0 && !a.cfg.AllowRoot {
		return s, errRootRefused
	}
	euid := uint32(os.Geteuid())
	if euid != 0 && euid != j.Uid {
		return s, fmt.Errorf("the agent runs as uid %d and cannot run uid %d's job; run the agent as root", euid, j.Uid)
	}
	u, err := auth.LookupUser(j.Uid)
	if err != nil {
		return s, fmt.Errorf("node %s: %w", a.cfg.Name, err)
	}
	s.GID = u.GID
	s.Labels["loom.user"] = u.Name
	if euid == 0 && j.Uid != 0 {
		s.Groups = u.Groups
	}
	if j.Spec.Image == "" {
		// The exec driver opens these as the user; say which option is at
		// fault before it tries. (A container's paths are its mounts'.)
		if err := checkJobPaths(u, s.Dir, stdout, stderr); err != nil {
			return s, err
		}
	}
	if j.Spec.Image != "" {
		m, err := a.containerMounts(j, s)
		if err != nil {
			return s, err
		}
		s.Mounts = m
	}
	if len(j.Spec.Argv) > 0 {
		s.Argv = j.Spec.Argv
		return s, nil
	}
	path, err := a.writeScript(j, r.Rank, u)
	if err != nil {
		return s, err
	}
	if j.Spec.Image != "" {
		// The script lives in the agent's data dir; the container sees it
		// at the same path, read-only.
		s.Mounts = append(s.Mounts, driver.Mount{Source: filepath.Dir(path), Dest: filepath.Dir(path), ReadOnly: true})
	}
	s.Argv = append(interpreter(j.Spec.Script), path)
	return s, nil
}

// interpreter returns the command that runs script: its #! line split as
// the kernel splits it (the interpreter, then the rest of the line as one
// argument), or /bin/sh. The agent starts the interpreter itself rather
// than exec'ing the script: a script written a moment ago may still be
// open for writing in a child another goroutine has just forked, and
// exec'ing it then fails with ETXTBSY (the job would exit 126).
func interpreter(script string) []string {
	line, ok := strings.CutPrefix(script, "#!")
	if !ok {
		return []string{"/bin/sh"}
	}
	line, _, _ = strings.Cut(line, "\n")
	interp, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	interp, arg = strings.TrimSpace(interp), strings.TrimSpace(arg)
	if i := strings.IndexByte(interp, '\t'); i >= 0 {
		interp, arg = interp[:i], strings.TrimSpace(interp[i+1:]+" "+arg)
	}
	if interp == "" {
		return []string{"/bin/sh"}
	}
	if arg == "" {
		return []string{interp}
	}
	return []string{interp, arg}
}

// nodeMemMB is the memory the job has on rank r's node (--mem is per
// node; the allocation charges it to the node's first rank). Each rank of
// the node is limited to it: ranks in separate containers cannot share one
// cgroup limit.
func nodeMemMB(a *api.Allocation, r *api.Rank) uint64 {
	for _, o := range a.Ranks {
		if o.Node == r.Node && o.MemMb > 0 {
			return o.MemMb
		}
	}
	return r.MemMb
}

// writeScript stores the batch script of a job generation, readable and
// executable by the job's user only. The directory belongs to the agent
// (root) and others may only pass through it, so the user cannot swap
// anything in it; the file is created new (O_EXCL, O_NOFOLLOW) and given
// to the user through its descriptor, never by path. Ranks on one node
// write it at once, each through its own temporary file and an atomic
// rename.
func (a *Agent) writeScript(j *api.Job, rank uint32, u auth.User) (string, error) {
	dir := filepath.Join(a.cfg.DataDir, "jobs", fmt.Sprintf("%d.%d", j.Id, j.Allocation.Generation))
	if err := agentOwnedDir(dir); err != nil {
		return "", fmt.Errorf("script dir: %w", err)
	}
	path := filepath.Join(dir, "script")
	tmp := fmt.Sprintf("%s.tmp%d", path, rank)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("write script: %w", err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o500)
	if err != nil {
		return "", fmt.Errorf("write script: %w", err)
	}
	if os.Geteuid() == 0 {
		if err := f.Chown(int(u.UID), int(u.GID)); err != nil {
			f.Close()
			return "", fmt.Errorf("chown script: %w", err)
		}
	}
	_, werr := f.WriteString(j.Spec.Script)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return "", fmt.Errorf("write script: %w", werr)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write script: %w", err)
	}
	return path, nil
}

// agentOwnedDir makes dir a directory of the agent's that others may
// pass through but not list or change (0711). A directory left there by
// an older agent, which gave it to the job's user, is made anew.
func agentOwnedDir(dir string) error {
	err := os.Mkdir(dir, 0o711)
	if err == nil || !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if fi.IsDir() && ok && int(st.Uid) == os.Geteuid() {
		return os.Chmod(dir, 0o711)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Mkdir(dir, 0o711)
}

// report sends the state of task k until a server takes it, the report
// turns out stale, or the agent stops. It says whether the servers have
// decided on the report (taken or refused for good).
func (a *Agent) report(k taskKey, ts *api.TaskStatus) bool {
	job := k.job
	req := &api.TaskUpdateRequest{Node: a.cfg.Name, JobId: k.job, Generation: k.gen, Tasks: []*api.TaskStatus{ts}}
	if id, ok := k.stepID(); ok {
		req.Step = &id
	}
	b := newBackoff(50*time.Millisecond, 2*time.Second)
	for {
		ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
		_, err := a.client.UpdateTasks(ctx, req)
		cancel()
		switch status.Code(err) {
		case codes.OK:
			return true
		case codes.FailedPrecondition, codes.NotFound, codes.InvalidArgument, codes.PermissionDenied:
			a.log.Warn("task report refused", "job_id", job, "rank", ts.Rank, "err", err)
			return true
		}
		if a.ctx.Err() != nil {
			return false
		}
		select {
		case <-time.After(b.next()):
		case <-a.ctx.Done():
			return false
		}
	}
}
