package state

import (
	"errors"
	"fmt"
	"slices"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

// Pending reasons the FSM itself sets; the scheduler supplies the rest.
const (
	ReasonNone = "None"
)

func applySubmitJob(t *txn, m proto.Message) *Result {
	c := m.(*api.SubmitJobCommand)
	if c.GetRequest().GetSpec() == nil {
		return &Result{Err: malformed("SubmitJob without a job spec")}
	}
	id, err := submitOne(t, c.Request, c.NowUnixMs, c.Limits)
	return &Result{JobID: id, Err: err, Errs: []error{err}}
}

func applySubmitJobs(t *txn, m proto.Message) *Result {
	c := m.(*api.SubmitJobsCommand)
	res := &Result{JobIDs: make([]uint64, len(c.Requests)), Errs: make([]error, len(c.Requests))}
	for i, req := range c.Requests {
		if req.GetSpec() == nil {
			res.Errs[i] = malformed("SubmitJobs request %d without a job spec", i)
			continue
		}
		res.JobIDs[i], res.Errs[i] = submitOne(t, req, c.NowUnixMs, c.Limits)
	}
	res.Err = errors.Join(res.Errs...)
	return res
}

// submitOne adds a job, or returns the job already submitted with the
// same idempotency token. A spec with --array becomes one job per task,
// with consecutive ids; the first id is the array's (Slurm's %A) and is
// what the submitter gets back. A spec whose --array cannot be parsed is
// recorded as FAILED with the reason, so that every replica agrees. A
// submit over one of lim's limits is refused: no job, and the error.
func submitOne(t *txn, req *api.SubmitRequest, now int64, lim *api.SubmitLimits) (uint64, error) {
	if req.IdempotencyToken != "" {
		if id, ok := t.tokens.Get([]byte(req.IdempotencyToken)); ok {
			return id, nil
		}
	}
	if parts := t.partitions(); parts != nil {
		// The partition and the defaults it gives are fixed here, once:
		// a later configuration applies to later submits only.
		spec, err := parts.ApplyPartition(req.Spec, api.SubmitCaller{User: req.User})
		if err != nil {
			return 0, err
		}
		r := proto.Clone(req).(*api.SubmitRequest)
		r.Spec, req = spec, r
	}
	id := t.nextJobID
	tasks, err := []uint32(nil), error(nil)
	if req.GetSpec().GetArray() != "" {
		tasks, err = api.ParseArray(req.Spec.Array)
	}
	if err := checkSubmitLimits(t, req, tasks, lim); err != nil {
		return 0, err
	}
	newJob := func(jid uint64, spec *api.JobSpec) *api.Job {
		j := &api.Job{
			Id:               jid,
			Spec:             spec,
			User:             req.User,
			Uid:              req.Uid,
			Gid:              req.Gid,
			State:            api.JobState_PENDING,
			Reason:           ReasonNone,
			SubmitUnixMs:     now,
			SubmitHost:       req.SubmitHost,
			IdempotencyToken: req.IdempotencyToken,
			Secret:           req.JobSecret,
		}
		if spec.GetHold() {
			j.Reason = ReasonHeld
		}
		return j
	}
	switch {
	case err != nil:
		j := newJob(id, req.Spec)
		j.State, j.Reason, j.EndUnixMs = api.JobState_FAILED, err.Error(), now
		t.putJob(j)
		t.nextJobID++
	case tasks != nil:
		for k, idx := range tasks {
			j := newJob(id+uint64(k), req.Spec) // one spec for all tasks
			j.ArrayJobId, j.ArrayTaskId = id, idx
			if k > 0 {
				j.IdempotencyToken = ""
			}
			t.putJob(j)
		}
		t.nextJobID += uint64(len(tasks))
	default:
		t.putJob(newJob(id, req.Spec))
		t.nextJobID++
	}
	if req.IdempotencyToken != "" {
		t.tokens.Insert([]byte(req.IdempotencyToken), id)
	}
	return id, nil
}

// ReasonHeld is the pending reason of a held job (--hold, scontrol hold).
const ReasonHeld = "JobHeldUser"

func applyHoldJobs(t *txn, m proto.Message) *Result {
	c := m.(*api.HoldJobsCommand)
	// Specs are shared (the tasks of an array hold one): a changed spec is
	// a copy, and the jobs of one command that shared a spec share the copy.
	held := map[*api.JobSpec]*api.JobSpec{}
	return changeOwnedJobs(t, c.JobIds, c.Uid, func(j *api.Job) error {
		if j.State != api.JobState_PENDING {
			return fmt.Errorf("job %d is %s: %w", j.Id, j.State, ErrNotPending)
		}
		if j.Spec.Hold != !c.Release {
			spec, ok := held[j.Spec]
			if !ok {
				spec = proto.Clone(j.Spec).(*api.JobSpec)
				spec.Hold = !c.Release
				held[j.Spec] = spec
			}
			j.Spec = spec
		}
		j.Reason = ReasonNone
		if j.Spec.Hold {
			j.Reason = ReasonHeld
		}
		j.ExpectedStartUnixMs = 0
		return nil
	})
}

// applyRequeueJobs sends running or finished jobs back to the queue, as
// scontrol requeue does. A running gang keeps its allocation until its
// agents have stopped every rank (they stop ranks of jobs that are no
// longer active); it then runs again as the next generation. A job
// submitted with --no-requeue is refused, as in Slurm.
func applyRequeueJobs(t *txn, m proto.Message) *Result {
	c := m.(*api.RequeueJobsCommand)
	return changeOwnedJobs(t, c.JobIds, c.Uid, func(j *api.Job) error {
		switch {
		case j.State == api.JobState_PENDING:
			return fmt.Errorf("job %d is already pending: %w", j.Id, ErrNotRequeueable)
		case !j.Spec.RequeueAllowed():
			return fmt.Errorf("job %d was submitted with --no-requeue: %w", j.Id, ErrNotRequeueable)
		}
		requeueJob(j, c.NowUnixMs)
		return nil
	})
}

// ErrNotRequeueable refuses scontrol requeue for a job it cannot apply to.
var ErrNotRequeueable = errors.New("cannot be requeued")

// changeOwnedJobs applies change to a copy of each job that exists and
// that uid may act on (0: an operator, any job), stores the jobs changed,
// and reports the others' errors together.
func changeOwnedJobs(t *txn, ids []uint64, uid uint32, change func(*api.Job) error) *Result {
	res := &Result{}
	var errs []error
	for _, id := range ids {
		j := t.job(id)
		switch {
		case j == nil:
			errs = append(errs, fmt.Errorf("job %d: %w", id, ErrJobNotFound))
			continue
		case uid != 0 && uid != j.Uid:
			errs = append(errs, fmt.Errorf("job %d belongs to %s: %w", id, j.User, ErrPermission))
			continue
		}
		j = cloneJob(j)
		if err := change(j); err != nil {
			errs = append(errs, err)
			continue
		}
		t.putJob(j)
		res.JobIDs = append(res.JobIDs, id)
	}
	res.Err = errors.Join(errs...)
	return res
}

// ErrNotPending refuses to hold or release a job that is not waiting.
var ErrNotPending = errors.New("only pending jobs can be held or released")

func applyCancelJobs(t *txn, m proto.Message) *Result {
	c := m.(*api.CancelJobsCommand)
	return changeOwnedJobs(t, c.GetRequest().GetJobIds(), c.GetRequest().GetUid(), func(j *api.Job) error {
		if j.State.Terminal() {
			return fmt.Errorf("job %d: %w", j.Id, ErrJobFinished)
		}
		j.State = api.JobState_CANCELLED
		j.Reason = ""
		j.EndUnixMs = c.NowUnixMs
		j.ExpectedStartUnixMs = 0
		endSteps(j, c.NowUnixMs)
		return nil
	})
}

// ErrJobFinished refuses to cancel a job that has already ended.
var ErrJobFinished = errors.New("job already completing or completed")

func applyPlan(t *txn, m proto.Message) *Result {
	c := m.(*api.PlanCommand)
	res := &Result{}
	for _, p := range c.Preemptions {
		preemptJob(t, p, c.NowUnixMs)
	}
	usage := t.base.Usage()
	for _, p := range c.Placements {
		j := t.job(p.JobId)
		if err := checkPlacement(t, j, p.Allocation, usage); err != nil {
			res.Rejected++
			continue
		}
		if err := t.checkReservations(j, p.Allocation, c.NowUnixMs); err != nil {
			res.Rejected++
			continue
		}
		usage.AddAllocation(p.Allocation)
		j = cloneJob(j)
		a := proto.Clone(p.Allocation).(*api.Allocation)
		a.JobId = j.Id
		a.Generation = j.GetAllocation().GetGeneration() + 1
		a.CreatedUnixMs = c.NowUnixMs
		a.Tasks = make([]*api.TaskStatus, len(a.Ranks))
		for i := range a.Ranks {
			a.Tasks[i] = &api.TaskStatus{Rank: uint32(i), State: api.TaskState_TASK_PENDING}
		}
		j.Allocation = a
		j.State = api.JobState_CONFIGURING
		j.Reason = ""
		j.StartUnixMs = c.NowUnixMs
		j.ExpectedStartUnixMs = 0
		// Each run of an allocation starts with no steps but the batch
		// script's.
		j.Steps, j.NextStepId = nil, 0
		if j.Spec.RunsSteps() && !j.Spec.Interactive {
			j.Steps = []*api.Step{batchStep(j, c.NowUnixMs)}
		}
		t.putJob(j)
		res.Placed++
	}
	for _, pr := range c.Pending {
		j := t.job(pr.JobId)
		if j == nil || j.State != api.JobState_PENDING {
			continue
		}
		if j.Reason == pr.Reason && j.ExpectedStartUnixMs == pr.ExpectedStartUnixMs {
			continue
		}
		j = cloneJob(j)
		j.Reason = pr.Reason
		j.ExpectedStartUnixMs = pr.ExpectedStartUnixMs
		t.putJob(j)
	}
	return res
}

// ErrPlanConflict is why a placement is refused: the state moved on since
// the scheduler's snapshot (optimistic concurrency, as Nomad's plan applier).
var ErrPlanConflict = errors.New("plan conflicts with current state")

// checkPlacement re-checks one placement against the current state: the job
// still waits, every node is usable, and no GPU, CPU, core, memory, port
// or generic resource is handed out twice.
func checkPlacement(t *txn, j *api.Job, a *api.Allocation, usage api.Usage) error {
	if j == nil || j.State != api.JobState_PENDING {
		return fmt.Errorf("%w: job is not pending", ErrPlanConflict)
	}
	if j.HoldsResources() {
		return fmt.Errorf("%w: job %d is requeued but ranks of its last allocation still run", ErrPlanConflict, j.Id)
	}
	if a == nil || len(a.Ranks) == 0 {
		return fmt.Errorf("%w: empty allocation", ErrPlanConflict)
	}
	// Nodes is the gang's node order (SLURM_NODEID, the batch step's
	// node): it must name exactly the nodes the ranks are on.
	on := map[string]bool{}
	for _, r := range a.Ranks {
		if !slices.Contains(a.Nodes, r.Node) {
			return fmt.Errorf("%w: rank %d on node %q, which the allocation's node list %v lacks", ErrPlanConflict, r.Rank, r.Node, a.Nodes)
		}
		on[r.Node] = true
	}
	if len(on) != len(a.Nodes) {
		return fmt.Errorf("%w: node list %v names nodes without ranks, or one twice", ErrPlanConflict, a.Nodes)
	}
	if err := checkCores(t, a); err != nil {
		return err
	}
	for name, n := range j.GetSpec().GetGresPerNode() {
		if a.GresPerNode[name] < n {
			return fmt.Errorf("%w: job %d asks for %s:%d per node, the allocation holds %d", ErrPlanConflict, j.Id, name, n, a.GresPerNode[name])
		}
	}
	want := api.Usage{}
	want.AddAllocation(a)
	for name, w := range want {
		n := t.node(name)
		if n == nil {
			return fmt.Errorf("%w: node %s unknown", ErrPlanConflict, name)
		}
		if n.State == api.NodeState_DRAIN || n.State == api.NodeState_DOWN {
			return fmt.Errorf("%w: node %s is %s", ErrPlanConflict, name, n.State)
		}
		have := usage.Node(name)
		gpus := map[string]*api.GPU{}
		for _, g := range n.GetTopology().GetGpus() {
			gpus[g.Uuid] = g
		}
		for uuid := range w.GPUs {
			g := gpus[uuid]
			if g == nil || !g.Healthy {
				return fmt.Errorf("%w: GPU %s on %s is absent or unhealthy", ErrPlanConflict, uuid, name)
			}
			if holder, busy := have.GPUs[uuid]; busy {
				return fmt.Errorf("%w: GPU %s on %s is held by job %d", ErrPlanConflict, uuid, name, holder)
			}
		}
		for c := range w.Cores {
			if holder, busy := have.Cores[c]; busy {
				return fmt.Errorf("%w: core %d on %s is held by job %d", ErrPlanConflict, c, name, holder)
			}
		}
		if have.CPUs+w.CPUs > n.Cpus {
			return fmt.Errorf("%w: %s has %d of %d CPUs free, needs %d", ErrPlanConflict, name, n.Cpus-have.CPUs, n.Cpus, w.CPUs)
		}
		if n.MemoryMb != 0 && have.MemMB+w.MemMB > n.MemoryMb {
			return fmt.Errorf("%w: %s lacks memory", ErrPlanConflict, name)
		}
		for p := range w.Ports {
			if _, busy := have.Ports[p]; busy {
				return fmt.Errorf("%w: port %d on %s in use", ErrPlanConflict, p, name)
			}
		}
		for g, need := range w.Gres {
			if total := n.Gres[g]; have.Gres[g]+need > total {
				return fmt.Errorf("%w: %s has %d of %d %s free, needs %d", ErrPlanConflict, name, total-min(total, have.Gres[g]), total, g, need)
			}
		}
	}
	return nil
}

// checkCores checks the cores a's ranks hold among themselves: as many as
// each rank's CPUs, within its node's cores, none held by two ranks.
// Ranks without cores (placed before the scheduler chose them) pass.
func checkCores(t *txn, a *api.Allocation) error {
	held := map[string]map[uint32]uint32{}
	for _, r := range a.Ranks {
		if len(r.Cores) == 0 {
			continue
		}
		if uint32(len(r.Cores)) != r.Cpus {
			return fmt.Errorf("%w: rank %d holds %d cores for %d CPUs", ErrPlanConflict, r.Rank, len(r.Cores), r.Cpus)
		}
		n := t.node(r.Node)
		if held[r.Node] == nil {
			held[r.Node] = map[uint32]uint32{}
		}
		for _, c := range r.Cores {
			if n != nil && c >= n.Cpus {
				return fmt.Errorf("%w: rank %d holds core %d of %s, which has cores 0-%d", ErrPlanConflict, r.Rank, c, r.Node, n.Cpus-1)
			}
			if o, twice := held[r.Node][c]; twice {
				return fmt.Errorf("%w: core %d of %s is given to ranks %d and %d", ErrPlanConflict, c, r.Node, o, r.Rank)
			}
			held[r.Node][c] = r.Rank
		}
	}
	return nil
}

func applyUpdateTasks(t *txn, m proto.Message) *Result {
	c := m.(*api.UpdateTasksCommand)
	req := c.GetRequest()
	if req == nil {
		return &Result{Err: malformed("UpdateTasks without a request")}
	}
	j := t.job(req.JobId)
	if j == nil {
		return &Result{Err: fmt.Errorf("job %d: %w", req.JobId, ErrJobNotFound)}
	}
	a := j.GetAllocation()
	if a == nil || a.Generation != req.Generation {
		return &Result{Err: fmt.Errorf("job %d generation %d: %w", req.JobId, req.Generation, ErrStaleGeneration)}
	}
	if req.Step != nil {
		return updateStepTasks(t, j, req, c.NowUnixMs)
	}
	j = cloneJob(j)
	a = j.Allocation
	changed := false
	for _, ts := range req.Tasks {
		if int(ts.Rank) >= len(a.Ranks) || a.Ranks[ts.Rank].Node != req.Node {
			continue // not this node's rank: ignore rather than trust it
		}
		cur := a.Tasks[ts.Rank]
		if cur.Ended() {
			continue // ends are final
		}
		used := max(cur.UsedGpuMs, ts.UsedGpuMs)
		if used > cur.UsedGpuMs {
			// The figure is the rank's total so far: the job gains only
			// what it grew by, so a repeated report counts nothing.
			j.UsedGpuMs += used - cur.UsedGpuMs
			changed = true
		}
		if cur.State == ts.State && ts.State != api.TaskState_TASK_EXITED {
			if used > cur.UsedGpuMs {
				next := proto.Clone(cur).(*api.TaskStatus)
				next.UsedGpuMs = used
				a.Tasks[ts.Rank] = next
			}
			continue // a repeat changes nothing else
		}
		next := proto.Clone(ts).(*api.TaskStatus)
		next.UsedGpuMs = used
		a.Tasks[ts.Rank] = next
		changed = true
	}
	if !changed {
		return &Result{}
	}
	settleJob(j, c.NowUnixMs)
	t.putJob(j)
	return &Result{}
}

// applyUpdateTasksBatch applies each report of a batch as UpdateTasks
// would have, in order, in the one transaction: a report sees what the
// ones before it changed, as if each had been an entry of its own.
func applyUpdateTasksBatch(t *txn, m proto.Message) *Result {
	c := m.(*api.UpdateTasksBatchCommand)
	res := &Result{Errs: make([]error, len(c.Requests))}
	for i, req := range c.Requests {
		res.Errs[i] = applyUpdateTasks(t, &api.UpdateTasksCommand{Request: req, NowUnixMs: c.NowUnixMs}).Err
	}
	return res
}

// ErrStaleGeneration refuses a report about an allocation that has since
// been replaced (the job was requeued): the reporter must stop those ranks.
var ErrStaleGeneration = errors.New("stale allocation generation")

// taskFailed reports whether a rank's end fails the gang.
func taskFailed(ts *api.TaskStatus) bool {
	return ts.Ended() && (ts.Reason != api.TaskEndReason_TASK_END_EXITED || ts.ExitCode != 0 || ts.Signal != 0)
}

// settleJob derives the job state from its ranks: the gang is RUNNING once
// every rank has started, COMPLETED when all exited 0, and ends with the
// first failure's state (the agents then stop the other ranks).
func settleJob(j *api.Job, now int64) {
	// Ended or requeued jobs: their ranks' reports only release resources.
	if !j.State.Active() {
		return
	}
	a := j.Allocation
	allEnded, allStarted := true, true
	var failed *api.TaskStatus
	for _, ts := range a.Tasks {
		if !ts.Ended() {
			allEnded = false
		}
		if ts.State == api.TaskState_TASK_PENDING {
			allStarted = false
		}
		if failed == nil && taskFailed(ts) && ts.Reason != api.TaskEndReason_TASK_END_KILLED {
			failed = ts
		}
	}
	if failed == nil {
		// Only ranks killed by their agent: still a failure of the gang.
		for _, ts := range a.Tasks {
			if taskFailed(ts) {
				failed = ts
				break
			}
		}
	}
	defer func() {
		if !j.State.Active() {
			endSteps(j, now)
		}
	}()
	switch {
	case failed != nil && requeuable(endState(failed.Reason)) &&
		j.Spec.RequeueAllowed() && j.RestartCount < j.Spec.RestartLimit():
		requeueJob(j, now)
	case failed != nil:
		j.State = endState(failed.Reason)
		j.ExitCode, j.ExitSignal = failed.ExitCode, failed.Signal
		j.EndUnixMs = now
		j.Reason = fmt.Sprintf("rank %d: %s", failed.Rank, describeEnd(failed))
	case allEnded:
		j.State = api.JobState_COMPLETED
		j.EndUnixMs = now
		j.Reason = ""
	case allStarted && j.State == api.JobState_CONFIGURING:
		j.State = api.JobState_RUNNING
	}
}

// ReasonPreempted is the pending reason of a job requeued by preemption.
const ReasonPreempted = api.ReasonPreempted

// preemptJob stops a running job for a higher-QoS one. A job that may be
// requeued returns to the queue (keeping its submit time, and not counted
// against its restart limit: it did not fail); one that may not ends
// PREEMPTED. Either way it is no longer active, so its agents stop its
// ranks (SIGTERM, grace, SIGKILL) and report them ended, which frees the
// GPUs; a stale preemption (the job already ended or moved on) is ignored.
// A requeued job keeps the service its run attained (AttainedGpuMs).
func preemptJob(t *txn, p *api.Preemption, now int64) {
	j := t.job(p.JobId)
	if j == nil || !j.State.Active() {
		return
	}
	j = cloneJob(j)
	j.PreemptCount++
	if j.Spec.RequeueAllowed() {
		j.AttainedGpuMs += j.RunGPUMs(now)
		j.State = api.JobState_PENDING
		j.Reason = ReasonPreempted
		j.StartUnixMs = 0
		j.ExpectedStartUnixMs = 0
	} else {
		j.State = api.JobState_PREEMPTED
		j.Reason = fmt.Sprintf("preempted for job %d", p.ForJobId)
		j.EndUnixMs = now
	}
	endSteps(j, now)
	t.putJob(j)
}

// ReasonRequeued is the pending reason of a job sent back to the queue
// after a node failure (or preemption).
const ReasonRequeued = "Requeued"

// requeueJob sends a failed gang back to the queue. It keeps its submit
// time (so its priority age) and its old allocation, whose surviving ranks
// the agents now stop because the job is no longer active; the scheduler
// places it again only once every old rank is known to be gone, and the
// new allocation gets the next generation, which fences stale ranks. The
// run it ends is added to the job's attained service.
func requeueJob(j *api.Job, now int64) {
	j.AttainedGpuMs += j.RunGPUMs(now)
	j.State = api.JobState_PENDING
	endSteps(j, now)
	j.RestartCount++
	j.Reason = ReasonRequeued
	j.StartUnixMs, j.EndUnixMs = 0, 0
	j.ExitCode, j.ExitSignal = 0, 0
	j.ExpectedStartUnixMs = 0
}

// requeuable reports whether a gang that ended in st may be restarted.
// A node failure obviously; a rank's failure too, because when one node
// of a gang dies its peers usually fail first (netcoll returns an error
// naming the dead rank within milliseconds, long before gossip has
// declared the node dead) — the restart limit bounds a program that fails
// on its own. A time limit or an out-of-memory kill would only repeat.
func requeuable(st api.JobState) bool {
	return st == api.JobState_NODE_FAIL || st == api.JobState_FAILED
}

func endState(r api.TaskEndReason) api.JobState {
	switch r {
	case api.TaskEndReason_TASK_END_TIMEOUT:
		return api.JobState_TIMEOUT
	case api.TaskEndReason_TASK_END_OOM:
		return api.JobState_OUT_OF_MEMORY
	case api.TaskEndReason_TASK_END_LOST:
		return api.JobState_NODE_FAIL
	}
	return api.JobState_FAILED
}

func describeEnd(ts *api.TaskStatus) string {
	var s string
	switch {
	case ts.Reason == api.TaskEndReason_TASK_END_START_FAILED:
		s = "failed to start"
	case ts.Reason == api.TaskEndReason_TASK_END_TIMEOUT:
		s = "time limit reached"
	case ts.Reason == api.TaskEndReason_TASK_END_OOM:
		s = "out of memory"
	case ts.Reason == api.TaskEndReason_TASK_END_LOST:
		s = "lost with its node"
	case ts.Signal != 0:
		s = fmt.Sprintf("killed by signal %d", ts.Signal)
	default:
		s = fmt.Sprintf("exited with code %d", ts.ExitCode)
	}
	if ts.Message != "" {
		s += ": " + ts.Message
	}
	return s
}
