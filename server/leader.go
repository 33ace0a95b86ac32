package server

import (
	"context"
	"sync"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/raftnode"
	"github.com/loomhpc/loom/scheduler"
	"github.com/loomhpc/loom/state"
	"github.com/loomhpc/loom/state/acct"
)

// leaderLoop runs the leader's duties while this server leads.
func (s *Server) leaderLoop() {
	runWhileLeading(s.ctx, s.raft.Leadership, s.startLeading)
}

// runWhileLeading starts the leader's duties (start returns what stops
// them and waits until they have) for each term of office that watch
// reports, and stops them when it ends or ctx is done. A loss and regain
// that happened while it was busy shows as a new Changes count, so the
// duties of the old term are stopped before those of the new one start:
// each term's duties begin with their own barrier, and two sets never run
// at once.
func runWhileLeading(ctx context.Context, watch func() (raftnode.Leadership, <-chan struct{}), start func(raftnode.Leadership) context.CancelFunc) {
	var stop context.CancelFunc
	var term uint64 // the Changes count the running duties belong to
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for {
		now, changed := watch()
		if stop != nil && (!now.Leader || now.Changes != term) {
			stop()
			stop = nil
		}
		if now.Leader && stop == nil {
			stop, term = start(now), now.Changes
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

func (s *Server) startLeading(l raftnode.Leadership) context.CancelFunc {
	s.log.Info("became leader", "leadership_changes", l.Changes)
	ctx, cancel := context.WithCancel(s.ctx)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		s.scheduleLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		s.expireLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		s.nodeHealthLoop(ctx)
	}()
	if s.cfg.MailProg != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.mailLoop(ctx, s.cfg.MailProg, s.raft.Store(), s.raft.Store().View())
		}()
	}
	return func() {
		cancel()
		wg.Wait()
		s.log.Info("stopped leading")
	}
}

// scheduleLoop runs a scheduling cycle on every state change and at least
// every SchedulerInterval. The first change after a quiet spell is
// planned at once, so that a job submitted to an idle cluster starts
// without waiting; under a storm of changes cycles are paced by
// cycleDelay, so that one cycle plans a whole burst.
func (s *Server) scheduleLoop(ctx context.Context) {
	// Apply everything the previous leader committed before planning.
	if err := s.raft.Barrier(ctx); err != nil {
		s.log.Warn("barrier before scheduling", "err", err)
	}
	s.takeOfficeConfig(ctx)
	store := s.raft.Store()
	var lastIndex uint64
	var lastEnd time.Time
	var lastCycle time.Duration
	fs := fairShareCache{archive: s.acct}
	var sc schedulerConfigCache
	hc := historyCache{archive: s.acct}
	tick := time.NewTicker(s.cfg.SchedulerInterval)
	defer tick.Stop()
	for {
		snap, changed := store.Changed()
		if snap.Index() != lastIndex {
			if wait := cycleDelay(time.Now(), lastEnd, lastCycle); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return
				}
				continue // plan from what arrived meanwhile too
			}
			start := time.Now()
			lastIndex = s.scheduleOnce(ctx, snap, &fs, &hc, sc.at(snap.Config(), s.cfg.Scheduler))
			lastEnd = time.Now()
			lastCycle = lastEnd.Sub(start)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
			lastIndex = 0 // time passes: look again even without changes
		}
	}
}

// minCycleGap is the least time between the end of one scheduling cycle
// and the start of the next: what a burst of changes arriving together
// waits at most to be planned as one.
const minCycleGap = 5 * time.Millisecond

// cycleDelay is how long a change seen at now waits before a cycle, when
// the last one ended at lastEnd after taking lastCycle. Cycles are at
// least minCycleGap and twice the last cycle's length apart, so that under
// a storm of changes scheduling takes at most a third of a core and the
// write path keeps the rest; a change after a longer quiet spell waits
// for nothing.
func cycleDelay(now, lastEnd time.Time, lastCycle time.Duration) time.Duration {
	return max(0, lastEnd.Add(max(minCycleGap, 2*lastCycle)).Sub(now))
}

// schedulerView is what a cycle at now plans from: snap's nodes, live
// jobs, partitions and reservations not yet ended, with the accounts'
// fair-share usage and, under gittins, the sizes learned from finished
// jobs. The leader's cycle and TestSubmit's trial plan both use it.
// Schedule derives what allocations hold from the jobs themselves.
func schedulerView(snap *state.View, now time.Time, cfg *scheduler.Config, fs *fairShareCache, hc *historyCache) *scheduler.View {
	view := &scheduler.View{Lookup: snap.Job, AccountUsage: fs.at(snap, now, cfg.Priority.FairShareHalfLife),
		History: hc.at(snap, now, cfg), Partitions: snap.Config().GetPartitions(), Reservations: liveReservations(snap, now)}
	for n := range snap.Nodes() {
		view.Nodes = append(view.Nodes, n)
	}
	for j := range snap.ActiveJobs() {
		view.Jobs = append(view.Jobs, j)
	}
	return view
}

// scheduleOnce runs one cycle and returns the index it planned from, or
// the plan's own index when it committed one (so its own commit does not
// trigger a pointless cycle unless the plan left work undone).
func (s *Server) scheduleOnce(ctx context.Context, snap *state.View, fs *fairShareCache, hc *historyCache, cfg scheduler.Config) uint64 {
	start := time.Now()
	s.expireReservations(ctx, snap, start)
	view := schedulerView(snap, start, &cfg, fs, hc)
	plan := scheduler.Schedule(view, start, cfg)
	s.metrics.observeCycle(time.Since(start))
	if plan.Empty() {
		return snap.Index()
	}
	res, err := s.apply(ctx, state.CmdApplyPlan, &api.PlanCommand{
		Placements: plan.Placements, Pending: plan.Pending, Preemptions: plan.Preemptions,
		NowUnixMs: nowMs(), SnapshotIndex: snap.Index(),
	})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("plan not committed", "err", err)
		}
		return 0
	}
	s.metrics.observePlan(res)
	if res.Placed > 0 {
		s.log.Info("plan committed", "placed", res.Placed, "rejected", res.Rejected, "index", res.Index)
	}
	if res.Rejected > 0 || len(plan.Placements) >= cfg.MaxPlacementsPerCycle {
		return 0 // conflicts or a capped plan: go again
	}
	return res.Index
}

// fairShareCache holds every account's decayed GPU-seconds from jobs
// that have ended, for fair share. Computing it scans the job history, so
// it is recomputed at most once a minute (usage decays over days; a
// minute's staleness moves no priority noticeably). Running jobs' usage
// the scheduler adds itself. It belongs to one scheduleLoop.
type fairShareCache struct {
	usage   map[string]float64
	when    time.Time
	archive *acct.Store // jobs that have left the live state; may be nil
}

// fairShareHorizon is how many half-lives back archived jobs are read:
// older usage has decayed below 1/256 of its value.
const fairShareHorizon = 8

func (c *fairShareCache) at(snap *state.View, now time.Time, halfLife time.Duration) map[string]float64 {
	if c.usage != nil && now.Sub(c.when) < time.Minute {
		return c.usage
	}
	l := &scheduler.Ledger{HalfLife: halfLife}
	for j := range snap.Jobs() {
		if !j.State.Terminal() || j.StartUnixMs == 0 || j.EndUnixMs == 0 {
			continue
		}
		gpus := 0
		for _, r := range j.GetAllocation().GetRanks() {
			gpus += len(r.GpuUuids)
		}
		l.Charge(scheduler.AccountOf(j), float64(gpus), time.UnixMilli(j.StartUnixMs), time.UnixMilli(j.EndUnixMs))
	}
	if c.archive != nil {
		hl := halfLife
		if hl <= 0 {
			hl = scheduler.DefaultFairShareHalfLife
		}
		for u := range c.archive.Usages(now.Add(-fairShareHorizon * hl).UnixMilli()) {
			if snap.Job(u.JobID) != nil {
				continue // archived as this view was taken: counted above
			}
			account := scheduler.AccountOf(&api.Job{User: u.User, Spec: &api.JobSpec{Account: u.Account}})
			l.Charge(account, float64(u.GPUs), time.UnixMilli(u.StartMs), time.UnixMilli(u.EndMs))
		}
	}
	c.usage, c.when = l.At(now), now
	return c.usage
}
