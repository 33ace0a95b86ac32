package scheduler

import (
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
)

// A QoS's per-user limits hold a user's further jobs with Slurm's reasons,
// count jobs placed in the same cycle, and leave other users and QoS
// alone.
func TestQOSPerUserLimits(t *testing.T) {
	now := time.Unix(10_000, 0)
	cfg := Config{QOS: map[string]QOS{
		"gpu4": {MaxGPUsPerUser: 4},
		"one":  {MaxJobsPerUser: 1},
		"cpu8": {MaxCPUsPerUser: 8},
	}}
	as := func(j *api.Job, user string) *api.Job { j.User = user; return j }
	v := &View{
		Nodes: []*api.Node{node("a", 8, 64), node("b", 8, 64)},
		Jobs: []*api.Job{
			as(running(1, &api.JobSpec{GpusPerNode: 2, Qos: "gpu4"}, now.Add(-time.Hour), gpuRank("a", 0, 1)), "alice"),
			as(pending(2, &api.JobSpec{GpusPerNode: 2, Qos: "gpu4"}), "alice"), // 2+2 = 4: starts
			as(pending(3, &api.JobSpec{GpusPerNode: 1, Qos: "gpu4"}), "alice"), // 5 > 4: waits
			as(pending(4, &api.JobSpec{GpusPerNode: 2, Qos: "gpu4"}), "bob"),   // bob's own count
			as(pending(5, &api.JobSpec{GpusPerNode: 1, Qos: "one"}), "carol"),  // first: starts
			as(pending(6, &api.JobSpec{GpusPerNode: 1, Qos: "one"}), "carol"),  // second: waits
			as(pending(7, &api.JobSpec{CpusPerTask: 16, Qos: "cpu8"}), "dave"), // 16 > 8 CPUs
			as(pending(8, &api.JobSpec{GpusPerNode: 1}), "alice"),              // no QoS: no limit
		},
	}
	plan := Schedule(v, now, cfg)
	placed := map[uint64]bool{}
	for _, p := range plan.Placements {
		placed[p.JobId] = true
	}
	reasons := map[uint64]string{}
	for _, p := range plan.Pending {
		reasons[p.JobId] = p.Reason
	}
	for id, want := range map[uint64]string{3: ReasonQOSMaxGRESPerUser, 6: ReasonQOSMaxJobsPerUser, 7: ReasonQOSMaxCPUPerUser} {
		if placed[id] || reasons[id] != want {
			t.Errorf("job %d: placed %v, reason %q; want pending with %s", id, placed[id], reasons[id], want)
		}
	}
	for _, id := range []uint64{2, 4, 5, 8} {
		if !placed[id] {
			t.Errorf("job %d not placed (reason %q); want it started", id, reasons[id])
		}
	}
}
