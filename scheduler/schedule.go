package scheduler

import (
	"cmp"
	"slices"
	"time"

	"github.com/loomhpc/loom/api"
)

// Pending reasons, as squeue prints them.
const (
	ReasonResources = "Resources"
	ReasonPriority  = "Priority"
	ReasonPartition = "PartitionConfig"
)

// Config tunes the scheduler. The zero value is usable.
type Config struct {
	// MaxPlacementsPerCycle bounds one plan's size so a huge backlog is
	// committed in several Raft entries rather than one giant one.
	MaxPlacementsPerCycle int
}

// View is what Schedule sees: the nodes, the jobs that are pending or hold
// resources, and what those hold. It must not be modified.
type View struct {
	Nodes []*api.Node
	Jobs  []*api.Job
	Usage api.Usage
}

// Plan is one cycle's decisions.
type Plan struct {
	Placements []*api.Placement
	Pending    []*api.PendingReason
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return len(p.Placements) == 0 && len(p.Pending) == 0 }

// Schedule places pending gangs, all ranks or none, first-fit in priority
// order (then submit order), and says why the others wait.
func Schedule(v *View, now time.Time, cfg Config) *Plan {
	_ = now // the first-fit policy has no time-dependent factor yet
	pool := newPool(v.Nodes, v.Usage)
	var pending []*api.Job
	for _, j := range v.Jobs {
		// A requeued gang waits until every rank of its last allocation
		// is known to be gone.
		if j.State == api.JobState_PENDING && !j.HoldsResources() {
			pending = append(pending, j)
		}
	}
	slices.SortStableFunc(pending, func(a, b *api.Job) int {
		if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
			return c
		}
		return cmp.Compare(a.Id, b.Id)
	})
	plan := &Plan{}
	blocked := false
	for _, j := range pending {
		if cfg.MaxPlacementsPerCycle > 0 && len(plan.Placements) >= cfg.MaxPlacementsPerCycle {
			break
		}
		if a := pool.place(j); a != nil {
			plan.Placements = append(plan.Placements, &api.Placement{JobId: j.Id, Allocation: a})
			continue
		}
		reason := ReasonResources
		if blocked {
			reason = ReasonPriority
		}
		blocked = true
		if j.Reason != reason {
			plan.Pending = append(plan.Pending, &api.PendingReason{JobId: j.Id, Reason: reason})
		}
	}
	return plan
}
