package agent

import (
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/prometheus/client_golang/prometheus"
)

// agentMetrics exports what this agent runs.
type agentMetrics struct {
	a          *Agent
	tasks      *prometheus.Desc
	gpus       *prometheus.Desc
	rankStarts *prometheus.HistogramVec
}

func newAgentMetrics(a *Agent) *agentMetrics {
	return &agentMetrics{
		a:     a,
		tasks: prometheus.NewDesc("loom_agent_tasks_running", "Ranks this agent runs now.", nil, nil),
		gpus:  prometheus.NewDesc("loom_agent_gpus", "GPUs on this node by state (allocated, idle).", []string{"state"}, nil),
		rankStarts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "loom_agent_rank_start_seconds",
			Help: "From the placement of a rank's allocation (or its step's creation) on the leader to its process running here, by kind (gang, batch, step).",
			// 10 ms to about 10 minutes: a process, to an image pull.
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 17),
		}, []string{"kind"}),
	}
}

func (m *agentMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.tasks
	ch <- m.gpus
	m.rankStarts.Describe(ch)
}

// observeStart records how long rank k of j took from its allocation's
// creation to started. For a step's task j is the step's view (stepView),
// whose allocation is the step's. The creation time is the leader's
// clock, so the figure assumes clocks in step (NTP); a negative gap
// counts 0.
func (m *agentMetrics) observeStart(k taskKey, j *api.Job, started time.Time) {
	kind := "gang"
	if k.step != 0 {
		kind = "step"
		if st := j.GetSteps(); len(st) == 1 && st[0].GetId() == api.StepBatch {
			kind = "batch"
		}
	}
	created := j.GetAllocation().GetCreatedUnixMs()
	if created <= 0 {
		return
	}
	m.rankStarts.WithLabelValues(kind).Observe(max(started.Sub(time.UnixMilli(created)), 0).Seconds())
}

func (m *agentMetrics) Collect(ch chan<- prometheus.Metric) {
	m.a.mu.Lock()
	running := 0
	held := map[string]bool{}
	for _, t := range m.a.tasks {
		if !t.slot {
			running++ // a slot is an allocation's share, not a process
		}
		for _, g := range t.rank.GpuUuids {
			held[g] = true
		}
	}
	total := len(m.a.node.GetTopology().GetGpus())
	m.a.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(m.tasks, prometheus.GaugeValue, float64(running))
	ch <- prometheus.MustNewConstMetric(m.gpus, prometheus.GaugeValue, float64(len(held)), "allocated")
	ch <- prometheus.MustNewConstMetric(m.gpus, prometheus.GaugeValue, float64(total-len(held)), "idle")
	m.rankStarts.Collect(ch)
}
