package scheduler

import (
	"time"

	"github.com/loomhpc/loom/api"
)

// LASConfig tunes OrderLeastAttained: discretised two-dimensional
// least-attained-service, as Tiresias (Gu et al., NSDI '19) schedules
// GPU gangs without knowing their durations. A job's attained service is
// the GPU-seconds it has run over all its generations (api.Job's
// AttainedGPUSeconds, which the FSM keeps across requeues); Thresholds cut
// it into queues. Jobs are served queue by queue and first come first
// served within a queue, so a new job starts ahead of everything that has
// already had much service, and a long job sinks as it runs. The zero
// value uses the defaults.
type LASConfig struct {
	// Thresholds are the attained service, in GPU-seconds (seconds with
	// ServiceTime), at which a job moves to the next queue, ascending: K
	// thresholds make K+1 queues. Empty means DefaultLASThresholds.
	Thresholds []float64
	// Service is how attained service is measured: GPU-seconds (2D-LAS,
	// the default) or seconds run, whatever the job's size (1D-LAS).
	Service ServiceMeasure
	// WithinQueue orders the jobs of one queue: first come first served
	// (the default, which uses no estimate of duration) or by the time
	// limit users gave, shortest first.
	WithinQueue QueueOrder
	// PromoteFactor, when positive, is a starvation guard beside the
	// reservations: a job that has run and has since waited at least
	// PromoteFactor times as long as it ran (over all its generations) is
	// served in the first queue again. 0 (the default) promotes nothing:
	// on the Philly replay every factor tried raised the average JCT
	// (docs/simulation.md). Under OrderGittins a job that has waited
	// PromoteFactor times its expected remaining run is served first; 0
	// means DefaultGittinsPromote there, negative none.
	PromoteFactor float64
	// Preempt lets a job that cannot start stop running jobs of later
	// queues. Only batch jobs that may be requeued are preempted (never
	// --no-requeue, interactive or srun-outside-an-allocation jobs); they
	// return to the queue with the service they attained, and their
	// agents give them their --signal and its lead before stopping them.
	Preempt PreemptMode
	// Patience is how long a job waits (over its life, not counting its
	// runs) before it preempts, so that a burst of arrivals that running
	// jobs' ends absorb soon enough preempts nothing. 0 (the default):
	// at once.
	Patience time.Duration
	// MinRun protects a job's current run from preemption until it has
	// lasted this long, doubled for every time the job was preempted
	// before (api.Job's PreemptCount), so that every run makes progress
	// past its restart cost and no job is preempted more than about
	// log2(its run / MinRun) times. 0 means DefaultLASMinRun; negative,
	// no protection.
	MinRun time.Duration
	// GittinsMargin is, under OrderGittins, how many times a running job's
	// index the index of a job that preempts it must be, so that two jobs
	// of nearly equal index do not take turns. 0 means
	// DefaultGittinsMargin.
	GittinsMargin float64
	// HistoryWindow and HistoryMinSamples are, under OrderGittins, the
	// Window and MinSamples of the ServiceHistory the leader builds from
	// finished jobs (0: the defaults). `loom sim` sets its own.
	HistoryWindow, HistoryMinSamples int
	// SiblingWindow is, under OrderGittins, the ServiceHistory's
	// SiblingWindow (0: the default; negative: no siblings).
	SiblingWindow time.Duration
}

// ServiceMeasure is how LAS measures a job's attained service.
type ServiceMeasure int

// Service measures.
const (
	// ServiceGPUTime is GPU-seconds: a wide gang attains service faster.
	ServiceGPUTime ServiceMeasure = iota
	// ServiceTime is seconds run, whatever the job's size.
	ServiceTime
)

// QueueOrder is the order of jobs within one LAS queue.
type QueueOrder int

// Queue orders.
const (
	// QueueFIFO serves a queue by submit time.
	QueueFIFO QueueOrder = iota
	// QueueShortestLimit serves a queue by time limit, shortest first
	// (unlimited jobs last), then by submit time.
	QueueShortestLimit
)

// PreemptMode says whether a policy preempts.
type PreemptMode int

// Preemption modes.
const (
	// PreemptRequeueable preempts jobs that may be requeued (the default).
	PreemptRequeueable PreemptMode = iota
	// PreemptNever only orders the queue.
	PreemptNever
)

// DefaultLASThresholds are 8, 64 and 512 GPU-hours: four queues. (A job
// of one 8-GPU node leaves the first after an hour.)
var DefaultLASThresholds = []float64{8 * 3600, 64 * 3600, 512 * 3600}

// DefaultLASMinRun is the default LASConfig.MinRun.
const DefaultLASMinRun = 5 * time.Minute

func (l LASConfig) withDefaults() LASConfig {
	if len(l.Thresholds) == 0 {
		l.Thresholds = DefaultLASThresholds
	}
	if l.MinRun == 0 {
		l.MinRun = DefaultLASMinRun
	}
	return l
}

// LASQueue returns the queue (0 first) that cfg puts j in at now: by its
// attained service, or 0 when it has waited PromoteFactor times as long
// as it ran.
func LASQueue(j *api.Job, now time.Time, cfg LASConfig) int {
	cfg = cfg.withDefaults()
	attained := j.AttainedGPUSeconds(now)
	if attained == 0 {
		return 0
	}
	if cfg.Service == ServiceTime {
		attained = j.RanSeconds(now)
	}
	if cfg.PromoteFactor > 0 {
		ran := j.RanSeconds(now)
		waited := now.Sub(time.UnixMilli(j.SubmitUnixMs)).Seconds() - ran
		if ran > 0 && waited >= cfg.PromoteFactor*ran {
			return 0
		}
	}
	q := 0
	for _, t := range cfg.Thresholds {
		if attained < t {
			break
		}
		q++
	}
	return q
}

// Preemptible reports whether a scheduler policy may preempt j: a batch
// job (not interactive, not a bare srun outside an allocation) that may
// be requeued, so that it comes back and resumes.
func Preemptible(j *api.Job) bool {
	s := j.GetSpec()
	return s.RequeueAllowed() && !s.GetInteractive() && len(s.GetArgv()) == 0
}

// lasPatient reports whether j has not yet waited long enough to preempt.
func (c *cycle) lasPatient(j *api.Job) bool {
	if c.las.Patience <= 0 {
		return false
	}
	waited := c.now.Sub(time.UnixMilli(j.SubmitUnixMs)).Seconds() - j.RanSeconds(c.now)
	return waited < c.las.Patience.Seconds()
}

// lasVictim reports whether pj, in queue q, may preempt the running h.
func (c *cycle) lasVictim(q int, h *holding) bool {
	l := &c.las
	if l.Preempt != PreemptRequeueable || !Preemptible(h.job) {
		return false
	}
	if c.runProtected(h.job) {
		return false
	}
	return c.lasQueue(h.job) > q
}

// lasQueue is j's queue in this cycle, computed once.
func (c *cycle) lasQueue(j *api.Job) int {
	if q, ok := c.queues[j.Id]; ok {
		return q
	}
	q := LASQueue(j, c.now, c.las)
	c.queues[j.Id] = q
	return q
}

// protected is how long a run of a job preempted n times before is
// protected: minRun doubled n times, capped at a week.
func protected(minRun time.Duration, n uint32) time.Duration {
	const limit = 7 * 24 * time.Hour
	for ; n > 0 && minRun < limit; n-- {
		minRun *= 2
	}
	return min(minRun, limit)
}
