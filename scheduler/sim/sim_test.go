package sim

import (
	"strings"
	"testing"
	"time"
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
