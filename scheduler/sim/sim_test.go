package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/scheduler"
)

func TestLimitModels(t *testing.T) {
	tests := []struct {
		model string
		in    time.Duration
		want  time.Duration
	}{
		{"exact", 90 * time.Second, 90 * time.Second},
		{"factor:2", 90 * time.Second, 180 * time.Second},
		{"roundup", 90 * time.Second, time.Hour},
		{"roundup", 3 * time.Hour, 4 * time.Hour},
		{"roundup", 30 * time.Hour, 48 * time.Hour},
		{"roundup", 8 * 24 * time.Hour, 14 * 24 * time.Hour},
	}
	for _, tt := range tests {
		m, err := ParseLimitModel(tt.model)
		if err != nil {
			t.Fatal(err)
		}
		if got := m(tt.in); got != tt.want {
			t.Errorf("%s(%s) = %s, want %s", tt.model, tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "factor:0.5", "factor:x", "round"} {
		if _, err := ParseLimitModel(bad); err == nil {
			t.Errorf("ParseLimitModel(%q) = nil error, want one", bad)
		}
	}
}

// toyTrace: one 8-GPU node. A long 8-GPU job arrives first, then short
// 1-GPU jobs: FIFO makes them wait behind it; SJF does not.
const toyTrace = `submit,duration,gpus
0,1000,8
1,1000,8
2,10,1
3,10,1
`

func TestSimulatePolicies(t *testing.T) {
	jobs, err := parseTrace(strings.NewReader(toyTrace), "toy", Columns{Submit: "submit", Duration: "duration", GPUs: "gpus"})
	if err != nil {
		t.Fatal(err)
	}
	exact, _ := ParseLimitModel("exact")
	avg := func(policy string) float64 {
		cfg, err := PolicyConfig(policy)
		if err != nil {
			t.Fatal(err)
		}
		run, err := Simulate(Cluster{Name: "toy", Nodes: 1, GPUsPerNode: 8, Jobs: jobs}, Options{Scheduler: cfg, Limit: exact})
		if err != nil {
			t.Fatal(err)
		}
		if len(run.Results) != 4 {
			t.Fatalf("%s: %d results, want 4", policy, len(run.Results))
		}
		return Summarize(run.Results, 8, run.FragGPUSeconds).AvgJCT
	}
	fifo, sjf, loom := avg("fifo"), avg("sjf"), avg("loom")
	// FIFO: 1000, 1999, 1008+... the short jobs wait for both long ones.
	if want := (1000.0 + 1999 + 2008 + 2007) / 4; fifo != want {
		t.Errorf("fifo avg JCT = %.1f, want %.1f", fifo, want)
	}
	if sjf >= fifo || loom >= fifo {
		t.Errorf("avg JCT fifo %.0f, sjf %.0f, loom %.0f: want sjf and loom below fifo", fifo, sjf, loom)
	}
}

// TestSimulatePreemptionCosts: under las a short job arriving while a long
// one runs preempts it; the long job keeps its GPUs for the grace, loses
// the restart cost and resumes with the rest of its work.
func TestSimulatePreemptionCosts(t *testing.T) {
	// Times from t0 (not the epoch: a start at Unix 0 reads as never started).
	const t0 = 360000
	jobs := []TraceJob{
		{Submit: time.Unix(t0, 0), Duration: 10000 * time.Second, GPUs: 8},
		{Submit: time.Unix(t0+4000, 0), Duration: 100 * time.Second, GPUs: 8},
	}
	cfg, err := PolicyConfig("las")
	if err != nil {
		t.Fatal(err)
	}
	run, err := Simulate(Cluster{Name: "toy", Nodes: 1, GPUsPerNode: 8, Jobs: jobs},
		Options{Scheduler: cfg, RestartCost: 60 * time.Second, Grace: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	long, short := run.Results[0], run.Results[1]
	// The long job ran 4000 s (32,000 GPU-seconds: past the first
	// queue), of which 3940 s count; 6060 s remain from 4160 s, when the
	// short job (started at 4060 s, after the grace) ends.
	if long.Preemptions != 1 || long.End.Unix()-t0 != 10220 || long.Held != (4060+6060)*time.Second {
		t.Errorf("long job: %d preemptions, end t0+%d, held %s; want 1, t0+10220, %s", long.Preemptions, long.End.Unix()-t0, long.Held, (4060+6060)*time.Second)
	}
	if short.Preemptions != 0 || short.Start.Unix()-t0 != 4060 || short.Queue() != 60*time.Second {
		t.Errorf("short job: %d preemptions, start t0+%d, queue %s; want 0, t0+4060, 1m0s", short.Preemptions, short.Start.Unix()-t0, short.Queue())
	}
	s := Summarize(run.Results, 8, run.FragGPUSeconds)
	if s.Preemptions != 1 || s.PreemptionsPerJob != 0.5 || s.Classes[2].Jobs != 0 || s.Classes[1].Jobs != 2 {
		t.Errorf("summary: %d preemptions (%.2f/job), classes %+v; want 1 (0.50/job), both jobs in 2-8", s.Preemptions, s.PreemptionsPerJob, s.Classes)
	}
	if len(run.Timeline) == 0 || run.Timeline[0].At.Unix() != t0+3600 || run.Timeline[0].UsedGPUs != 8 {
		t.Errorf("timeline starts %+v, want a sample at t0+3600 s with 8 GPUs in use", run.Timeline[:min(1, len(run.Timeline))])
	}
}

func TestClassOf(t *testing.T) {
	for gpus, want := range map[int]string{0: "1", 1: "1", 2: "2-8", 8: "2-8", 9: "9-32", 32: "9-32", 33: ">32", 512: ">32"} {
		if got := ClassOf(gpus); got != want {
			t.Errorf("ClassOf(%d) = %q, want %q", gpus, got, want)
		}
	}
}

// An sacct --parsable2 export reads directly: '|' separated, duration
// from Start and End, GPUs from AllocTRES; jobs that never ran are skipped.
const sacctExport = `JobID|User|Account|JobName|Submit|Start|End|AllocTRES|State
101|alice|vision|train "big"|2024-03-01T10:00:00|2024-03-01T10:05:00|2024-03-01T11:05:00|billing=16,cpu=16,gres/gpu=4,mem=64G,node=1|COMPLETED
102|bob|nlp|prep|2024-03-01T10:01:00|2024-03-01T10:01:30|2024-03-01T10:02:30|billing=2,cpu=2,mem=8G,node=1|FAILED
103|bob|nlp|never|2024-03-01T10:02:00|Unknown|Unknown||CANCELLED by 1001
`

func TestParseSacctExport(t *testing.T) {
	cols, err := ParseColumns("submit=Submit,start=Start,end=End,gpus=AllocTRES,user=User,account=Account,name=JobName,status=State")
	if err != nil {
		t.Fatal(err)
	}
	cols.Delimiter = '|'
	jobs, err := parseTrace(strings.NewReader(sacctExport), "sacct", cols)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 {
		t.Fatalf("%d jobs, want 2 (the cancelled one never ran)", len(jobs))
	}
	a, b := jobs[0], jobs[1]
	if a.GPUs != 4 || a.Duration != time.Hour || a.User != "alice" || a.Account != "vision" || a.Name != `train "big"` || a.Status != "COMPLETED" {
		t.Errorf("job 101 = %+v", a)
	}
	if b.GPUs != 0 || b.Duration != time.Minute || b.Status != "FAILED" {
		t.Errorf("job 102 = %+v", b)
	}
	for _, bad := range []string{"submit=a,gpus=c", "submit=a,duration=b,start=s,end=e,gpus=c", "submit=a,start=s,gpus=c", "submit=a,duration=b,gpus=c,colour=d"} {
		if _, err := ParseColumns(bad); err == nil {
			t.Errorf("ParseColumns(%q) = nil error, want one", bad)
		}
	}
}

// TestSimulateGittinsLearns: gittins learns sizes only from the jobs the
// replay has finished. After three 8-GPU jobs of 5000 s, a job of that
// class that has run 4000 s is expected to end in 1000 s, so a newcomer
// (expected to need 5000 s) does not preempt it; with nothing finished
// before, least attained service first lets it.
func TestSimulateGittinsLearns(t *testing.T) {
	const t0 = 360000
	cfg, err := PolicyConfig("gittins")
	if err != nil {
		t.Fatal(err)
	}
	var jobs []TraceJob
	for i := range 3 {
		jobs = append(jobs, TraceJob{Submit: time.Unix(t0+int64(i)*5000, 0), Duration: 5000 * time.Second, GPUs: 8})
	}
	jobs = append(jobs, TraceJob{Submit: time.Unix(t0+15000, 0), Duration: 10000 * time.Second, GPUs: 8},
		TraceJob{Submit: time.Unix(t0+19000, 0), Duration: 100 * time.Second, GPUs: 8})
	for _, tt := range []struct {
		name    string
		jobs    []TraceJob
		preempt int
	}{{"learned", jobs, 0}, {"nothing finished before", jobs[3:], 1}} {
		run, err := Simulate(Cluster{Name: "toy", Nodes: 1, GPUsPerNode: 8, Jobs: tt.jobs},
			Options{Scheduler: cfg, History: &scheduler.ServiceHistory{}})
		if err != nil {
			t.Fatal(err)
		}
		long := run.Results[len(run.Results)-2]
		if long.Preemptions != tt.preempt {
			t.Errorf("%s: the long job was preempted %d times, want %d", tt.name, long.Preemptions, tt.preempt)
		}
	}
}
