package scheduler

import (
	"cmp"
	"slices"
	"time"

	"github.com/loomhpc/loom/api"
)

// lostGPUSeconds is what preempting h throws away if the job keeps no
// checkpoint: every GPU it holds times how long it has run.
func (c *cycle) lostGPUSeconds(h *holding) float64 {
	ran := c.now.Sub(time.UnixMilli(h.job.StartUnixMs)).Seconds()
	return float64(h.gpus) * max(ran, 0)
}

// victimFilter returns which running jobs pj may preempt, and what
// preempting one costs, or nil when pj preempts nothing. A QoS preempts
// the QoS it lists, costing the GPU-time the victim loses; under
// OrderLeastAttained a job also preempts requeueable jobs of later queues,
// the latest queue first, then the fewest GPUs (a checkpointing job loses
// a restart per GPU, not its run); under OrderGittins, requeueable jobs of
// an index GittinsMargin times lower, the lowest first.
func (c *cycle) victimFilter(pj *pendingJob) (ok func(*holding) bool, cost func(*holding) float64) {
	q, hasQOS := c.cfg.QOS[pj.job.Spec.GetQos()]
	byQOS := hasQOS && len(q.Preempt) > 0
	byService := (c.cfg.Order == OrderLeastAttained || c.cfg.Order == OrderGittins) &&
		c.las.Preempt == PreemptRequeueable && !c.lasPatient(pj.job)
	if !byQOS && !byService {
		return nil, nil
	}
	gittins := c.cfg.Order == OrderGittins
	mine, mineIndex := 0, 0.0
	switch {
	case byService && gittins:
		mineIndex = c.gittinsIndex(pj.job)
	case byService:
		mine = c.lasQueue(pj.job)
	}
	ok = func(h *holding) bool {
		if byQOS && slices.Contains(q.Preempt, h.job.Spec.GetQos()) {
			return true
		}
		if gittins {
			return byService && c.gittinsVictim(mineIndex, h)
		}
		return byService && c.lasVictim(mine, h)
	}
	cost = func(h *holding) float64 {
		if byQOS && slices.Contains(q.Preempt, h.job.Spec.GetQos()) {
			return c.lostGPUSeconds(h)
		}
		if gittins {
			// The lowest index first, then the fewest GPUs.
			return float64(h.gpus) + 1e6*c.gittinsIndex(h.job)/mineIndex
		}
		// Positive, so that a node already free costs less than any victim.
		later := c.lasQueue(h.job) - mine
		return float64(h.gpus) + 1e6*float64(len(c.las.Thresholds)+1-later)
	}
	return ok, cost
}

// preemptFor picks running jobs that pj may preempt (victimFilter) whose
// GPUs let pj start, at the least cost: per node the cheapest victims
// that make room, then the cheapest nodes. It reserves the freed
// resources for pj from now and returns the victims, or nil when
// preemption cannot make room (or pj preempts nothing).
func (c *cycle) preemptFor(pj *pendingJob, r *request) []*api.Job {
	if r.counts != nil {
		// Victims are chosen per node alike; feature counts would need
		// them chosen per feature. Such a job waits instead.
		return nil
	}
	if r.constraint == nil || r.constraint.Choices() == 1 {
		return c.preemptOnNodes(pj, r)
	}
	// As placeOn: the gang's nodes share one item of a matching OR.
	defer func() { r.choice = -1 }()
	for k := range r.constraint.Choices() {
		r.choice = k
		if victims := c.preemptOnNodes(pj, r); len(victims) > 0 {
			return victims
		}
	}
	return nil
}

// preemptOnNodes is preemptFor among the nodes r may use as it stands.
func (c *cycle) preemptOnNodes(pj *pendingJob, r *request) []*api.Job {
	mayTake, costOf := c.victimFilter(pj)
	if mayTake == nil {
		return nil
	}
	first := -1
	for k, l := range r.layouts {
		if l != nil {
			first = k
			break
		}
	}
	if first < 0 {
		return nil
	}
	shapes := r.layouts[first]
	perNode := map[int][]*holding{}
	for _, h := range c.held {
		j := h.job
		if !j.State.Active() || c.preempted[j.Id] || c.partTable.Get(j.Spec.PartitionOf()).PreemptOff() || !mayTake(h) {
			continue
		}
		for _, i := range h.nodes {
			perNode[i] = append(perNode[i], h)
		}
	}
	if len(perNode) == 0 {
		return nil
	}
	type option struct {
		node    int
		cost    float64
		victims []*holding
		mask    uint64
	}
	var opts []option
	for _, i := range c.nodesFor(r) {
		m, cpus, mem, gres := c.usable(c.st, i, forever, false)
		if _, ok := c.fits(c.st, i, m, cpus, mem, gres, shapes[0], r); ok {
			// Free already (but reserved): no victims needed here.
			opts = append(opts, option{node: i, mask: m})
			continue
		}
		hs := slices.Clone(perNode[i])
		if len(hs) == 0 {
			continue
		}
		slices.SortFunc(hs, func(a, b *holding) int {
			if x := cmp.Compare(costOf(a), costOf(b)); x != 0 {
				return x
			}
			return cmp.Compare(a.job.Id, b.job.Id)
		})
		o := option{node: i}
		gres = slices.Clone(gres)
		for _, h := range hs {
			k := slices.Index(h.nodes, i)
			m |= h.masks[k] & c.nodes[i].healthy
			cpus += h.cpus[k]
			mem += h.mem[k]
			addGres(gres, h.gres)
			o.cost += costOf(h)
			o.victims = append(o.victims, h)
			if _, ok := c.fits(c.st, i, m, cpus, mem, gres, shapes[0], r); ok {
				o.mask = m
				opts = append(opts, o)
				break
			}
		}
	}
	n := len(shapes)
	if len(opts) < n {
		return nil
	}
	slices.SortStableFunc(opts, func(a, b option) int { return cmp.Compare(a.cost, b.cost) })
	opts = opts[:n]
	res := &reservation{job: pj, start: c.now, end: c.endOf(pj.limit), gres: r.gres}
	var victims []*api.Job
	for k, o := range opts {
		s := shapes[k]
		res.nodes = append(res.nodes, o.node)
		res.masks = append(res.masks, c.chooseGPUs(o.node, o.mask, int(s.GPUs), r.exclusive))
		res.cpus = append(res.cpus, s.CPUs)
		res.mem = append(res.mem, s.MemMB)
		for _, h := range o.victims {
			if !c.preempted[h.job.Id] {
				c.preempted[h.job.Id] = true
				victims = append(victims, h.job)
			}
		}
	}
	if len(victims) == 0 {
		return nil // room exists but is reserved: preempting would not help
	}
	c.addReservation(res)
	return victims
}
