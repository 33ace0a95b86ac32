package state

import (
	"fmt"
	"slices"
	"testing"

	"github.com/loomhpc/loom/api"
	"pgregory.net/rapid"
)

// allocationJob submits a batch job and places it on n1 and n2, two
// ranks per node, one GPU and one CPU (core) each; every rank then runs.
func allocationJob(t interface{ Fatalf(string, ...any) }, f *TestFSM, spec *api.JobSpec) *api.Job {
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n1", 2, 8)})
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: TestNode("n2", 2, 8)})
	submit(f, "", spec)
	a := &api.Allocation{Nodes: []string{"n1", "n2"}, MasterPort: 29504}
	for i := range uint32(4) {
		node := fmt.Sprintf("n%d", i/2+1)
		a.Ranks = append(a.Ranks, &api.Rank{Rank: i, Node: node, LocalRank: i % 2, LocalSize: 2, NodeIndex: i / 2,
			GpuUuids: []string{fmt.Sprintf("GPU-%s-%d", node, i%2)}, GpuIndexes: []uint32{i % 2}, Cpus: 1, Cores: []uint32{i % 2}, Port: 29500 + i})
	}
	if res := f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: 1, Allocation: a}}, NowUnixMs: 2000}); res.Placed != 1 {
		t.Fatalf("placing the allocation: placed %d, want 1", res.Placed)
	}
	for i := range uint32(4) {
		running(f, fmt.Sprintf("n%d", i/2+1), i, 1)
	}
	return f.Store.View().Job(1)
}

func createStep(f *TestFSM, spec *api.JobSpec) *Result {
	if len(spec.Argv) == 0 {
		spec.Argv = []string{"true"}
	}
	return f.Apply(CmdCreateStep, &api.CreateStepCommand{Request: &api.CreateStepRequest{JobId: 1, Spec: spec, Uid: 1000}, NowUnixMs: 3000})
}

// stepTasks reports every task of step id with state st (exit code for
// ends).
func stepTasks(f *TestFSM, id uint32, state api.TaskState, code int32) {
	st := f.Store.View().Job(1).Step(id)
	for i, r := range st.Allocation.Ranks {
		ts := &api.TaskStatus{Rank: uint32(i), State: state}
		if state == api.TaskState_TASK_EXITED {
			ts.Reason, ts.ExitCode = api.TaskEndReason_TASK_END_EXITED, code
		}
		f.Apply(CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{
			Node: r.Node, JobId: 1, Generation: 1, Step: &id, Tasks: []*api.TaskStatus{ts}}, NowUnixMs: 4000})
	}
}

func TestBatchStepRunsOnceAndEndsTheJob(t *testing.T) {
	f := NewTestFSM()
	j := allocationJob(t, f, &api.JobSpec{Script: "#!/bin/sh\nexit 3\n"})
	if j.State != api.JobState_RUNNING {
		t.Fatalf("job with every rank running: state %s, want RUNNING", j.State)
	}
	b := j.Step(api.StepBatch)
	if b == nil || len(b.Allocation.Ranks) != 1 || b.Allocation.Ranks[0].Node != "n1" {
		t.Fatalf("batch step = %v, want one task on n1", b)
	}
	if got := b.Allocation.Ranks[0].GpuUuids; len(got) != 2 {
		t.Fatalf("batch step GPUs = %v, want both of n1's", got)
	}
	if res := createStep(f, &api.JobSpec{}); res.Err != nil || res.StepID != 0 {
		t.Fatalf("srun in the allocation: step %d err %v, want step 0", res.StepID, res.Err)
	}
	stepTasks(f, 0, api.TaskState_TASK_RUNNING, 0)
	stepTasks(f, api.StepBatch, api.TaskState_TASK_RUNNING, 0)
	stepTasks(f, api.StepBatch, api.TaskState_TASK_EXITED, 3)
	j = f.Store.View().Job(1)
	if j.State != api.JobState_FAILED || j.ExitCode != 3 {
		t.Fatalf("after the script exits 3: job %s exit %d, want FAILED 3", j.State, j.ExitCode)
	}
	if st := j.Step(0); st.State != api.JobState_CANCELLED {
		t.Fatalf("step 0 still running when the job ended: %s, want CANCELLED", st.State)
	}
	if !j.HoldsResources() {
		t.Fatal("the job released its nodes before their agents stopped its steps")
	}
	if res := createStep(f, &api.JobSpec{}); res.Err == nil {
		t.Fatal("a step was created in an ended job")
	}
}

func TestStepsShareTheAllocationWithoutOvercommit(t *testing.T) {
	f := NewTestFSM()
	allocationJob(t, f, &api.JobSpec{Script: "x"})
	half := func() *api.JobSpec { return &api.JobSpec{NodesMin: 1, Ntasks: 2, GpusPerTask: 1} }
	for want := uint32(0); want < 3; want++ {
		if res := createStep(f, half()); res.Err != nil || res.StepID != want {
			t.Fatalf("step %d: got id %d err %v", want, res.StepID, res.Err)
		}
	}
	j := f.Store.View().Job(1)
	if n0, n1 := j.Step(0).Allocation.Nodes, j.Step(1).Allocation.Nodes; n0[0] != "n1" || n1[0] != "n2" {
		t.Fatalf("steps 0 and 1 on %v and %v, want n1 and n2", n0, n1)
	}
	if st := j.Step(2); st.State != api.JobState_PENDING || st.Allocation != nil {
		t.Fatalf("third step while both nodes' GPUs are held: %s %v, want PENDING and unplaced", st.State, st.Allocation)
	}
	stepTasks(f, 1, api.TaskState_TASK_RUNNING, 0)
	stepTasks(f, 1, api.TaskState_TASK_EXITED, 0)
	j = f.Store.View().Job(1)
	if st := j.Step(1); st.State != api.JobState_COMPLETED {
		t.Fatalf("step 1 after its tasks exited 0: %s, want COMPLETED", st.State)
	}
	st := j.Step(2)
	if st.State != api.JobState_CONFIGURING || st.Allocation.Nodes[0] != "n2" {
		t.Fatalf("waiting step after step 1 ended: %s on %v, want CONFIGURING on n2", st.State, st.Allocation.GetNodes())
	}
	if j.State != api.JobState_RUNNING {
		t.Fatalf("job after its steps came and went: %s, want RUNNING", j.State)
	}
}

func TestStepRefusedWhenItNeverFits(t *testing.T) {
	f := NewTestFSM()
	allocationJob(t, f, &api.JobSpec{Script: "x"})
	for _, spec := range []*api.JobSpec{
		{NodesMin: 3},
		{Ntasks: 2, GpusPerTask: 2, NodesMin: 1},
		{Nodelist: []string{"n3"}},
		{NtasksPerNode: 3, CpusPerTask: 1},
	} {
		if res := createStep(f, spec); res.Err == nil {
			t.Errorf("step %v: created, want refused as never fitting", spec)
		}
	}
	if n := len(f.Store.View().Job(1).Steps); n != 1 {
		t.Fatalf("steps after refusals = %d, want only the batch step", n)
	}
}

func TestCancelAndSignalSteps(t *testing.T) {
	f := NewTestFSM()
	allocationJob(t, f, &api.JobSpec{Script: "x"})
	createStep(f, &api.JobSpec{NodesMin: 1, Ntasks: 1, GpusPerTask: 1})
	createStep(f, &api.JobSpec{NodesMin: 1, Ntasks: 1, GpusPerTask: 1})
	cancel := func(sig int32, ids ...uint32) *Result {
		return f.Apply(CmdCancelSteps, &api.CancelStepsCommand{Request: &api.CancelStepsRequest{JobId: 1, StepIds: ids, Signal: sig, Uid: 1000}, NowUnixMs: 5000})
	}
	if res := cancel(10); res.Err != nil || len(res.StepIDs) != 2 {
		t.Fatalf("signal every step: %v %v, want steps 0 and 1", res.StepIDs, res.Err)
	}
	if st := f.Store.View().Job(1).Step(0); st.Signal != 10 || st.SignalCount != 1 {
		t.Fatalf("signalled step: signal %d count %d, want 10 and 1", st.Signal, st.SignalCount)
	}
	if res := cancel(0, 1); res.Err != nil {
		t.Fatalf("scancel 1.1: %v", res.Err)
	}
	j := f.Store.View().Job(1)
	if j.Step(1).State != api.JobState_CANCELLED || j.Step(0).State.Terminal() || j.State != api.JobState_RUNNING {
		t.Fatalf("after scancel 1.1: step 1 %s, step 0 %s, job %s; want CANCELLED, running, RUNNING", j.Step(1).State, j.Step(0).State, j.State)
	}
	if res := f.Apply(CmdCancelSteps, &api.CancelStepsCommand{Request: &api.CancelStepsRequest{JobId: 1, StepIds: []uint32{0}, Uid: 1001}}); res.Err == nil {
		t.Fatal("another user cancelled a step")
	}
	if res := cancel(0, 7); res.Err == nil {
		t.Fatal("cancelling a step that does not exist succeeded")
	}
}

func TestSallocAllocationCompletes(t *testing.T) {
	f := NewTestFSM()
	j := allocationJob(t, f, &api.JobSpec{Interactive: true})
	if len(j.Steps) != 0 || j.State != api.JobState_RUNNING {
		t.Fatalf("salloc allocation: %s with %d steps, want RUNNING with none", j.State, len(j.Steps))
	}
	createStep(f, &api.JobSpec{})
	res := f.Apply(CmdCompleteAllocation, &api.CompleteAllocationCommand{Request: &api.CompleteAllocationRequest{JobId: 1, ExitCode: 2, Uid: 1000}})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	j = f.Store.View().Job(1)
	if j.State != api.JobState_FAILED || j.ExitCode != 2 || j.Step(0).State != api.JobState_CANCELLED {
		t.Fatalf("after salloc's shell exited 2: job %s exit %d step %s, want FAILED 2 CANCELLED", j.State, j.ExitCode, j.Step(0).State)
	}
}

// TestPropertyStepsNeverShareGPUsOrCores creates, runs and ends steps at
// random: no GPU and no core is ever held by two live steps, every step's
// GPUs and cores are the job's, and a pending step is only left waiting
// when it does not fit.
func TestPropertyStepsNeverShareGPUsOrCores(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		f := NewTestFSM()
		allocationJob(rt, f, &api.JobSpec{Script: "x"})
		for range rapid.IntRange(1, 40).Draw(rt, "ops") {
			j := f.Store.View().Job(1)
			var live []uint32
			for _, st := range j.Steps {
				if st.Id != api.StepBatch && st.HoldsResources() {
					live = append(live, st.Id)
				}
			}
			if len(live) == 0 || rapid.Bool().Draw(rt, "create") {
				spec := &api.JobSpec{
					NodesMin:    rapid.Uint32Range(0, 2).Draw(rt, "nodes"),
					GpusPerTask: rapid.Uint32Range(0, 1).Draw(rt, "gpus"),
				}
				if spec.NodesMin > 0 {
					spec.Ntasks = spec.NodesMin * rapid.Uint32Range(1, 2).Draw(rt, "tasks")
				}
				createStep(f, spec)
			} else {
				id := rapid.SampledFrom(live).Draw(rt, "end")
				stepTasks(f, id, api.TaskState_TASK_EXITED, 0)
			}
			checkSteps(rt, f.Store.View().Job(1))
		}
	})
}

func checkSteps(t *rapid.T, j *api.Job) {
	jobGPUs := map[string]bool{}
	for _, r := range j.Allocation.Ranks {
		for _, g := range r.GpuUuids {
			jobGPUs[g] = true
		}
	}
	held := map[string]uint32{}
	cores := map[string]uint32{}
	for _, st := range j.Steps {
		if st.Id == api.StepBatch || !st.HoldsResources() {
			continue
		}
		for _, r := range st.Allocation.Ranks {
			if uint32(len(r.Cores)) != r.Cpus {
				t.Fatalf("step %d rank %d holds cores %v for %d CPUs", st.Id, r.Rank, r.Cores, r.Cpus)
			}
			for _, c := range r.Cores {
				if !slices.Contains(j.Allocation.NodeCores(r.Node), c) {
					t.Fatalf("step %d holds core %d of %s, which is not the job's", st.Id, c, r.Node)
				}
				key := fmt.Sprint(r.Node, "/", c)
				if other, ok := cores[key]; ok && other != st.Id {
					t.Fatalf("core %s held by steps %d and %d", key, other, st.Id)
				}
				cores[key] = st.Id
			}
			for _, g := range r.GpuUuids {
				if !jobGPUs[g] {
					t.Fatalf("step %d holds GPU %s, which is not the job's", st.Id, g)
				}
				if other, ok := held[g]; ok && other != st.Id {
					t.Fatalf("GPU %s held by steps %d and %d", g, other, st.Id)
				}
				held[g] = st.Id
			}
		}
	}
	for _, st := range j.Steps {
		if st.State == api.JobState_PENDING {
			if _, err := layoutStep(j, st.Spec, holdsOf(j)); err == nil {
				t.Fatalf("step %d waits although it fits", st.Id)
			}
			break // later steps wait behind it by design
		}
	}
}

// TestStepCoresFollowTheirGPUs: a step task with a GPU runs on the cores
// of the job's rank that had it; the batch step on all of the job's cores
// on its node.
func TestStepCoresFollowTheirGPUs(t *testing.T) {
	f := NewTestFSM()
	j := allocationJob(t, f, &api.JobSpec{Script: "x"})
	if got := j.Step(api.StepBatch).Allocation.Ranks[0].Cores; !slices.Equal(got, []uint32{0, 1}) {
		t.Errorf("batch step cores %v, want the job's on n1, [0 1]", got)
	}
	createStep(f, &api.JobSpec{Nodelist: []string{"n2"}, Ntasks: 1, GpusPerTask: 1})
	createStep(f, &api.JobSpec{Nodelist: []string{"n2"}, Ntasks: 1, GpusPerTask: 1})
	j = f.Store.View().Job(1)
	for id, want := range map[uint32]uint32{0: 0, 1: 1} {
		r := j.Step(id).Allocation.Ranks[0]
		if len(r.GpuIndexes) != 1 || !slices.Equal(r.Cores, []uint32{r.GpuIndexes[0]}) || r.GpuIndexes[0] != want {
			t.Errorf("step %d task: GPUs %v cores %v, want GPU %d on core %d (its job rank's)", id, r.GpuIndexes, r.Cores, want, want)
		}
	}
}

// TestNodeDownRequeuesAnAllocation: losing a node of a running batch job
// requeues it (when allowed) and ends its steps; its next placement starts
// again with a fresh batch step and no srun steps.
func TestNodeDownRequeuesAnAllocation(t *testing.T) {
	f := NewTestFSM()
	allocationJob(t, f, &api.JobSpec{Script: "x"})
	createStep(f, &api.JobSpec{})
	f.Apply(CmdNodeState, &api.NodeStateCommand{Name: "n2", State: api.NodeState_DOWN, Reason: "gossip: dead"})
	j := f.Store.View().Job(1)
	if j.State != api.JobState_PENDING || j.RestartCount != 1 {
		t.Fatalf("after losing n2: %s with %d restarts, want PENDING with 1", j.State, j.RestartCount)
	}
	for _, st := range j.Steps {
		if st.State != api.JobState_CANCELLED {
			t.Errorf("step %s after the requeue: %s, want CANCELLED", api.StepName(st.Id), st.State)
		}
	}
	if res := createStep(f, &api.JobSpec{}); res.Err == nil {
		t.Fatal("a step was created in a requeued job")
	}
}
