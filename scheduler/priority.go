package scheduler

import (
	"math"
	"slices"
	"time"

	"github.com/loomhpc/loom/api"
)

// PriorityConfig holds the multifactor weights, as Slurm's
// PriorityWeight* settings. Each factor is in [0, 1]; a job's priority is
// the weighted sum less its nice value. The zero value uses the defaults:
// age, fair share, QoS and partition weighted 1000, job size 0 (so that,
// as in Slurm, a bigger gang is not preferred unless asked), a 7-day
// MaxAge and a 7-day fair-share half-life.
type PriorityConfig struct {
	WeightAge       float64
	WeightFairShare float64
	WeightQOS       float64
	WeightPartition float64
	WeightJobSize   float64
	// MaxAge is the wait after which the age factor is 1 (PriorityMaxAge).
	MaxAge time.Duration
	// FavorSmall makes the job size factor larger for smaller jobs
	// (PriorityFavorSmall).
	FavorSmall bool
	// SizeByService measures a job's size as GPUs × time limit (its
	// service demand, on a log scale) instead of its share of the
	// cluster's GPUs. With FavorSmall this is shortest-service-first
	// without knowing true durations.
	SizeByService bool
	// FairShareHalfLife is the half-life of usage decay
	// (PriorityDecayHalfLife).
	FairShareHalfLife time.Duration
	// Shares gives accounts their share of the cluster; accounts not
	// listed get 1.
	Shares map[string]float64
	// PartitionPriority is each partition's PriorityJobFactor.
	PartitionPriority map[string]uint32
}

// Default priority settings.
const (
	DefaultPriorityWeight    = 1000
	DefaultPriorityMaxAge    = 7 * 24 * time.Hour
	DefaultFairShareHalfLife = 7 * 24 * time.Hour
)

func (p PriorityConfig) withDefaults() PriorityConfig {
	if p.WeightAge == 0 && p.WeightFairShare == 0 && p.WeightQOS == 0 && p.WeightPartition == 0 && p.WeightJobSize == 0 {
		p.WeightAge, p.WeightFairShare, p.WeightQOS, p.WeightPartition =
			DefaultPriorityWeight, DefaultPriorityWeight, DefaultPriorityWeight, DefaultPriorityWeight
	}
	if p.MaxAge <= 0 {
		p.MaxAge = DefaultPriorityMaxAge
	}
	if p.FairShareHalfLife <= 0 {
		p.FairShareHalfLife = DefaultFairShareHalfLife
	}
	return p
}

// Factors is one job's priority broken down, each factor already
// multiplied by its weight, as sprio prints it.
type Factors struct {
	JobID     uint64
	User      string
	Account   string
	Priority  float64
	Age       float64
	FairShare float64
	QOS       float64
	Partition float64
	JobSize   float64
	Nice      int32
}

// prioState is what the priority of every job in a cycle shares.
type prioState struct {
	ready       bool
	cfg         PriorityConfig
	now         time.Time
	usage       map[string]float64 // decayed GPU-seconds per account
	totalUsage  float64
	shares      map[string]float64 // normalized
	maxQOS      uint32
	qos         map[string]QOS
	maxPart     uint32
	clusterGPUs float64
}

// AccountOf returns the account a job is charged to: its --account, else
// its user.
func AccountOf(j *api.Job) string {
	if a := j.GetSpec().GetAccount(); a != "" {
		return a
	}
	return j.GetUser()
}

func (ps *prioState) prepare(c *cycle) {
	if ps.ready {
		return
	}
	ps.ready = true
	ps.cfg = c.cfg.Priority.withDefaults()
	ps.now = c.now
	ps.qos = c.cfg.QOS
	ps.usage = map[string]float64{}
	for a, u := range c.v.AccountUsage {
		ps.usage[a] = u
	}
	h := ps.cfg.FairShareHalfLife
	for _, hd := range c.held {
		j := hd.job
		if j.StartUnixMs == 0 {
			continue
		}
		end := c.now
		if !j.State.Active() && j.EndUnixMs != 0 {
			end = time.UnixMilli(j.EndUnixMs)
		}
		ps.usage[AccountOf(j)] += DecayedGPUSeconds(float64(hd.gpus), time.UnixMilli(j.StartUnixMs), end, c.now, h)
	}
	// Sums run in account order so that the same view gives bit-identical
	// priorities (map order would change the floating-point rounding).
	seen := map[string]bool{}
	var accounts []string
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			accounts = append(accounts, a)
		}
	}
	for a := range ps.usage {
		add(a)
	}
	for _, j := range c.v.Jobs {
		add(AccountOf(j))
	}
	slices.Sort(accounts)
	var sum float64
	for _, a := range accounts {
		ps.totalUsage += ps.usage[a]
		sum += ps.share(a)
	}
	ps.shares = map[string]float64{}
	for _, a := range accounts {
		ps.shares[a] = ps.share(a) / sum
	}
	for _, q := range c.cfg.QOS {
		ps.maxQOS = max(ps.maxQOS, q.Priority)
	}
	for _, p := range ps.cfg.PartitionPriority {
		ps.maxPart = max(ps.maxPart, p)
	}
	for _, ni := range c.nodes {
		ps.clusterGPUs += float64(len(ni.gpus))
	}
}

func (ps *prioState) share(account string) float64 {
	if s, ok := ps.cfg.Shares[account]; ok && s > 0 {
		return s
	}
	return 1
}

// factors computes j's weighted factors.
func (ps *prioState) factors(j *api.Job, limit time.Duration) Factors {
	cfg := ps.cfg
	f := Factors{JobID: j.Id, User: j.User, Account: AccountOf(j), Nice: j.GetSpec().GetNice()}
	age := ps.now.Sub(time.UnixMilli(j.SubmitUnixMs))
	if b := j.GetSpec().GetBeginUnixMs(); b > j.SubmitUnixMs {
		age = ps.now.Sub(time.UnixMilli(b)) // Slurm counts age from eligibility
	}
	f.Age = cfg.WeightAge * math.Min(math.Max(age.Seconds(), 0)/cfg.MaxAge.Seconds(), 1)
	// Classic Slurm fair share: 2^(-usage/shares), both normalized.
	u := 0.0
	if ps.totalUsage > 0 {
		u = ps.usage[f.Account] / ps.totalUsage
	}
	if s := ps.shares[f.Account]; s > 0 {
		f.FairShare = cfg.WeightFairShare * math.Exp2(-u/s)
	}
	if ps.maxQOS > 0 {
		f.QOS = cfg.WeightQOS * float64(ps.qos[j.GetSpec().GetQos()].Priority) / float64(ps.maxQOS)
	}
	if ps.maxPart > 0 {
		f.Partition = cfg.WeightPartition * float64(cfg.PartitionPriority[j.GetSpec().PartitionOf()]) / float64(ps.maxPart)
	}
	gpus := float64(JobGPUs(j.Spec))
	var size float64
	if cfg.SizeByService {
		hours := cfg.MaxAge.Hours()
		if limit > 0 {
			hours = math.Min(limit.Hours(), hours)
		}
		maxService := math.Max(ps.clusterGPUs, 1) * cfg.MaxAge.Hours()
		size = math.Log2(1+math.Max(gpus, 1)*hours) / math.Log2(1+maxService)
	} else if ps.clusterGPUs > 0 {
		size = gpus / ps.clusterGPUs
	}
	size = math.Min(size, 1)
	if cfg.FavorSmall {
		size = 1 - size
	}
	f.JobSize = cfg.WeightJobSize * size
	f.Priority = f.Age + f.FairShare + f.QOS + f.Partition + f.JobSize - float64(f.Nice)
	return f
}

func (ps *prioState) total(j *api.Job, limit time.Duration) float64 {
	return ps.factors(j, limit).Priority
}

// JobGPUs returns the GPUs a spec asks for in its fewest-nodes layout.
func JobGPUs(s *api.JobSpec) uint32 {
	lo, _ := s.NodeRange()
	shapes, ok := s.Layout(lo)
	if !ok {
		return 0
	}
	var g uint32
	for _, sh := range shapes {
		g += sh.GPUs
	}
	return g
}

// Priorities returns the priority factors of every pending job in v, the
// highest first: what `loom priority` prints.
func Priorities(v *View, now time.Time, cfg Config) []Factors {
	cfg = cfg.withPartitions(v.Partitions)
	c := newCycle(v, now, &cfg)
	c.prio.prepare(c)
	var out []Factors
	for _, j := range v.Jobs {
		if j.State == api.JobState_PENDING {
			out = append(out, c.prio.factors(j, c.timeLimit(j)))
		}
	}
	slices.SortStableFunc(out, func(a, b Factors) int {
		switch {
		case a.Priority > b.Priority:
			return -1
		case a.Priority < b.Priority:
			return 1
		}
		return 0
	})
	return out
}

// FairShareFactors returns the fair-share factor of every account that
// has usage or jobs in v, at now: 2^(-usage/shares) with both normalized,
// between 0 and 1, before WeightFairShare multiplies it (the FAIRSHARE
// column of `loom priority` divided by the weight).
func FairShareFactors(v *View, now time.Time, cfg Config) map[string]float64 {
	c := newCycle(v, now, &cfg)
	c.prio.prepare(c)
	ps := &c.prio
	out := make(map[string]float64, len(ps.shares))
	for a, s := range ps.shares {
		u := 0.0
		if ps.totalUsage > 0 {
			u = ps.usage[a] / ps.totalUsage
		}
		if s > 0 {
			out[a] = math.Exp2(-u / s)
		}
	}
	return out
}

// DecayedGPUSeconds is the usage of gpus GPUs held from start to end, as
// seen at now with usage halving every halfLife: the integral of
// gpus·2^(-(now-t)/halfLife) over [start, end].
func DecayedGPUSeconds(gpus float64, start, end, now time.Time, halfLife time.Duration) float64 {
	if !end.After(start) || gpus <= 0 {
		return 0
	}
	h := halfLife.Seconds()
	a := now.Sub(end).Seconds()
	b := now.Sub(start).Seconds()
	return gpus * h / math.Ln2 * (math.Exp2(-a/h) - math.Exp2(-b/h))
}

// Ledger accumulates accounts' decayed usage from jobs that have ended,
// so that a shell (the leader, the simulator) can hand View.AccountUsage
// to Schedule without rescanning history. Values are kept as of a
// reference time and decayed on read.
type Ledger struct {
	HalfLife time.Duration
	ref      time.Time
	vals     map[string]float64
}

// Charge adds an ended job's usage: gpus GPUs from start to end.
func (l *Ledger) Charge(account string, gpus float64, start, end time.Time) {
	if l.vals == nil {
		l.vals = map[string]float64{}
		l.ref = end
	}
	h := l.halfLife()
	l.vals[account] += DecayedGPUSeconds(gpus, start, end, l.ref, h)
}

func (l *Ledger) halfLife() time.Duration {
	if l.HalfLife <= 0 {
		return DefaultFairShareHalfLife
	}
	return l.HalfLife
}

// At returns every account's decayed usage as of now.
func (l *Ledger) At(now time.Time) map[string]float64 {
	out := make(map[string]float64, len(l.vals))
	f := math.Exp2(-now.Sub(l.ref).Seconds() / l.halfLife().Seconds())
	for a, v := range l.vals {
		out[a] = v * f
	}
	return out
}
