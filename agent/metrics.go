package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// agentMetrics exports what this agent runs.
type agentMetrics struct {
	a     *Agent
	tasks *prometheus.Desc
	gpus  *prometheus.Desc
}

func newAgentMetrics(a *Agent) *agentMetrics {
	return &agentMetrics{
		a:     a,
		tasks: prometheus.NewDesc("loom_agent_tasks_running", "Ranks this agent runs now.", nil, nil),
		gpus:  prometheus.NewDesc("loom_agent_gpus", "GPUs on this node by state (allocated, idle).", []string{"state"}, nil),
	}
}

func (m *agentMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.tasks
	ch <- m.gpus
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
}
