package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/scheduler"
)

func testClusterState() *clusterState {
	t := &api.Topology{}
	for i := range 8 {
		t.Gpus = append(t.Gpus, &api.GPU{Index: uint32(i), Uuid: fmt.Sprint("GPU-a-", i), Healthy: true})
	}
	n := &api.Node{Name: "a", Cpus: 64, Topology: t}
	start := time.Unix(1000, 0)
	run := &api.Job{Id: 1, Spec: &api.JobSpec{GpusPerNode: 8, TimeLimitS: 3600}, State: api.JobState_RUNNING, StartUnixMs: start.UnixMilli(),
		Allocation: &api.Allocation{Ranks: []*api.Rank{{Node: "a", GpuUuids: []string{"GPU-a-0", "GPU-a-1", "GPU-a-2", "GPU-a-3", "GPU-a-4", "GPU-a-5", "GPU-a-6", "GPU-a-7"}}},
			Tasks: []*api.TaskStatus{{State: api.TaskState_TASK_RUNNING}}}}
	pend := &api.Job{Id: 2, User: "bob", Spec: &api.JobSpec{GpusPerNode: 4, TimeLimitS: 60}, State: api.JobState_PENDING,
		Reason: scheduler.ReasonResources, ExpectedStartUnixMs: start.Add(time.Hour).UnixMilli(), SubmitUnixMs: start.UnixMilli()}
	return &clusterState{nodes: []*api.Node{n}, jobs: []*api.Job{run, pend}}
}

func TestWhy(t *testing.T) {
	var b bytes.Buffer
	if err := explainWhy(&b, testClusterState(), 2, time.Unix(1060, 0)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pending: Resources", "expected start", "reserved: a, 4 GPUs", "priority "} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("why output lacks %q:\n%s", want, b.String())
		}
	}
	if err := explainWhy(&b, testClusterState(), 9, time.Unix(1060, 0)); err == nil {
		t.Errorf("why(9) = nil error, want no such job")
	}
}

func TestPriorityTable(t *testing.T) {
	st := testClusterState()
	now := time.Unix(1060, 0)
	var b bytes.Buffer
	writePriorities(&b, scheduler.Priorities(st.view(now, scheduler.Config{}), now, scheduler.Config{}), nil)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "bob") {
		t.Fatalf("priority table:\n%s", b.String())
	}
}

// TestWhyAndPriorityUseTheClient checks that both commands go through the
// client: a dead first server in LOOM_ADDR is skipped, and every list asks
// for all jobs.
func TestWhyAndPriorityUseTheClient(t *testing.T) {
	st := testClusterState()
	f := &fakeServer{jobs: st.jobs}
	for _, n := range st.nodes {
		f.nodes = append(f.nodes, &api.NodeInfo{Node: n})
	}
	addr := deadAddr(t) + "," + f.start(t)

	te := newTestEnv("loom why", addr)
	if code := runWhy(context.Background(), te.env, []string{"2"}); code != 0 {
		t.Fatalf("why 2 = %d, want 0; stderr %q", code, te.err.String())
	}
	if !strings.Contains(te.out.String(), "job 2 is pending: Resources") {
		t.Errorf("why 2 printed %q, want the pending reason", te.out.String())
	}

	te = newTestEnv("loom priority", addr)
	if code := runPriority(context.Background(), te.env, nil); code != 0 {
		t.Fatalf("priority = %d, want 0; stderr %q", code, te.err.String())
	}
	if !strings.Contains(te.out.String(), "bob") {
		t.Errorf("priority printed %q, want bob's pending job", te.out.String())
	}
	for _, req := range f.lists {
		if !req.GetAll() {
			t.Errorf("ListJobs request %v, want All", req)
		}
	}
}

func TestWhyUnreachable(t *testing.T) {
	te := newTestEnv("loom why", deadAddr(t))
	if code := runWhy(context.Background(), te.env, []string{"2"}); code != 1 {
		t.Errorf("why against no server = %d, want 1", code)
	}
	if want := "loom why: list nodes: cannot reach a Loom server"; !strings.HasPrefix(te.err.String(), want) {
		t.Errorf("why against no server: stderr = %q, want it to start %q", te.err.String(), want)
	}
}

// loom priority and scontrol show config read the weights the servers
// hold, not the defaults.
func TestPriorityAndShowConfigReadTheServersConfig(t *testing.T) {
	st := testClusterState()
	f := &fakeServer{jobs: st.jobs, config: &api.ClusterConfig{
		Source:    "/etc/loom/loom.toml",
		Scheduler: &api.SchedulerSettings{WeightAge: 123456, DefaultTimeS: 3600},
		Qos:       []*api.QOSConfig{{Name: "high", Priority: 10}},
	}}
	for _, n := range st.nodes {
		f.nodes = append(f.nodes, &api.NodeInfo{Node: n})
	}
	addr := f.start(t)
	te := newTestEnv("loom priority", addr)
	if code := runPriority(context.Background(), te.env, nil); code != 0 {
		t.Fatalf("priority = %d; stderr %q", code, te.err.String())
	}
	if !strings.Contains(te.out.String(), "123456") {
		t.Errorf("priority printed %q, want the age weight 123456 from the servers' config", te.out.String())
	}
	te = newTestEnv("scontrol", addr)
	if code := runScontrol(context.Background(), te.env, []string{"show", "config"}); code != 0 {
		t.Fatalf("scontrol show config = %d; stderr %q", code, te.err.String())
	}
	for _, want := range []string{"PriorityWeightAge       = 123456", "PriorityWeightQOS       = 0", "DefaultTime             = 1:00:00", "SchedulerReserveDepth   = 8", "QOS[high]               = Priority=10"} {
		if !strings.Contains(te.out.String(), want) {
			t.Errorf("scontrol show config printed\n%s\nwant a line %q", te.out.String(), want)
		}
	}
}
