package explain

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/scheduler"
)

func testState() *state {
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
	return &state{nodes: []*api.Node{n}, jobs: []*api.Job{run, pend}}
}

func TestWhy(t *testing.T) {
	var b bytes.Buffer
	if err := why(&b, testState(), 2, time.Unix(1060, 0)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pending: Resources", "expected start", "reserved: a, 4 GPUs", "priority "} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("why output lacks %q:\n%s", want, b.String())
		}
	}
	if err := why(&b, testState(), 9, time.Unix(1060, 0)); err == nil {
		t.Errorf("why(9) = nil error, want no such job")
	}
}

func TestPriorityTable(t *testing.T) {
	st := testState()
	now := time.Unix(1060, 0)
	var b bytes.Buffer
	writePriorities(&b, scheduler.Priorities(st.view(now, scheduler.Config{}), now, scheduler.Config{}), nil)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "bob") {
		t.Fatalf("priority table:\n%s", b.String())
	}
}
