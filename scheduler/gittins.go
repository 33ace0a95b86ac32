package scheduler

import (
	"time"

	"github.com/loomhpc/loom/api"
)

// OrderGittins serves jobs by their Gittins index (Gittins, 1979; for
// scheduling without known sizes, Scully et al., SIGMETRICS '21): the
// sizes of the jobs that finished on this cluster (View.History, per
// account and GPU count) are the distribution a job's size is drawn from,
// and its attained service (api.Job's AttainedGPUSeconds) is what it is
// known to exceed. The index is the best rate, over every further amount
// of service, at which serving the job finishes it: a new job of a class
// whose jobs are mostly short comes first; a job that has run past most
// of its class sinks (as under LAS); a job close to a common size rises.
// Nothing else about durations is used, not even time limits (they still
// bound backfill and reservations, as for every policy).
//
// A job that cannot start preempts, as under OrderLeastAttained,
// requeueable batch jobs whose index is below its own by LASConfig's
// GittinsMargin, after the same Patience and never within the same
// doubling MinRun; reservations for the top gangs and backfill are as for
// every order.

// DefaultGittinsMargin is the default LASConfig.GittinsMargin.
const DefaultGittinsMargin = 4

// gittinsIndex is j's Gittins index this cycle, computed once.
func (c *cycle) gittinsIndex(j *api.Job) float64 {
	if x, ok := c.indices[j.Id]; ok {
		return x
	}
	if c.indices == nil {
		c.indices = map[uint64]float64{}
	}
	x := c.v.History.JobIndex(j, c.now)
	c.indices[j.Id] = x
	return x
}

// gittinsMargin is how many times a running job's index the index of a
// job that preempts it must be.
func (c *cycle) gittinsMargin() float64 {
	if c.las.GittinsMargin <= 0 {
		return DefaultGittinsMargin
	}
	return c.las.GittinsMargin
}

// gittinsVictim reports whether a job of index mine may preempt the
// running h.
func (c *cycle) gittinsVictim(mine float64, h *holding) bool {
	if c.las.Preempt != PreemptRequeueable || !Preemptible(h.job) || c.runProtected(h.job) {
		return false
	}
	return c.gittinsIndex(h.job)*c.gittinsMargin() <= mine
}

// runProtected reports whether j's current run is younger than MinRun,
// doubled per earlier preemption.
func (c *cycle) runProtected(j *api.Job) bool {
	l := &c.las
	return l.MinRun > 0 && c.now.Sub(time.UnixMilli(j.StartUnixMs)) < protected(l.MinRun, j.PreemptCount)
}

// gittinsPromoted reports whether j has waited PromoteFactor times as
// long as its index says it has left to run (1 / (index × its GPUs)
// seconds): the starvation guard of a policy that would otherwise let a
// large gang of a low index wait behind every newcomer of a higher one.
// A promoted job is served before every job that is not, oldest first,
// so it gets a reservation; it preempts by its index alone.
func (c *cycle) gittinsPromoted(j *api.Job) bool {
	k := c.las.PromoteFactor
	switch {
	case k < 0:
		return false
	case k == 0:
		k = DefaultGittinsPromote
	}
	waited := c.now.Sub(time.UnixMilli(j.SubmitUnixMs)).Seconds() - j.RanSeconds(c.now)
	left := 1 / (c.gittinsIndex(j) * float64(max(HistoryGPUs(j.GetSpec()), 1)))
	return waited >= k*left
}

// DefaultGittinsPromote is LASConfig.PromoteFactor under OrderGittins
// when it is 0 (negative turns promotion off): on the Philly replay it
// bounded the largest class's p99 queueing below multifactor's for about
// 1% of average JCT (docs/simulation.md).
const DefaultGittinsPromote = 64
