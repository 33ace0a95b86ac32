package scheduler

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/loomhpc/loom/api"
)

// Pending reasons, as squeue prints them: Slurm's names, plus Loom's own
// Topology, Reserved and Preempting.
const (
	// ReasonResources: the job is among the top gangs and waits for
	// resources; with a reservation it carries an expected start.
	ReasonResources = "Resources"
	// ReasonPriority: higher-priority jobs hold the reservations it would need.
	ReasonPriority = "Priority"
	// ReasonPartition: the partition cannot hold the job.
	ReasonPartition = "PartitionConfig"
	// ReasonReserved: free resources exist now, but running there would
	// delay a higher-priority gang's reservation.
	ReasonReserved = "Reserved"
	// ReasonTopology: capacity exists, but not with the requested
	// locality (--switches).
	ReasonTopology = "Topology"
	// ReasonDependency: a --dependency is not yet satisfied.
	ReasonDependency = "Dependency"
	// ReasonDependencyNeverSatisfied: a dependency can no longer be met
	// (afterok on a failed job, for instance); the job waits until cancelled.
	ReasonDependencyNeverSatisfied = "DependencyNeverSatisfied"
	// ReasonBeginTime: --begin is in the future.
	ReasonBeginTime = "BeginTime"
	// ReasonArrayTaskLimit: the array's %N limit of running tasks is reached.
	ReasonArrayTaskLimit = "JobArrayTaskLimit"
	// ReasonHeld: held by --hold or scontrol hold.
	ReasonHeld = "JobHeldUser"
	// ReasonPreempting: lower-QoS jobs are being stopped to make room.
	ReasonPreempting = "Preempting"
	// ReasonPartitionDown: the job's partition is DOWN; it starts once the
	// partition is UP again.
	ReasonPartitionDown = "PartitionDown"
	// ReasonPartitionInactive: the job's partition is INACTIVE.
	ReasonPartitionInactive = "PartitionInactive"
)

// Order is how the pending queue is sorted.
type Order int

// Orders.
const (
	// OrderMultifactor sorts by Slurm-style multifactor priority (the default).
	OrderMultifactor Order = iota
	// OrderFIFO sorts by submit time.
	OrderFIFO
	// OrderShortest sorts by time limit, shortest first (SJF when the limits
	// are the true durations).
	OrderShortest
	// OrderLeastAttained sorts by discretised least attained service
	// (see LASConfig), first come first served within a queue, and
	// preempts requeueable jobs of later queues.
	OrderLeastAttained
	// OrderGittins sorts by each job's Gittins index, learned from the
	// sizes of finished jobs (View.History) and its attained service,
	// highest first, and preempts requeueable jobs of much lower index
	// (see gittins.go). It uses no time limit and no true duration.
	OrderGittins
)

// Defaults for the zero Config.
const (
	DefaultReserveDepth   = 8
	DefaultBackfillWindow = 7 * 24 * time.Hour
)

// Config tunes the scheduler. The zero value is usable: multifactor
// priority with Slurm-like default weights, 8 reservations, a 7-day window.
type Config struct {
	// MaxPlacementsPerCycle bounds one plan's size so a huge backlog is
	// committed in several Raft entries rather than one giant one.
	MaxPlacementsPerCycle int
	// Order picks the queue order; Priority tunes OrderMultifactor, LAS
	// OrderLeastAttained.
	Order    Order
	Priority PriorityConfig
	LAS      LASConfig
	// Strict stops at the first job that cannot start: nothing passes it
	// (plain FIFO). Otherwise lower-priority jobs backfill.
	Strict bool
	// ReserveDepth is K: how many of the highest-priority gangs that cannot
	// start get a reservation. 0 means DefaultReserveDepth; negative, none.
	ReserveDepth int
	// BackfillWindow: reservations are made only for starts within it.
	// 0 means DefaultBackfillWindow.
	BackfillWindow time.Duration
	// DefaultTimeLimit applies to jobs that give none (time_limit_s 0);
	// 0 leaves them unlimited, so they never backfill into reserved GPUs.
	DefaultTimeLimit time.Duration
	// Network is the switch tree; nil takes each node's leaf_switch and
	// spine_switch.
	Network *Network
	// QOS names the qualities of service; a job whose QoS is not listed
	// has priority 0 and preempts nothing.
	QOS map[string]QOS
}

// QOS is one quality of service, as Slurm's sacctmgr defines it.
type QOS struct {
	// Priority feeds the QoS factor (normalized by the largest).
	Priority uint32
	// Preempt lists the QoS names this one may preempt.
	Preempt []string
	// MaxGPUsPerUser, MaxCPUsPerUser and MaxJobsPerUser bound what one
	// user's running jobs of this QoS hold (MaxTRESPerUser,
	// MaxJobsPerUser); 0: no limit. See qoslimits.go.
	MaxGPUsPerUser, MaxCPUsPerUser, MaxJobsPerUser uint32
}

func (c *Config) reserveDepth() int {
	switch {
	case c.ReserveDepth < 0:
		return 0
	case c.ReserveDepth == 0:
		return DefaultReserveDepth
	}
	return c.ReserveDepth
}

func (c *Config) backfillWindow() time.Duration {
	if c.BackfillWindow <= 0 {
		return DefaultBackfillWindow
	}
	return c.BackfillWindow
}

// View is what Schedule sees: the nodes, the jobs that are pending or hold
// resources, and what those hold. It must not be modified.
type View struct {
	Nodes []*api.Node
	Jobs  []*api.Job
	// Usage is what live allocations hold. Schedule derives the same from
	// Jobs and ignores it; it is kept for shells and tests that have it.
	Usage api.Usage
	// Partitions are the cluster's [[partition]] tables (ClusterConfig);
	// none leaves a node in the partitions its agent names.
	Partitions []*api.PartitionConfig
	// Lookup finds any job by id, finished ones included, for
	// dependencies; nil means only Jobs are known.
	Lookup func(id uint64) *api.Job
	// Reservations are the advance reservations (scontrol create
	// reservation); see reservations.go.
	Reservations []*api.Reservation
	// AccountUsage is each account's decayed GPU-seconds from jobs that
	// have ended (see Ledger); running jobs' usage Schedule adds itself.
	AccountUsage map[string]float64
	// History is what finished jobs taught the cluster about job sizes,
	// for OrderGittins; nil: nothing yet (least attained service first).
	History *ServiceHistory
}

// Plan is one cycle's decisions.
type Plan struct {
	Placements  []*api.Placement
	Pending     []*api.PendingReason
	Preemptions []*api.Preemption
	// Reservations are the top gangs' reservations (not committed: they
	// are recomputed every cycle; kept for loom why and tests).
	Reservations []Reservation
}

// Reservation is where and when a waiting gang is expected to start.
type Reservation struct {
	JobID uint64
	Start time.Time
	End   time.Time // Start + the job's time limit
	Nodes []string
	GPUs  []string // UUIDs
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool {
	return len(p.Placements) == 0 && len(p.Pending) == 0 && len(p.Preemptions) == 0
}

// Schedule places pending gangs, all ranks or none, in priority order;
// reserves resources for the top gangs that cannot start; lets lower jobs
// backfill where they delay no reservation; preempts lower QoS where that
// is the only way a job starts; and says why every other job waits.
func Schedule(v *View, now time.Time, cfg Config) *Plan {
	cfg = cfg.withPartitions(v.Partitions)
	c := newCycle(v, now, &cfg)
	c.setupReservations()
	return c.run()
}

// pendingJob is one waiting job during a cycle.
type pendingJob struct {
	job      *api.Job
	prio     float64
	limit    time.Duration // 0: unlimited
	reason   string
	expected int64
	tier     uint32 // its partition's PriorityTier
}

func (c *cycle) run() *Plan {
	plan := &Plan{}
	var queue []*pendingJob
	for _, j := range c.v.Jobs {
		if j.State != api.JobState_PENDING || j.HoldsResources() {
			// A requeued gang waits until every rank of its last
			// allocation is known to be gone.
			continue
		}
		pj := &pendingJob{job: j, limit: c.timeLimit(j)}
		if r, at := c.ineligible(j); r != "" {
			pj.reason, pj.expected = r, at
			c.setReason(plan, pj)
			continue
		}
		queue = append(queue, pj)
	}
	c.sortQueue(queue)

	depth := c.cfg.reserveDepth()
	blocked := false
	qosUse := c.qosUsage()
	for _, pj := range queue {
		j := pj.job
		if c.cfg.MaxPlacementsPerCycle > 0 && len(plan.Placements) >= c.cfg.MaxPlacementsPerCycle {
			break // later jobs keep their reasons until the next cycle
		}
		if c.cfg.Strict && blocked {
			pj.reason = ReasonPriority
			c.setReason(plan, pj)
			continue
		}
		if lim, ok := c.arrayLimit(j); ok && c.arrayRunning[j.ArrayJobId] >= lim {
			pj.reason = ReasonArrayTaskLimit
			c.setReason(plan, pj)
			continue
		}
		if r := c.overJobLimit(qosUse, j); r != "" {
			pj.reason = r
			c.setReason(plan, pj)
			continue
		}
		req := c.request(j)
		end := c.endOf(pj.limit)
		if req.impossible {
			pj.reason = ReasonPartition
			c.setReason(plan, pj)
			continue
		}
		pl, why := c.tryPlace(req, end, true)
		if pl != nil {
			if r := c.overTRESLimit(qosUse, j, req, pl); r != "" {
				pj.reason = r
				c.setReason(plan, pj)
				continue
			}
			a := c.take(j, req, pl, end)
			c.chargeQOS(qosUse, j, a)
			plan.Placements = append(plan.Placements, &api.Placement{JobId: j.Id, Allocation: a})
			if j.ArrayJobId != 0 {
				c.arrayRunning[j.ArrayJobId]++
			}
			continue
		}
		// The job cannot start now. Work out why, and reserve for the top K.
		pj.reason = ReasonPriority
		if !blocked {
			pj.reason = ReasonResources
		}
		if why == failTopology {
			pj.reason = ReasonTopology
		} else if c.hasReservations() && c.fitsUnreserved(req) {
			pj.reason = ReasonReserved
		}
		blocked = true
		if c.gangReservations() >= depth || why == failTopology {
			c.setReason(plan, pj)
			continue
		}
		r := c.reserve(pj, req)
		if r == nil || r.start.After(c.now) {
			// Resources are not coming back right now: a higher QoS may
			// take them from a lower one, an earlier LAS queue from a
			// later one.
			if victims := c.preemptFor(pj, req); len(victims) > 0 {
				for _, vj := range victims {
					plan.Preemptions = append(plan.Preemptions, &api.Preemption{JobId: vj.Id, ForJobId: j.Id})
				}
				pj.reason, pj.expected = ReasonPreempting, c.now.UnixMilli()
				c.setReason(plan, pj)
				continue
			}
		}
		if r != nil {
			pj.expected = r.start.UnixMilli()
			c.addReservation(r)
			plan.Reservations = append(plan.Reservations, c.describe(r))
		}
		c.setReason(plan, pj)
	}
	return plan
}

// setReason records pj's reason in the plan when it changed. An expected
// start that was already due and still is ("any moment now": resources
// are being freed) is left as it was, so that waiting for ranks to stop
// does not commit a new expected start every cycle.
func (c *cycle) setReason(plan *Plan, pj *pendingJob) {
	j := pj.job
	now := c.now.UnixMilli()
	if pj.expected != 0 && pj.expected <= now && j.ExpectedStartUnixMs != 0 && j.ExpectedStartUnixMs <= now {
		pj.expected = j.ExpectedStartUnixMs
	}
	if j.Reason == pj.reason && j.ExpectedStartUnixMs == pj.expected {
		return
	}
	plan.Pending = append(plan.Pending, &api.PendingReason{JobId: j.Id, Reason: pj.reason, ExpectedStartUnixMs: pj.expected})
}

// sortQueue orders the eligible jobs by the configured order; ties go to
// the earlier submit, then to a seeded order, then to the lower id.
func (c *cycle) sortQueue(q []*pendingJob) {
	switch c.cfg.Order {
	case OrderMultifactor:
		c.prio.prepare(c)
		for _, pj := range q {
			pj.prio = c.prio.total(pj.job, pj.limit)
		}
	case OrderLeastAttained:
		for _, pj := range q {
			// Queues are far apart: a limit never outweighs one.
			pj.prio = -1e12 * float64(c.lasQueue(pj.job))
			if c.las.WithinQueue == QueueShortestLimit {
				pj.prio -= limitOrForever(pj.limit)
			}
		}
	case OrderGittins:
		for _, pj := range q {
			pj.prio = math.Log(c.gittinsIndex(pj.job))
			if c.gittinsPromoted(pj.job) {
				pj.prio = 1e6 // above any index: oldest first
			}
		}
	case OrderShortest:
		for _, pj := range q {
			if pj.limit == 0 {
				pj.prio = -1e18
			} else {
				pj.prio = -pj.limit.Seconds()
			}
		}
	}
	if c.partTable != nil {
		for _, pj := range q {
			pj.tier = c.partTable.Get(pj.job.GetSpec().PartitionOf()).GetPriorityTier()
		}
	}
	slices.SortFunc(q, func(a, b *pendingJob) int {
		// Slurm's PriorityTier: a higher tier goes first whatever the
		// priority.
		if c := cmp.Compare(b.tier, a.tier); c != 0 {
			return c
		}
		if c := cmp.Compare(b.prio, a.prio); c != 0 {
			return c
		}
		if c := cmp.Compare(a.job.SubmitUnixMs, b.job.SubmitUnixMs); c != 0 {
			return c
		}
		// Jobs committed in the same millisecond (one group-committed
		// batch, or one client's quick succession) keep their submit
		// order: job ids are handed out in it.
		return cmp.Compare(a.job.Id, b.job.Id)
	})
}

// withPartitions returns cfg with each partition's PriorityJobFactor as
// its partition priority, unless cfg sets those itself.
func (cfg Config) withPartitions(parts []*api.PartitionConfig) Config {
	if cfg.Priority.PartitionPriority != nil {
		return cfg
	}
	for _, p := range parts {
		if p.GetPriorityJobFactor() == 0 {
			continue
		}
		if cfg.Priority.PartitionPriority == nil {
			cfg.Priority.PartitionPriority = map[string]uint32{}
		}
		cfg.Priority.PartitionPriority[p.GetName()] = p.GetPriorityJobFactor()
	}
	return cfg
}

// limitOrForever is limit in seconds, with unlimited (0) after any limit.
func limitOrForever(limit time.Duration) float64 {
	if limit == 0 {
		return 1e11
	}
	return min(limit.Seconds(), 1e11)
}

// timeLimit returns j's limit; 0 means unlimited.
func (c *cycle) timeLimit(j *api.Job) time.Duration {
	switch s := j.GetSpec().GetTimeLimitS(); {
	case s > 0:
		return time.Duration(s) * time.Second
	case s < 0:
		return 0
	}
	return c.cfg.DefaultTimeLimit
}

// endOf returns when a job started now with limit would end.
func (c *cycle) endOf(limit time.Duration) time.Time {
	if limit == 0 {
		return forever
	}
	return c.now.Add(limit)
}

// forever stands for "no time limit".
var forever = time.Unix(1<<40, 0)
