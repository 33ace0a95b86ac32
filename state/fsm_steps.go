package state

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

// Job steps. A job whose spec RunsSteps is an allocation: the scheduler
// places it as any gang, but its ranks are resource slots, and what runs
// are steps — the batch step (the script, once, on the first node) and
// the steps srun creates inside it. Steps are placed here, in the FSM,
// deterministically from replicated state: a step's tasks are a subset of
// the allocation, the GPUs and CPUs of running steps are not handed out
// again, and a step that does not fit waits and is placed, in creation
// order, when another one ends.

// Errors of the step commands.
var (
	ErrStepNotFound  = errors.New("no such job step")
	ErrNoAllocation  = errors.New("job has no running allocation to start a step in")
	ErrNotAllocation = errors.New("job runs its command on every task and has no steps")
	ErrStepNeverFits = errors.New("step does not fit the job's allocation")
	ErrStepFinished  = errors.New("job step already ended")
)

// ReasonStepResources is why a step waits: other steps hold what it needs
// (srun prints "Job step creation temporarily disabled").
const ReasonStepResources = "Resources"

func applyCreateStep(t *txn, m proto.Message) *Result {
	c := m.(*api.CreateStepCommand)
	req := c.Request
	if req == nil || req.Spec == nil {
		return &Result{Err: malformed("CreateStep without a request or its spec")}
	}
	j := t.job(req.JobId)
	if err := mayStartStep(j, req.JobId, req.Uid); err != nil {
		return &Result{Err: err}
	}
	if req.IdempotencyToken != "" {
		for _, st := range j.Steps {
			if st.IdempotencyToken == req.IdempotencyToken {
				return &Result{JobID: j.Id, StepID: st.Id}
			}
		}
	}
	spec := req.GetSpec()
	if spec == nil {
		spec = &api.JobSpec{}
	}
	if len(spec.Argv) == 0 {
		return &Result{Err: fmt.Errorf("step of job %d: %w", j.Id, api.ErrEmptyJob)}
	}
	// A step that could not run even alone is refused now, not left to
	// wait for ever.
	if _, err := layoutStep(j, spec, stepHolds{}); err != nil {
		return &Result{Err: fmt.Errorf("job %d: %w: %v", j.Id, ErrStepNeverFits, err)}
	}
	j = cloneJob(j)
	st := &api.Step{
		Id: j.NextStepId, Spec: spec, State: api.JobState_PENDING, Reason: ReasonStepResources,
		SubmitUnixMs: c.NowUnixMs, IdempotencyToken: req.IdempotencyToken,
	}
	j.NextStepId++
	j.Steps = append(j.Steps, st)
	placeSteps(t, j, c.NowUnixMs)
	t.putJob(j)
	return &Result{JobID: j.Id, StepID: st.Id}
}

// ownedBy says whether job j (id when j is nil) exists and uid may act on
// it: its owner, or an operator (uid 0, which only the server sets).
func ownedBy(j *api.Job, id uint64, uid uint32) error {
	switch {
	case j == nil:
		return fmt.Errorf("job %d: %w", id, ErrJobNotFound)
	case uid != 0 && uid != j.Uid:
		return fmt.Errorf("job %d belongs to %s: %w", id, j.User, ErrPermission)
	}
	return nil
}

// mayStartStep says whether uid may start a step in job j (id when j is
// nil): the job's owner (or an operator, uid 0) in a running allocation.
func mayStartStep(j *api.Job, id uint64, uid uint32) error {
	if err := ownedBy(j, id, uid); err != nil {
		return err
	}
	switch {
	case !j.State.Active():
		return fmt.Errorf("job %d is %s: %w", id, j.State, ErrNoAllocation)
	case !j.Spec.RunsSteps():
		return fmt.Errorf("job %d: %w (it was started by srun or with --every-rank)", id, ErrNotAllocation)
	}
	return nil
}

func applyCancelSteps(t *txn, m proto.Message) *Result {
	c := m.(*api.CancelStepsCommand)
	req := c.Request
	if req == nil {
		return &Result{Err: malformed("CancelSteps without a request")}
	}
	j := t.job(req.JobId)
	if err := ownedBy(j, req.JobId, req.Uid); err != nil {
		return &Result{Err: err}
	}
	ids := req.StepIds
	if len(ids) == 0 {
		if req.Signal == 0 {
			return &Result{Err: fmt.Errorf("job %d: no step named to cancel", j.Id)}
		}
		for _, st := range j.Steps {
			if st.Id != api.StepBatch && !st.State.Terminal() {
				ids = append(ids, st.Id)
			}
		}
		if len(ids) == 0 {
			return &Result{Err: fmt.Errorf("job %d has no running steps to signal (scancel -b signals the batch script): %w", j.Id, ErrStepNotFound)}
		}
	}
	j = cloneJob(j)
	res := &Result{JobID: j.Id}
	var errs []error
	for _, id := range ids {
		st := j.Step(id)
		switch {
		case st == nil:
			errs = append(errs, fmt.Errorf("step %d.%s: %w", j.Id, api.StepName(id), ErrStepNotFound))
			continue
		case st.State.Terminal():
			errs = append(errs, fmt.Errorf("step %d.%s is %s: %w", j.Id, api.StepName(id), st.State, ErrStepFinished))
			continue
		case req.Signal != 0:
			st.Signal = req.Signal
			st.SignalCount++
		default:
			st.State = api.JobState_CANCELLED
			st.Reason = "cancelled"
			st.EndUnixMs = c.NowUnixMs
		}
		res.StepIDs = append(res.StepIDs, id)
	}
	if len(res.StepIDs) > 0 {
		// A cancelled batch step ends the job once its task is gone
		// (UpdateTasks); a cancelled pending step may unblock others.
		placeSteps(t, j, c.NowUnixMs)
		t.putJob(j)
	}
	res.Err = errors.Join(errs...)
	return res
}

func applyCompleteAllocation(t *txn, m proto.Message) *Result {
	c := m.(*api.CompleteAllocationCommand)
	req := c.Request
	if req == nil {
		return &Result{Err: malformed("CompleteAllocation without a request")}
	}
	j := t.job(req.JobId)
	if err := ownedBy(j, req.JobId, req.Uid); err != nil {
		return &Result{Err: err}
	}
	switch {
	case !j.Spec.GetInteractive():
		return &Result{Err: fmt.Errorf("job %d is not a salloc allocation: %w", j.Id, ErrNotAllocation)}
	case j.State.Terminal():
		return &Result{Err: fmt.Errorf("job %d: %w", j.Id, ErrJobFinished)}
	}
	j = cloneJob(j)
	j.State, j.Reason = api.JobState_COMPLETED, ""
	if req.ExitCode != 0 {
		j.State, j.Reason = api.JobState_FAILED, fmt.Sprintf("salloc's command exited with code %d", req.ExitCode)
	}
	j.ExitCode = req.ExitCode
	j.EndUnixMs = c.NowUnixMs
	j.ExpectedStartUnixMs = 0
	endSteps(j, c.NowUnixMs)
	t.putJob(j)
	return &Result{JobID: j.Id}
}

// batchStep is the step that runs the batch script: one task on the
// allocation's first node, seeing every GPU the job has there. It holds
// nothing of its own, as in Slurm: steps started from the script use the
// whole allocation.
func batchStep(j *api.Job, now int64) *api.Step {
	a := j.Allocation
	first := a.Nodes[0]
	r := &api.Rank{Node: first, LocalSize: 1}
	for _, rk := range a.Ranks {
		if rk.Node == first {
			r.GpuUuids = append(r.GpuUuids, rk.GpuUuids...)
			r.GpuIndexes = append(r.GpuIndexes, rk.GpuIndexes...)
			r.Cpus += rk.Cpus
			r.Cores = append(r.Cores, rk.Cores...)
		}
	}
	slices.Sort(r.Cores)
	return &api.Step{
		Id: api.StepBatch, State: api.JobState_CONFIGURING, SubmitUnixMs: now,
		Allocation: &api.Allocation{
			JobId: j.Id, Generation: a.Generation, Ranks: []*api.Rank{r}, Nodes: []string{first},
			MasterAddr: a.MasterAddr, Tasks: []*api.TaskStatus{{State: api.TaskState_TASK_PENDING}}, CreatedUnixMs: now,
		},
	}
}

// updateStepTasks records the reports of a step's tasks. Reports are taken
// after the job has ended too: they release the step's resources and
// complete its accounting.
func updateStepTasks(t *txn, j *api.Job, req *api.TaskUpdateRequest, now int64) *Result {
	if j.Step(req.GetStep()) == nil || j.Step(req.GetStep()).Allocation == nil {
		return &Result{Err: fmt.Errorf("step %d.%s: %w", j.Id, api.StepName(req.GetStep()), ErrStepNotFound)}
	}
	j = cloneJob(j)
	st := j.Step(req.GetStep())
	a := st.Allocation
	changed := false
	for _, ts := range req.Tasks {
		if int(ts.Rank) >= len(a.Ranks) || a.Ranks[ts.Rank].Node != req.Node {
			continue
		}
		cur := a.Tasks[ts.Rank]
		if cur.Ended() || (cur.State == ts.State && ts.State != api.TaskState_TASK_EXITED) {
			continue
		}
		a.Tasks[ts.Rank] = proto.Clone(ts).(*api.TaskStatus)
		changed = true
	}
	if !changed {
		return &Result{}
	}
	settleStep(st, now)
	if st.Id == api.StepBatch && !st.HoldsResources() {
		endJobWithBatch(j, st, now)
	}
	if !st.HoldsResources() {
		placeSteps(t, j, now)
	}
	t.putJob(j)
	return &Result{}
}

// settleStep derives a step's state from its tasks: RUNNING once all have
// started, and when all have ended COMPLETED or how the worst one ended,
// with the highest exit code (Slurm's rule). With --kill-on-bad-exit the
// first failure ends the step at once; its agents then stop the others.
func settleStep(st *api.Step, now int64) {
	if st.State.Terminal() {
		return
	}
	a := st.Allocation
	allEnded, allStarted := true, true
	var failed *api.TaskStatus
	var code, sig int32
	for _, ts := range a.Tasks {
		if !ts.Ended() {
			allEnded = false
		}
		if ts.State == api.TaskState_TASK_PENDING {
			allStarted = false
		}
		if taskFailed(ts) {
			if failed == nil || (failed.Reason == api.TaskEndReason_TASK_END_KILLED && ts.Reason != api.TaskEndReason_TASK_END_KILLED) {
				failed = ts
			}
			code = max(code, ts.ExitCode)
			if sig == 0 {
				sig = ts.Signal
			}
		}
	}
	end := func() {
		st.EndUnixMs = now
		st.ExitCode, st.ExitSignal = code, sig
		st.State, st.Reason = api.JobState_COMPLETED, ""
		if failed != nil {
			st.State = endState(failed.Reason)
			st.Reason = fmt.Sprintf("task %d: %s", failed.Rank, describeEnd(failed))
		}
	}
	switch {
	case allEnded:
		end()
	case failed != nil && st.GetSpec().GetKillOnBadExit():
		end()
	case allStarted && st.State == api.JobState_CONFIGURING:
		st.State = api.JobState_RUNNING
		for _, ts := range a.Tasks {
			st.StartUnixMs = max(st.StartUnixMs, ts.StartedUnixMs)
		}
		if st.StartUnixMs == 0 {
			st.StartUnixMs = now
		}
	}
}

// endJobWithBatch ends a running job when its batch script has ended, with
// the script's state and exit code, as Slurm does. A script lost with its
// node requeues the job when it may be.
func endJobWithBatch(j *api.Job, batch *api.Step, now int64) {
	if !j.State.Active() {
		return
	}
	if batch.State == api.JobState_NODE_FAIL && j.Spec.RequeueAllowed() && j.RestartCount < j.Spec.RestartLimit() {
		requeueJob(j, now)
		return
	}
	j.State = batch.State
	j.ExitCode, j.ExitSignal = batch.ExitCode, batch.ExitSignal
	j.EndUnixMs = now
	j.Reason = ""
	if batch.State != api.JobState_COMPLETED && batch.Reason != "" {
		j.Reason = "batch script " + strings.TrimPrefix(batch.Reason, "task 0: ")
	}
	endSteps(j, now)
}

// endSteps ends the accounting of every step still pending or running
// when their job ends: they are CANCELLED, and the agents stop their
// tasks because the job is no longer active.
func endSteps(j *api.Job, now int64) {
	reason := "job " + strings.ToLower(j.State.String())
	if j.State == api.JobState_PENDING {
		reason = "job requeued"
	}
	for _, st := range j.Steps {
		if st.State.Terminal() {
			continue
		}
		st.State = api.JobState_CANCELLED
		st.Reason = reason
		st.EndUnixMs = now
	}
}

// placeSteps places the job's pending steps in creation order, stopping
// at the first that does not fit so that a big step is not overtaken for
// ever by small ones.
func placeSteps(t *txn, j *api.Job, now int64) {
	if !j.State.Active() {
		return
	}
	var ports *portPicker
	for _, st := range j.Steps {
		if st.State != api.JobState_PENDING {
			continue
		}
		a, err := layoutStep(j, st.Spec, holdsOf(j))
		if err != nil {
			return
		}
		if ports == nil {
			ports = newPortPicker(t)
		}
		a.JobId, a.Generation, a.CreatedUnixMs = j.Id, j.Allocation.Generation, now
		if !ports.assign(t, a) {
			st.Reason = "Ports"
			return
		}
		a.Tasks = make([]*api.TaskStatus, len(a.Ranks))
		for i := range a.Ranks {
			a.Tasks[i] = &api.TaskStatus{Rank: uint32(i), State: api.TaskState_TASK_PENDING}
		}
		st.Allocation = a
		st.State, st.Reason = api.JobState_CONFIGURING, ""
	}
}

// stepNode is one node of an allocation as steps see it.
type stepNode struct {
	name  string
	gpus  []gpuRef // the job's GPUs there, in allocation order
	cpus  uint32   // the job's CPUs there; 0: not counted
	tasks uint32   // the job's tasks there
	// cores are the job's cores there, ascending; near holds, by GPU
	// UUID, those of the job's ranks that had the GPU.
	cores []uint32
	near  map[string][]uint32
}

type gpuRef struct {
	uuid  string
	index uint32
}

// nodeHold is what running steps hold on one node.
type nodeHold struct {
	gpus  map[string]bool
	cpus  uint32
	cores map[uint32]bool
}

type stepHolds map[string]*nodeHold

// holdsOf sums what j's placed steps hold. The batch step and --overlap
// steps hold nothing.
func holdsOf(j *api.Job) stepHolds {
	h := stepHolds{}
	for _, st := range j.Steps {
		if st.Id == api.StepBatch || st.GetSpec().GetOverlap() || !st.HoldsResources() {
			continue
		}
		for _, r := range st.Allocation.Ranks {
			nh := h[r.Node]
			if nh == nil {
				nh = &nodeHold{gpus: map[string]bool{}, cores: map[uint32]bool{}}
				h[r.Node] = nh
			}
			for _, g := range r.GpuUuids {
				nh.gpus[g] = true
			}
			nh.cpus += r.Cpus
			for _, c := range r.Cores {
				nh.cores[c] = true
			}
		}
	}
	return h
}

func allocationNodes(a *api.Allocation) []*stepNode {
	by := map[string]*stepNode{}
	var out []*stepNode
	for _, name := range a.Nodes {
		n := &stepNode{name: name, near: map[string][]uint32{}}
		by[name] = n
		out = append(out, n)
	}
	for _, r := range a.Ranks {
		n := by[r.Node]
		if n == nil {
			continue
		}
		for i, u := range r.GpuUuids {
			if !slices.ContainsFunc(n.gpus, func(g gpuRef) bool { return g.uuid == u }) {
				var idx uint32
				if i < len(r.GpuIndexes) {
					idx = r.GpuIndexes[i]
				}
				n.gpus = append(n.gpus, gpuRef{u, idx})
			}
		}
		n.cpus += r.Cpus
		n.tasks++
		n.cores = append(n.cores, r.Cores...)
		for _, u := range r.GpuUuids {
			n.near[u] = append(n.near[u], r.Cores...)
		}
	}
	for _, n := range out {
		slices.Sort(n.cores)
		n.cores = slices.Compact(n.cores)
	}
	return out
}

// layoutStep places a step's tasks on j's allocation given what other
// steps hold, without ports. Nodes are taken in allocation order among
// those -w/-x allow; -N (default: every such node, at most one per task)
// says how many. Tasks per node follow -n and --ntasks-per-node as in
// sbatch, and without either are the job's own. Each task has -c CPUs
// (default the job's) and --gpus-per-task GPUs; without a GPU option the
// step takes every GPU the job has on its nodes. errStepWaits means it
// would fit once other steps end; any other error that it never fits.
func layoutStep(j *api.Job, spec *api.JobSpec, held stepHolds) (*api.Allocation, error) {
	nodes := allocationNodes(j.GetAllocation())
	// A step's generic resources are the job's: it may ask for no more
	// than the job holds on each node.
	for _, g := range slices.Sorted(maps.Keys(spec.GetGresPerNode())) {
		if has := j.GetAllocation().GetGresPerNode()[g]; spec.GresPerNode[g] > has {
			return nil, fmt.Errorf("--gres: the step asks for %s:%d per node and the job holds %s:%d", g, spec.GresPerNode[g], g, has)
		}
	}
	var cands []*stepNode
	for _, want := range spec.Nodelist {
		if !slices.ContainsFunc(nodes, func(n *stepNode) bool { return n.name == want }) {
			return nil, fmt.Errorf("--nodelist: node %s is not in the job's allocation (%s)", want, api.CompressHostlist(j.Allocation.Nodes))
		}
	}
	for _, n := range nodes {
		if (len(spec.Nodelist) == 0 || slices.Contains(spec.Nodelist, n.name)) && !slices.Contains(spec.Exclude, n.name) {
			cands = append(cands, n)
		}
	}
	count := uint32(len(cands))
	switch {
	case len(spec.Nodelist) > 0:
		count = uint32(len(spec.Nodelist))
	case spec.NodesMin != 0:
		count = spec.NodesMin
	case spec.Ntasks != 0 && spec.NtasksPerNode != 0:
		count = (spec.Ntasks + spec.NtasksPerNode - 1) / spec.NtasksPerNode
	case spec.Ntasks != 0:
		count = min(count, spec.Ntasks)
	}
	if count == 0 || count > uint32(len(cands)) {
		return nil, fmt.Errorf("--nodes: the step needs %d nodes and the allocation offers %d", count, len(cands))
	}
	var shapes []api.NodeShape
	if spec.Ntasks != 0 || spec.NtasksPerNode != 0 {
		var ok bool
		if shapes, ok = spec.Layout(count); !ok {
			return nil, fmt.Errorf("--ntasks: %d tasks cannot be spread over %d nodes", spec.TotalTasks(count), count)
		}
	}
	cpt := spec.CpusPerTask
	if cpt == 0 {
		cpt = max(j.Spec.CpusPerTask, 1)
	}
	a := &api.Allocation{}
	var lastErr error
	for _, n := range cands {
		k := uint32(len(a.Nodes))
		if k == count {
			break
		}
		tasks := n.tasks
		if shapes != nil {
			tasks = shapes[k].Tasks
		}
		gpus := uint32(len(n.gpus))
		switch {
		case spec.GpusPerTask != 0:
			gpus = tasks * spec.GpusPerTask
		case shapes != nil && (spec.GpusPerNode != 0 || spec.Gpus != 0):
			gpus = shapes[k].GPUs
		}
		if err := nodeFits(n, tasks, cpt, gpus, stepHolds{}); err != nil {
			lastErr = err
			continue // never fits here: another node may do
		}
		if err := nodeFits(n, tasks, cpt, gpus, held); err != nil {
			lastErr = errStepWaits
			continue
		}
		var free []gpuRef
		for _, g := range n.gpus {
			if held[n.name] == nil || !held[n.name].gpus[g.uuid] {
				free = append(free, g)
			}
		}
		free = free[:gpus]
		// Each task's cores come out of the job's cores the steps
		// leave, nearest its GPUs: those of the job's ranks that had
		// them. A job placed before cores were chosen has none to give.
		var freeCores []uint32
		for _, c := range n.cores {
			if held[n.name] == nil || !held[n.name].cores[c] {
				freeCores = append(freeCores, c)
			}
		}
		for local := range tasks {
			r := &api.Rank{Rank: uint32(len(a.Ranks)), Node: n.name, LocalRank: local, LocalSize: tasks, NodeIndex: k, Cpus: cpt}
			share := free
			if tasks > 0 && gpus%tasks == 0 {
				per := gpus / tasks
				share = free[local*per : (local+1)*per]
			}
			for _, g := range share {
				r.GpuUuids = append(r.GpuUuids, g.uuid)
				r.GpuIndexes = append(r.GpuIndexes, g.index)
			}
			var near []uint32
			for _, g := range share {
				near = append(near, n.near[g.uuid]...)
			}
			if r.Cores = api.ChooseCores(freeCores, near, int(cpt)); r.Cores != nil {
				freeCores = slices.DeleteFunc(freeCores, func(c uint32) bool { return slices.Contains(r.Cores, c) })
			}
			a.Ranks = append(a.Ranks, r)
		}
		a.Nodes = append(a.Nodes, n.name)
	}
	if uint32(len(a.Nodes)) < count {
		if lastErr == nil || errors.Is(lastErr, errStepWaits) {
			return nil, errStepWaits
		}
		return nil, lastErr
	}
	return a, nil
}

// errStepWaits says a step fits the allocation but not beside the steps
// that run now.
var errStepWaits = errors.New("other steps hold the resources the step needs")

// nodeFits checks tasks of cpt CPUs and gpus GPUs on n against what held
// leaves free.
func nodeFits(n *stepNode, tasks, cpt, gpus uint32, held stepHolds) error {
	h := held[n.name]
	if h == nil {
		h = &nodeHold{}
	}
	if free := uint32(len(n.gpus) - len(h.gpus)); gpus > free {
		return fmt.Errorf("--gpus: the step needs %d GPUs on %s and the job has %d there", gpus, n.name, len(n.gpus))
	}
	if n.cpus != 0 && tasks*cpt > n.cpus-min(h.cpus, n.cpus) {
		return fmt.Errorf("--cpus-per-task: the step needs %d CPUs (%d tasks of %d) on %s and the job has %d there", tasks*cpt, tasks, cpt, n.name, n.cpus)
	}
	return nil
}

// portPicker hands out free ports of nodes' ranges to step tasks: the
// lowest not held by any live allocation or step, nor taken by this
// entry, so every replica picks the same.
type portPicker struct {
	usage api.Usage
}

func newPortPicker(t *txn) *portPicker { return &portPicker{usage: t.base.Usage()} }

// assign gives every task of a a port and a its master port, or reports
// that some node has none left (and then takes none).
func (p *portPicker) assign(t *txn, a *api.Allocation) bool {
	taken := map[string][]uint32{}
	take := func(node string) uint32 {
		n := t.node(node)
		lo, hi := uint32(api.DefaultPortMin), uint32(api.DefaultPortMax)
		if n != nil && n.PortMin != 0 && n.PortMax >= n.PortMin {
			lo, hi = n.PortMin, n.PortMax
		}
		nu := p.usage.Node(node)
		for port := lo; port <= hi && port != 0; port++ {
			if _, busy := nu.Ports[port]; !busy && !slices.Contains(taken[node], port) {
				taken[node] = append(taken[node], port)
				return port
			}
		}
		return 0
	}
	for _, r := range a.Ranks {
		if r.Port = take(r.Node); r.Port == 0 {
			return false
		}
	}
	first := a.Ranks[0].Node
	if a.MasterPort = take(first); a.MasterPort == 0 {
		return false
	}
	if n := t.node(first); n != nil {
		a.MasterAddr = hostOf(n.Address)
	}
	for node, ports := range taken {
		for _, port := range ports {
			p.usage.Node(node).Ports[port] = a.JobId
		}
	}
	return true
}

// hostOf is the host part of an agent's host:port address.
func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}
