package sched

import (
	"testing"

	"github.com/loomhpc/loom/scheduler"
)

// BenchmarkCycle times one full cycle over 4,096 8-GPU nodes, 70% busy,
// with 20,000 pending jobs of the Philly size mix.
func BenchmarkCycle(b *testing.B) {
	v, now := Build(Options{Nodes: 4096, GPUsPerNode: 8, Pending: 20000, Busy: 0.7, LeafSize: 32, Seed: 1})
	b.ResetTimer()
	placed := 0
	for b.Loop() {
		placed = len(scheduler.Schedule(v, now, scheduler.Config{}).Placements)
	}
	b.ReportMetric(float64(placed), "placed/cycle")
}
