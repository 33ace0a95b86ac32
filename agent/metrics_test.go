package agent

import (
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestObserveRankStart: a rank's start is timed from its allocation's
// placement, a step task's from its step's creation (the step view's
// allocation), each under its kind.
func TestObserveRankStart(t *testing.T) {
	j := &api.Job{Id: 7, Allocation: &api.Allocation{CreatedUnixMs: 10_000}}
	batch := stepView(&api.Job{Id: 7, Spec: &api.JobSpec{}}, &api.Step{Id: api.StepBatch, Allocation: &api.Allocation{CreatedUnixMs: 10_000}})
	step := stepView(&api.Job{Id: 7, Spec: &api.JobSpec{}}, &api.Step{Id: 0, Spec: &api.JobSpec{}, Allocation: &api.Allocation{CreatedUnixMs: 20_000}})
	m := newAgentMetrics(&Agent{})
	m.observeStart(taskKey{job: 7, gen: 1}, j, time.UnixMilli(10_500))
	m.observeStart(taskKey{job: 7, gen: 1, step: stepKey(api.StepBatch)}, batch, time.UnixMilli(10_250))
	m.observeStart(taskKey{job: 7, gen: 1, step: stepKey(0)}, step, time.UnixMilli(21_000))
	m.observeStart(taskKey{job: 7, gen: 1, step: stepKey(0)}, step, time.UnixMilli(19_000)) // clock skew: 0
	m.observeStart(taskKey{job: 7, gen: 1}, &api.Job{Id: 8}, time.UnixMilli(30_000))        // no allocation time: none
	tests := []struct {
		kind       string
		count, sum float64
	}{
		{"gang", 1, 0.5},
		{"batch", 1, 0.25},
		{"step", 2, 1},
	}
	for _, tt := range tests {
		h := m.rankStarts.WithLabelValues(tt.kind)
		mt := &dto.Metric{}
		if err := h.(prometheus.Metric).Write(mt); err != nil {
			t.Fatal(err)
		}
		count, sum := float64(mt.GetHistogram().GetSampleCount()), mt.GetHistogram().GetSampleSum()
		if count != tt.count || sum != tt.sum {
			t.Errorf("rank starts of kind %s: count %v sum %v, want %v and %v", tt.kind, count, sum, tt.count, tt.sum)
		}
	}
}
