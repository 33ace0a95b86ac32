package state

import (
	"errors"
	"fmt"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

// Job-count and array limits (issue #14). The leader writes the limits in
// force into each submit command (api.SubmitLimits) and the FSM checks
// them here, against the state as of the entry: every server refuses the
// same submits, whatever its own configuration, and two submits racing
// for the last slot cannot both win. The server checks nothing of this
// before proposing; the FSM is the authority.

// ErrLimit is wrapped by every refusal of a submit for a cluster limit.
var ErrLimit = errors.New("limit reached")

// LimitError is a submit refused for a limit: Slurm's name for it, the
// loom.toml key that sets it, and the value in force.
type LimitError struct {
	Slurm string // MaxJobCount, MaxSubmitJobs, MaxArraySize
	Key   string // max_job_count, max_jobs_per_user, max_array_size
	Value uint32
	Msg   string // what was over it
	// Shown, when set, is how the value in force reads (a time limit),
	// instead of Value.
	Shown string
}

func (e *LimitError) Error() string {
	if e.Shown != "" {
		return fmt.Sprintf("%s: %s (%s = %s)", e.Slurm, e.Msg, e.Key, e.Shown)
	}
	return fmt.Sprintf("%s: %s (%s = %d)", e.Slurm, e.Msg, e.Key, e.Value)
}

func (e *LimitError) Unwrap() error { return ErrLimit }

// checkSubmitLimits refuses a submit of len(tasks) jobs (1 without
// --array) that lim does not allow.
func checkSubmitLimits(t *txn, req *api.SubmitRequest, tasks []uint32, lim *api.SubmitLimits) error {
	if lim == nil {
		return nil // entries written before limits existed
	}
	if err := api.CheckArraySize(req.Spec.Array, tasks, lim.MaxArraySize); err != nil {
		var ae *api.ArrayLimitError
		errors.As(err, &ae)
		return &LimitError{Slurm: "MaxArraySize", Key: "max_array_size", Value: lim.MaxArraySize,
			Msg: fmt.Sprintf("--array=%s has task index %d; the largest allowed is %d", ae.Expr, ae.Index, ae.MaxArraySize-1)}
	}
	n := uint64(max(len(tasks), 1))
	if m := lim.MaxJobCount; m != 0 && uint64(t.numJobs)+n > uint64(m) {
		return &LimitError{Slurm: "MaxJobCount", Key: "max_job_count", Value: m,
			Msg: fmt.Sprintf("the cluster holds %d jobs and this submit adds %d; retry once finished jobs have aged out (min_job_age)", t.numJobs, n)}
	}
	if m := lim.MaxJobsPerUser; m != 0 {
		have, _ := t.unfinished.Get(uidKey(req.Uid))
		if uint64(have)+n > uint64(m) {
			return &LimitError{Slurm: "MaxSubmitJobs", Key: "max_jobs_per_user", Value: m,
				Msg: fmt.Sprintf("user %s has %d unfinished jobs and this submit adds %d", req.User, have, n)}
		}
	}
	return checkConfigLimits(t, req, n)
}

// checkConfigLimits refuses a submit of n jobs over the replicated
// cluster configuration's limits: the cluster's max_time and the job's
// QoS's max_wall and max_submit_jobs_per_user. A job that gives no time
// limit (it takes the default at scheduling) passes the time checks;
// one that asks for UNLIMITED does not where a limit is set.
func checkConfigLimits(t *txn, req *api.SubmitRequest, n uint64) error {
	c := t.config
	if c == nil {
		return nil
	}
	limit := req.GetSpec().GetTimeLimitS()
	over := func(max int64) bool { return max > 0 && (limit == api.Unlimited || limit > max) }
	asked := func() string {
		if limit == api.Unlimited {
			return "UNLIMITED"
		}
		return api.FormatSlurmDuration(limit)
	}
	if m := c.GetScheduler().GetMaxTimeS(); over(m) {
		return &LimitError{Slurm: "MaxTime", Key: "[scheduler] max_time", Shown: api.FormatSlurmDuration(m),
			Msg: fmt.Sprintf("--time=%s is above the cluster's maximum time limit", asked())}
	}
	name := req.GetSpec().GetQos()
	var q *api.QOSConfig
	for _, x := range c.GetQos() {
		if x.Name == name {
			q = x
		}
	}
	if q == nil {
		return nil
	}
	if over(q.MaxWallS) {
		return &LimitError{Slurm: "QOSMaxWallDurationPerJobLimit", Key: fmt.Sprintf("[[qos]] %q max_wall", q.Name), Shown: api.FormatSlurmDuration(q.MaxWallS),
			Msg: fmt.Sprintf("--time=%s is above QoS %s's MaxWall", asked(), q.Name)}
	}
	if m := q.MaxSubmitPerUser; m != 0 {
		have := uint64(0)
		prefix := append([]byte(req.User), 0)
		it := t.userActive.Root().Iterator()
		it.SeekPrefix(prefix)
		for _, j, ok := it.Next(); ok; _, j, ok = it.Next() {
			if !j.State.Terminal() && j.GetSpec().GetQos() == q.Name {
				have++
			}
		}
		if have+n > uint64(m) {
			return &LimitError{Slurm: "QOSMaxSubmitJobPerUserLimit", Key: fmt.Sprintf("[[qos]] %q max_submit_jobs_per_user", q.Name), Value: m,
				Msg: fmt.Sprintf("user %s has %d unfinished jobs in QoS %s and this submit adds %d", req.User, have, q.Name, n)}
		}
	}
	return nil
}

// applyExpireJobs moves finished jobs out of the live state (MinJobAge):
// each job named that is finished, holds nothing and ended at least
// MinJobAgeMs before the command's time is removed, and handed to the
// accounting archive by the FSM. Others are left alone (a job requeued
// since the leader looked, say).
func applyExpireJobs(t *txn, m proto.Message) *Result {
	c := m.(*api.ExpireJobsCommand)
	res := &Result{}
	for _, id := range c.JobIds {
		j := t.job(id)
		if !Expirable(j, c.NowUnixMs, c.MinJobAgeMs) {
			continue
		}
		t.removeJob(j)
		t.expired = append(t.expired, j)
		res.JobIDs = append(res.JobIDs, id)
	}
	return res
}

// Expirable reports whether j may leave the live state at nowMs when
// finished jobs are kept minAgeMs: it has finished, holds no resources
// and ended long enough ago.
func Expirable(j *api.Job, nowMs, minAgeMs int64) bool {
	return j != nil && j.State.Terminal() && !j.HoldsResources() &&
		j.EndUnixMs != 0 && j.EndUnixMs <= nowMs-minAgeMs
}

// Archive keeps the jobs the FSM moves out of the live state: the
// accounting store that sacct reads (package state/acct). It is written
// at apply time on every server, so it must be idempotent: an entry
// applied again after a restart archives the same jobs again.
type Archive interface {
	Archive(index uint64, jobs []*api.Job) error
}

// MemArchive is an in-memory Archive for tests.
type MemArchive struct {
	Jobs map[uint64]*api.Job
}

// Archive implements Archive.
func (a *MemArchive) Archive(_ uint64, jobs []*api.Job) error {
	if a.Jobs == nil {
		a.Jobs = map[uint64]*api.Job{}
	}
	for _, j := range jobs {
		a.Jobs[j.Id] = j
	}
	return nil
}

// partitions returns the partition table of t's configuration, or nil when
// it defines no partitions (agents' --partitions alone then apply).
func (t *txn) partitions() *api.PartitionTable { return api.PartitionsOf(t.config) }
