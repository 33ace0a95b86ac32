package server

import (
	"context"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/state"
)

// Limits bound what the cluster holds (docs/operations.md, "Limits").
// The leader writes the count and array limits into each submit command
// and the FSM checks them there, so all servers refuse the same submits
// even when their loom.toml files differ; MinJobAge is the leader's to
// apply through ExpireJobs commands.
type Limits struct {
	// MaxJobCount bounds the jobs in the live state, finished ones not yet
	// aged out included (Slurm's MaxJobCount); 0: no limit.
	MaxJobCount uint32
	// MaxJobsPerUser bounds a user's unfinished jobs (Slurm's
	// MaxSubmitJobs, per user); 0: no limit.
	MaxJobsPerUser uint32
	// MaxArraySize: array task indexes must be below it (Slurm's
	// MaxArraySize); 0: only the hard limit, api.MaxArrayTasks.
	MaxArraySize uint32
	// MinJobAge is how long a finished job stays in the live state before
	// it moves to the accounting store (Slurm's MinJobAge); 0: forever.
	MinJobAge time.Duration
}

// DefaultLimits are Slurm's defaults: MaxJobCount 10000, MaxArraySize
// 1001, MinJobAge 300 s, and no per-user limit.
func DefaultLimits() Limits {
	return Limits{MaxJobCount: 10000, MaxArraySize: 1001, MinJobAge: 300 * time.Second}
}

func (l Limits) submit() *api.SubmitLimits {
	return &api.SubmitLimits{MaxJobCount: l.MaxJobCount, MaxJobsPerUser: l.MaxJobsPerUser, MaxArraySize: l.MaxArraySize}
}

// expireBatch bounds the jobs one ExpireJobs entry names.
const expireBatch = 4096

// expireLoop runs on the leader: it moves finished jobs older than
// MinJobAge out of the live state, through a Raft command so every server
// drops (and archives) the same jobs at the same index.
func (s *Server) expireLoop(ctx context.Context) {
	age := s.limits.MinJobAge
	if age <= 0 {
		return
	}
	every := min(max(age/4, 100*time.Millisecond), 30*time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for s.expireOnce(ctx, time.Now(), age) == expireBatch {
		}
	}
}

// expireOnce commits one ExpireJobs command for up to expireBatch jobs and
// returns how many it named.
func (s *Server) expireOnce(ctx context.Context, now time.Time, age time.Duration) int {
	cmd := &api.ExpireJobsCommand{NowUnixMs: now.UnixMilli(), MinJobAgeMs: age.Milliseconds()}
	for j := range s.State().Jobs() {
		if state.Expirable(j, cmd.NowUnixMs, cmd.MinJobAgeMs) {
			cmd.JobIds = append(cmd.JobIds, j.Id)
			if len(cmd.JobIds) == expireBatch {
				break
			}
		}
	}
	if len(cmd.JobIds) == 0 {
		return 0
	}
	res, err := s.apply(ctx, state.CmdExpireJobs, cmd)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("finished jobs not expired", "jobs", len(cmd.JobIds), "err", err)
		}
		return 0
	}
	s.log.Debug("finished jobs moved to the accounting store", "jobs", len(res.JobIDs), "index", res.Index)
	return len(cmd.JobIds)
}
