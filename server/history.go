package server

import (
	"cmp"
	"slices"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/scheduler"
	"github.com/loomhpc/loom/state"
	"github.com/loomhpc/loom/state/acct"
)

// historyCache is what the gittins policy learns job sizes from: the
// GPU-seconds of the jobs that finished, from the live state and the
// accounting archive, fed to a scheduler.ServiceHistory oldest first. It
// is rebuilt at most once a minute (a minute's finished jobs barely move a
// distribution of thousands) and only when the policy uses it. It belongs
// to one scheduleLoop, so the history is the leader's own: a new leader
// rebuilds it from the same replicated state and archive, and its
// decisions depend only on what every server holds.
type historyCache struct {
	history *scheduler.ServiceHistory
	when    time.Time
	archive *acct.Store // jobs that have left the live state; may be nil
}

// historyHorizon is how far back archived jobs are read, and
// historyArchiveJobs how many at most.
const (
	historyHorizon     = 30 * 24 * time.Hour
	historyArchiveJobs = 100_000
)

// finishedJob is one job as the history learns it, and when it ended.
type finishedJob struct {
	scheduler.FinishedJob
	endMs int64
}

// at returns the history as of now for cfg, or nil when cfg's order does
// not use one.
func (c *historyCache) at(snap *state.View, now time.Time, cfg *scheduler.Config) *scheduler.ServiceHistory {
	if cfg.Order != scheduler.OrderGittins {
		return nil
	}
	if c.history != nil && now.Sub(c.when) < time.Minute {
		return c.history
	}
	var done []finishedJob
	for j := range snap.Jobs() {
		if !j.State.Terminal() || j.StartUnixMs == 0 || j.EndUnixMs == 0 {
			continue
		}
		// The service of every run: AttainedGpuMs holds the earlier ones;
		// the last ran from StartUnixMs to EndUnixMs.
		ms := j.AttainedGpuMs + uint64(j.GetAllocation().ServiceGPUs())*uint64(max(j.EndUnixMs-j.StartUnixMs, 0))
		done = append(done, finishedJob{scheduler.FinishedJob{ID: j.Id, Account: scheduler.AccountOf(j),
			GPUs: scheduler.HistoryGPUs(j.Spec), SubmitMs: j.SubmitUnixMs, GPUSeconds: float64(ms) / 1000}, j.EndUnixMs})
	}
	if c.archive != nil {
		n := 0
		for u := range c.archive.Usages(now.Add(-historyHorizon).UnixMilli()) {
			if n++; n > historyArchiveJobs {
				break
			}
			if snap.Job(u.JobID) != nil || u.StartMs == 0 || u.EndMs < u.StartMs {
				continue // counted above, or never ran
			}
			account := scheduler.AccountOf(&api.Job{User: u.User, Spec: &api.JobSpec{Account: u.Account}})
			done = append(done, finishedJob{scheduler.FinishedJob{ID: u.JobID, Account: account, GPUs: u.GPUs,
				SubmitMs: u.SubmitMs, GPUSeconds: float64(max(u.GPUs, 1)) * float64(u.EndMs-u.StartMs) / 1000}, u.EndMs})
		}
	}
	slices.SortFunc(done, func(a, b finishedJob) int {
		return cmp.Or(cmp.Compare(a.endMs, b.endMs), cmp.Compare(a.ID, b.ID))
	})
	h := &scheduler.ServiceHistory{Window: cfg.LAS.HistoryWindow, MinSamples: cfg.LAS.HistoryMinSamples,
		SiblingWindow: cfg.LAS.SiblingWindow}
	for _, d := range done {
		h.Add(d.FinishedJob)
	}
	c.history, c.when = h, now
	return h
}
