package server

import (
	"strconv"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/state"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// eventsAt collects e as of one state and time.
type eventsAt struct {
	e   *jobEvents
	v   *state.View
	now time.Time
}

func (c eventsAt) Describe(ch chan<- *prometheus.Desc) { c.e.describe(ch) }
func (c eventsAt) Collect(ch chan<- prometheus.Metric) { c.e.collect(c.v, c.now, ch) }

// gather returns every sample of c as "name{k=v,...}" to its value (a
// histogram's as name_count and name_sum).
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := labelKey(m)
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				out[mf.GetName()+"_count"+key] = float64(m.GetHistogram().GetSampleCount())
				out[mf.GetName()+"_sum"+key] = m.GetHistogram().GetSampleSum()
			case dto.MetricType_COUNTER:
				out[mf.GetName()+key] = m.GetCounter().GetValue()
			default:
				out[mf.GetName()+key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func labelKey(m *dto.Metric) string {
	s := "{"
	for i, l := range m.GetLabel() {
		if i > 0 {
			s += ","
		}
		s += l.GetName() + "=" + l.GetValue()
	}
	return s + "}"
}

func ms(n int64) time.Time { return time.UnixMilli(n) }

// TestJobEvents: a known history gives hand-computed counters. Node n1
// has 8 GPUs; times are in seconds; the server starts at 5.
//
//	job 1 bob (no account: his name), 4 GPUs, 1 rank of 1 CPU: placed at
//	  3, before the server started, completes at 15: only the 10 s after
//	  the start count, 40 GPU-s and 10 CPU-s; its wait is not seen
//	job 2 alice/vision, 2 GPUs, 2 ranks of 2 CPUs: submitted 6, placed
//	  16 (wait 10), fails at 76 (run 60): 120 GPU-s, 240 CPU-s
//	job 3 bob/nlp, 1 GPU: submitted 6, cancelled pending at 17
//	job 4 alice/vision, 1 GPU, 1 CPU: submitted 70, placed 80 (wait 10),
//	  still running when scraped at 100: 20 GPU-s and 20 CPU-s so far
//
// Jobs 2 and 3 start and end between two looks at the state, as when
// several changes come between two scrapes.
func TestJobEvents(t *testing.T) {
	f := state.NewTestFSM()
	f.Apply(state.CmdRegisterNode, &api.RegisterNodeCommand{Node: state.TestNode("n1", 8, 32)})
	submit := func(user, account string, gpus uint32, now int64) {
		f.Apply(state.CmdSubmitJob, &api.SubmitJobCommand{
			Request: &api.SubmitRequest{User: user, Uid: 1000, Gid: 1000,
				Spec: &api.JobSpec{Script: "x", Account: account, NodesMin: 1, GpusPerNode: gpus, Requeue: proto.Bool(false)}},
			NowUnixMs: now,
		})
	}
	// alloc gives ranks of cpus CPUs each holding the next GPUs of n1.
	next := 0
	alloc := func(cpus uint32, gpusPerRank ...int) *api.Allocation {
		a := &api.Allocation{Nodes: []string{"n1"}}
		for i, n := range gpusPerRank {
			r := &api.Rank{Rank: uint32(i), Node: "n1", Cpus: cpus, Port: uint32(29500 + next)}
			for range n {
				r.GpuUuids = append(r.GpuUuids, "GPU-n1-"+strconv.Itoa(next))
				next++
			}
			a.Ranks = append(a.Ranks, r)
		}
		return a
	}
	place := func(id uint64, a *api.Allocation, now int64) {
		t.Helper()
		if res := f.Apply(state.CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: id, Allocation: a}}, NowUnixMs: now}); res.Placed != 1 {
			t.Fatalf("job %d: placement refused", id)
		}
	}
	exit := func(id uint64, code int32, now int64) {
		j := f.Store.View().Job(id)
		var ts []*api.TaskStatus
		for r := range j.GetAllocation().GetRanks() {
			ts = append(ts, &api.TaskStatus{Rank: uint32(r), State: api.TaskState_TASK_EXITED, ExitCode: code, Reason: api.TaskEndReason_TASK_END_EXITED})
		}
		f.Apply(state.CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{
			Node: "n1", JobId: id, Generation: j.GetAllocation().GetGeneration(), Tasks: ts}, NowUnixMs: now})
	}

	e := newJobEvents()
	submit("bob", "", 4, 1000)
	place(1, alloc(1, 4), 3000)
	e.advance(f.Store.View(), ms(5000)) // the server starts

	submit("alice", "vision", 2, 6000)
	submit("bob", "nlp", 1, 6000)
	place(2, alloc(2, 1, 1), 16000)
	exit(1, 0, 15000)
	f.Apply(state.CmdCancelJobs, &api.CancelJobsCommand{Request: &api.CancelRequest{JobIds: []uint64{3}, Uid: 1000}, NowUnixMs: 17000})
	exit(2, 3, 76000)
	e.advance(f.Store.View(), ms(77000))

	submit("alice", "vision", 1, 70000)
	place(4, alloc(1, 1), 80000)
	got := gather(t, eventsAt{e, f.Store.View(), ms(100000)})

	part := api.DefaultPartition
	want := map[string]float64{
		"loom_job_gpu_seconds_total{account=vision,user=alice}":                   140,
		"loom_job_cpu_seconds_total{account=vision,user=alice}":                   260,
		"loom_job_gpu_seconds_total{account=bob,user=bob}":                        40,
		"loom_job_cpu_seconds_total{account=bob,user=bob}":                        10,
		"loom_job_gpu_seconds_total{account=nlp,user=bob}":                        0,
		"loom_job_cpu_seconds_total{account=nlp,user=bob}":                        0,
		"loom_jobs_ended_total{partition=" + part + ",state=COMPLETED}":           1,
		"loom_jobs_ended_total{partition=" + part + ",state=FAILED}":              1,
		"loom_jobs_ended_total{partition=" + part + ",state=CANCELLED}":           1,
		"loom_job_wait_seconds_count{partition=" + part + ",qos=normal,size=2-8}": 1,
		"loom_job_wait_seconds_sum{partition=" + part + ",qos=normal,size=2-8}":   10,
		"loom_job_wait_seconds_count{partition=" + part + ",qos=normal,size=1}":   1,
		"loom_job_wait_seconds_sum{partition=" + part + ",qos=normal,size=1}":     10,
		"loom_job_run_seconds_count{partition=" + part + ",qos=normal,size=2-8}":  2,
		"loom_job_run_seconds_sum{partition=" + part + ",qos=normal,size=2-8}":    72,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s = %v", k, got[k])
		}
	}

	// A later scrape of the same state counts nothing twice; the running
	// job's GPU-seconds grow with the clock.
	got = gather(t, eventsAt{e, f.Store.View(), ms(110000)})
	if g := got["loom_job_gpu_seconds_total{account=vision,user=alice}"]; g != 150 {
		t.Errorf("alice's GPU-seconds 10 s later = %v, want 150", g)
	}
	if g := got["loom_jobs_ended_total{partition="+part+",state=FAILED}"]; g != 1 {
		t.Errorf("FAILED after a second scrape = %v, want 1", g)
	}
}

// TestJobEventsRequeue: a requeued job's two runs both count as GPU- and
// CPU-seconds, the counter never goes back while it waits again, the
// requeue is an outcome of its own, and only the first start is a wait.
//
//	job 1 alice, 2 ranks of 1 GPU and 1 CPU: submitted 0, placed 10
//	  (wait 10), requeued 30 (20 s: 40 GPU-s), placed again 50, completes
//	  80 (30 s: 60 GPU-s): 100 GPU-s and 100 CPU-s in all
func TestJobEventsRequeue(t *testing.T) {
	f := state.NewTestFSM()
	f.Apply(state.CmdRegisterNode, &api.RegisterNodeCommand{Node: state.TestNode("n1", 8, 32)})
	f.Apply(state.CmdSubmitJob, &api.SubmitJobCommand{
		Request:   &api.SubmitRequest{User: "alice", Uid: 1000, Gid: 1000, Spec: &api.JobSpec{Script: "x", NodesMin: 1, GpusPerNode: 2}},
		NowUnixMs: 0,
	})
	e := newJobEvents()
	e.advance(f.Store.View(), ms(0))
	place := func(first int, now int64) {
		t.Helper()
		a := &api.Allocation{Nodes: []string{"n1"}, Ranks: []*api.Rank{
			{Rank: 0, Node: "n1", Cpus: 1, Port: 29500, GpuUuids: []string{"GPU-n1-" + strconv.Itoa(first)}},
			{Rank: 1, Node: "n1", Cpus: 1, Port: 29501, GpuUuids: []string{"GPU-n1-" + strconv.Itoa(first+1)}},
		}}
		if res := f.Apply(state.CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: 1, Allocation: a}}, NowUnixMs: now}); res.Placed != 1 {
			t.Fatalf("placement at %d refused", now)
		}
	}
	tasks := func(st api.TaskState, reason api.TaskEndReason, now int64) {
		gen := f.Store.View().Job(1).GetAllocation().GetGeneration()
		f.Apply(state.CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{Node: "n1", JobId: 1, Generation: gen, Tasks: []*api.TaskStatus{
			{Rank: 0, State: st, Reason: reason}, {Rank: 1, State: st, Reason: reason}}}, NowUnixMs: now})
	}
	place(0, 10000)
	e.advance(f.Store.View(), ms(11000))
	if res := f.Apply(state.CmdRequeueJobs, &api.RequeueJobsCommand{JobIds: []uint64{1}, NowUnixMs: 30000}); res.Err != nil {
		t.Fatal(res.Err)
	}
	tasks(api.TaskState_TASK_EXITED, api.TaskEndReason_TASK_END_KILLED, 31000)
	got := gather(t, eventsAt{e, f.Store.View(), ms(40000)})
	if g := got["loom_job_gpu_seconds_total{account=alice,user=alice}"]; g != 40 {
		t.Errorf("GPU-seconds while requeued = %v, want 40 (the first run's)", g)
	}
	place(2, 50000)
	tasks(api.TaskState_TASK_RUNNING, 0, 51000)
	e.advance(f.Store.View(), ms(52000))
	tasks(api.TaskState_TASK_EXITED, api.TaskEndReason_TASK_END_EXITED, 80000)
	got = gather(t, eventsAt{e, f.Store.View(), ms(90000)})
	part := api.DefaultPartition
	for k, v := range map[string]float64{
		"loom_job_gpu_seconds_total{account=alice,user=alice}":                    100,
		"loom_job_cpu_seconds_total{account=alice,user=alice}":                    100,
		"loom_jobs_ended_total{partition=" + part + ",state=REQUEUED}":            1,
		"loom_jobs_ended_total{partition=" + part + ",state=COMPLETED}":           1,
		"loom_job_wait_seconds_count{partition=" + part + ",qos=normal,size=2-8}": 1,
		"loom_job_wait_seconds_sum{partition=" + part + ",qos=normal,size=2-8}":   10,
		"loom_job_run_seconds_sum{partition=" + part + ",qos=normal,size=2-8}":    30,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

// TestJobEventsWaitForReplay: entries a restarted server replays are
// history: a job that ran and ended in them is neither an outcome nor
// GPU-seconds, and nothing is exported until the log is caught up.
func TestJobEventsWaitForReplay(t *testing.T) {
	f := state.NewTestFSM()
	f.Apply(state.CmdRegisterNode, &api.RegisterNodeCommand{Node: state.TestNode("n1", 8, 32)})
	e := newJobEvents()
	caughtUp := false
	e.caughtUp = func() bool { return caughtUp }
	e.advance(f.Store.View(), ms(0)) // the restored snapshot: replay goes on

	f.Apply(state.CmdSubmitJob, &api.SubmitJobCommand{
		Request:   &api.SubmitRequest{User: "alice", Uid: 1000, Gid: 1000, Spec: &api.JobSpec{Script: "x", NodesMin: 1, GpusPerNode: 1}},
		NowUnixMs: 0,
	})
	a := &api.Allocation{Nodes: []string{"n1"}, Ranks: []*api.Rank{{Rank: 0, Node: "n1", Cpus: 1, Port: 29500, GpuUuids: []string{"GPU-n1-0"}}}}
	f.Apply(state.CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: 1, Allocation: a}}, NowUnixMs: 1000})
	f.Apply(state.CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{Node: "n1", JobId: 1, Generation: 1, Tasks: []*api.TaskStatus{
		{Rank: 0, State: api.TaskState_TASK_EXITED, Reason: api.TaskEndReason_TASK_END_EXITED}}}, NowUnixMs: 5000})
	if got := gather(t, eventsAt{e, f.Store.View(), ms(6000)}); len(got) != 0 {
		t.Fatalf("while replaying, exported %v, want nothing", got)
	}
	caughtUp = true
	e.advance(f.Store.View(), ms(7000))
	got := gather(t, eventsAt{e, f.Store.View(), ms(8000)})
	for k, v := range got {
		if v != 0 {
			t.Errorf("after the replay, %s = %v, want nothing counted", k, v)
		}
	}
}

// TestJobEventsUsedGPU: the busy GPU-seconds counter counts what jobs
// reported since the server started, including the reports of ranks that
// end after their job has failed, and of a job that ran and ended between
// two looks at the state.
//
//	job 1 alice/vision, 2 ranks of 1 GPU: both report 2 s used before the
//	  server starts (not counted); rank 0 reports 5 s (+3), fails with 6 s
//	  (+1), then rank 1, stopped, reports 4 s (+2): 6 s
//	job 2 bob: runs and completes with 1.5 s between two looks: 1.5 s
func TestJobEventsUsedGPU(t *testing.T) {
	f := state.NewTestFSM()
	f.Apply(state.CmdRegisterNode, &api.RegisterNodeCommand{Node: state.TestNode("n1", 8, 32)})
	submit := func(user, account string) {
		f.Apply(state.CmdSubmitJob, &api.SubmitJobCommand{
			Request: &api.SubmitRequest{User: user, Uid: 1000, Gid: 1000,
				Spec: &api.JobSpec{Script: "x", Account: account, NodesMin: 1, GpusPerNode: 2, Requeue: proto.Bool(false)}},
		})
	}
	place := func(id uint64, first int) {
		t.Helper()
		a := &api.Allocation{Nodes: []string{"n1"}, Ranks: []*api.Rank{
			{Rank: 0, Node: "n1", Cpus: 1, Port: uint32(29500 + first), GpuUuids: []string{"GPU-n1-" + strconv.Itoa(first)}},
			{Rank: 1, Node: "n1", Cpus: 1, Port: uint32(29501 + first), GpuUuids: []string{"GPU-n1-" + strconv.Itoa(first+1)}},
		}}
		if res := f.Apply(state.CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: id, Allocation: a}}, NowUnixMs: 1000}); res.Placed != 1 {
			t.Fatalf("job %d: placement refused", id)
		}
	}
	report := func(id uint64, ts ...*api.TaskStatus) {
		t.Helper()
		if res := f.Apply(state.CmdUpdateTasks, &api.UpdateTasksCommand{Request: &api.TaskUpdateRequest{
			Node: "n1", JobId: id, Generation: 1, Tasks: ts}, NowUnixMs: 2000}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	running := func(rank uint32, used uint64) *api.TaskStatus {
		return &api.TaskStatus{Rank: rank, State: api.TaskState_TASK_RUNNING, UsedGpuMs: used}
	}
	exited := func(rank uint32, code int32, reason api.TaskEndReason, used uint64) *api.TaskStatus {
		return &api.TaskStatus{Rank: rank, State: api.TaskState_TASK_EXITED, ExitCode: code, Reason: reason, UsedGpuMs: used}
	}
	const alice, bob = "loom_job_used_gpu_seconds_total{account=vision,user=alice}", "loom_job_used_gpu_seconds_total{account=bob,user=bob}"

	e := newJobEvents()
	submit("alice", "vision")
	place(1, 0)
	report(1, running(0, 2000), running(1, 2000))
	e.advance(f.Store.View(), ms(5000)) // the server starts

	report(1, running(0, 5000))
	e.advance(f.Store.View(), ms(6000))
	report(1, exited(0, 1, api.TaskEndReason_TASK_END_EXITED, 6000))
	if s := f.Store.View().Job(1).GetState(); s != api.JobState_FAILED {
		t.Fatalf("job 1 after rank 0 failed: %s, want FAILED", s)
	}
	if g := gather(t, eventsAt{e, f.Store.View(), ms(7000)})[alice]; g != 4 {
		t.Errorf("alice's busy GPU-seconds after the failure = %v, want 4", g)
	}
	report(1, exited(1, 0, api.TaskEndReason_TASK_END_KILLED, 4000))
	e.advance(f.Store.View(), ms(8000))

	submit("bob", "")
	place(2, 2)
	report(2, exited(0, 0, api.TaskEndReason_TASK_END_EXITED, 1000), exited(1, 0, api.TaskEndReason_TASK_END_EXITED, 500))
	got := gather(t, eventsAt{e, f.Store.View(), ms(9000)})
	if got[alice] != 6 || got[bob] != 1.5 {
		t.Errorf("busy GPU-seconds: alice %v, bob %v; want 6 and 1.5", got[alice], got[bob])
	}
	// A later scrape of the same state counts nothing twice.
	got = gather(t, eventsAt{e, f.Store.View(), ms(10000)})
	if got[alice] != 6 || got[bob] != 1.5 {
		t.Errorf("busy GPU-seconds at a second scrape: alice %v, bob %v; want 6 and 1.5", got[alice], got[bob])
	}
}

// TestJobEventsOutcomes: each way a job ends reaches loom_jobs_ended_total
// under its state: an out-of-memory kill, a lost node, a time limit, and a
// preemption, both of a job that may not be requeued (it ends PREEMPTED)
// and of one that may (its allocation ends PREEMPTED and it waits again).
func TestJobEventsOutcomes(t *testing.T) {
	f := state.NewTestFSM()
	f.Apply(state.CmdRegisterNode, &api.RegisterNodeCommand{Node: state.TestNode("n1", 8, 32)})
	ends := []api.TaskEndReason{api.TaskEndReason_TASK_END_OOM, api.TaskEndReason_TASK_END_LOST, api.TaskEndReason_TASK_END_TIMEOUT}
	for i := range 5 {
		f.Apply(state.CmdSubmitJob, &api.SubmitJobCommand{NowUnixMs: 1000, Request: &api.SubmitRequest{User: "alice", Uid: 1000, Gid: 1000,
			Spec: &api.JobSpec{Script: "x", NodesMin: 1, GpusPerNode: 1, Requeue: proto.Bool(i == 4)}}})
		a := &api.Allocation{Nodes: []string{"n1"}, Ranks: []*api.Rank{{Node: "n1", Cpus: 1, Port: uint32(29500 + i), GpuUuids: []string{"GPU-n1-" + strconv.Itoa(i)}}}}
		if res := f.Apply(state.CmdApplyPlan, &api.PlanCommand{NowUnixMs: 2000, Placements: []*api.Placement{{JobId: uint64(i + 1), Allocation: a}}}); res.Placed != 1 {
			t.Fatalf("job %d: placement refused", i+1)
		}
	}
	e := newJobEvents()
	e.advance(f.Store.View(), ms(3000)) // the server starts
	for i, r := range ends {
		f.Apply(state.CmdUpdateTasks, &api.UpdateTasksCommand{NowUnixMs: 4000, Request: &api.TaskUpdateRequest{
			Node: "n1", JobId: uint64(i + 1), Generation: 1,
			Tasks: []*api.TaskStatus{{State: api.TaskState_TASK_EXITED, ExitCode: 1, Reason: r}}}})
	}
	f.Apply(state.CmdApplyPlan, &api.PlanCommand{NowUnixMs: 5000, Preemptions: []*api.Preemption{{JobId: 4, ForJobId: 9}, {JobId: 5, ForJobId: 9}}})
	for id, want := range map[uint64]api.JobState{1: api.JobState_OUT_OF_MEMORY, 2: api.JobState_NODE_FAIL, 3: api.JobState_TIMEOUT,
		4: api.JobState_PREEMPTED, 5: api.JobState_PENDING} {
		if got := f.Store.View().Job(id).GetState(); got != want {
			t.Fatalf("job %d is %s, want %s", id, got, want)
		}
	}
	got := gather(t, eventsAt{e, f.Store.View(), ms(6000)})
	part := api.DefaultPartition
	for _, st := range []string{"OUT_OF_MEMORY", "NODE_FAIL", "TIMEOUT"} {
		if k := "loom_jobs_ended_total{partition=" + part + ",state=" + st + "}"; got[k] != 1 {
			t.Errorf("%s = %v, want 1", k, got[k])
		}
	}
	if k := "loom_jobs_ended_total{partition=" + part + ",state=PREEMPTED}"; got[k] != 2 {
		t.Errorf("%s = %v, want 2 (one ended, one requeued)", k, got[k])
	}
}

// TestPlanMetrics: the placements the FSM takes and those it refuses (a
// second job on a GPU the first holds) reach the scheduler's counters.
func TestPlanMetrics(t *testing.T) {
	f := state.NewTestFSM()
	f.Apply(state.CmdRegisterNode, &api.RegisterNodeCommand{Node: state.TestNode("n1", 8, 32)})
	var placements []*api.Placement
	for i := range 2 {
		f.Apply(state.CmdSubmitJob, &api.SubmitJobCommand{NowUnixMs: 1000, Request: &api.SubmitRequest{User: "alice", Uid: 1000, Gid: 1000,
			Spec: &api.JobSpec{Script: "x", NodesMin: 1, GpusPerNode: 1}}})
		a := &api.Allocation{Nodes: []string{"n1"}, Ranks: []*api.Rank{{Node: "n1", Cpus: 1, Port: uint32(29500 + i), GpuUuids: []string{"GPU-n1-0"}}}}
		placements = append(placements, &api.Placement{JobId: uint64(i + 1), Allocation: a})
	}
	res := f.Apply(state.CmdApplyPlan, &api.PlanCommand{NowUnixMs: 2000, Placements: placements})
	if res.Placed != 1 || res.Rejected != 1 {
		t.Fatalf("plan of two jobs on one GPU: placed %d, rejected %d; want 1 and 1", res.Placed, res.Rejected)
	}
	m := newMetrics(nil)
	m.observePlan(res)
	m.observeCycle(3 * time.Millisecond)
	for c, key := range map[prometheus.Collector]string{m.placed: "loom_scheduler_placements_total{}",
		m.rejected: "loom_scheduler_plan_rejections_total{}", m.cycleTime: "loom_scheduler_cycle_duration_seconds_count{}"} {
		if got, ok := gather(t, c)[key]; !ok || got != 1 {
			t.Errorf("%s = %v (present %v), want 1", key, got, ok)
		}
	}
}
