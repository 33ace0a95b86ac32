package state

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
)

// applyUpdateJob changes one job's settings, as scontrol update job does.
// The owner or an operator (uid 0) may change a pending job's time limit,
// partition, QoS, node count, name and comment; only an operator may
// raise its time limit, as in Slurm. A job that has started keeps what it
// was given (its agents enforce the time limit it started with), so only
// its name and comment change. The leader checked the new spec as it
// checks a submit before proposing it.
func applyUpdateJob(t *txn, m proto.Message) *Result {
	c := m.(*api.UpdateJobCommand)
	req := c.GetRequest()
	if req == nil {
		return &Result{Err: malformed("UpdateJob without a request")}
	}
	return changeOwnedJobs(t, []uint64{req.GetJobId()}, c.Uid, func(j *api.Job) error {
		switch {
		case j.State.Terminal():
			return fmt.Errorf("job %d: %w", j.Id, ErrJobFinished)
		case req.Empty():
			return fmt.Errorf("job %d: %w", j.Id, ErrNothingToUpdate)
		case j.State != api.JobState_PENDING && req.ChangesResources():
			return fmt.Errorf("job %d is %s: %w", j.Id, j.State, ErrStarted)
		}
		if req.TimeLimitS != nil && c.Uid != 0 {
			was, now := t.effectiveLimit(j.Spec, j.Spec.TimeLimitS), t.effectiveLimit(j.Spec, req.GetTimeLimitS())
			if now > was {
				return fmt.Errorf("job %d: TimeLimit from %s to %s: only an operator may raise a time limit: %w",
					j.Id, api.FormatSlurmDuration(j.Spec.TimeLimitS), api.FormatSlurmDuration(req.GetTimeLimitS()), ErrPermission)
			}
		}
		// Specs are shared by the tasks of an array: the updated task gets
		// its own copy.
		spec := proto.Clone(j.Spec).(*api.JobSpec)
		req.ApplyTo(spec)
		if req.Partition != nil {
			// A job is isolated as its partition says, the new one now.
			t.partitions().StampIsolation(spec)
		}
		j.Spec = spec
		if j.State == api.JobState_PENDING {
			j.Reason, j.ExpectedStartUnixMs = ReasonNone, 0
			if spec.Hold {
				j.Reason = ReasonHeld
			}
		}
		return nil
	})
}

// effectiveLimit is the time limit in seconds a job of spec with limit
// runs under (math.MaxInt64: none): limit itself, or for 0 its partition's
// default, else the scheduler's, from the cluster configuration.
func (t *txn) effectiveLimit(spec *api.JobSpec, limit int64) int64 {
	switch {
	case limit > 0:
		return limit
	case limit < 0:
		return math.MaxInt64
	}
	for _, p := range t.config.GetPartitions() {
		if p.GetName() == spec.PartitionOf() && p.GetDefaultTimeS() > 0 {
			return p.GetDefaultTimeS()
		}
	}
	if d := t.config.GetScheduler().GetDefaultTimeS(); d > 0 {
		return d
	}
	return math.MaxInt64
}

var (
	// ErrStarted refuses to change what a job that has started was given.
	ErrStarted = errors.New("only a pending job's TimeLimit, Partition, QOS and NumNodes can be changed")
	// ErrNothingToUpdate refuses an update that names no setting.
	ErrNothingToUpdate = errors.New("no setting to change")
)
