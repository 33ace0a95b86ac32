package scheduler

import (
	"math/bits"
	"slices"
	"time"
)

// reservation holds resources for a waiting gang from start to end.
// Reservations live only for the cycle that makes them: every cycle
// recomputes them from the running jobs' time limits. With exact limits
// a reservation never moves later, because every job the previous cycle
// backfilled either avoided its GPUs or ended before its start.
type reservation struct {
	job        *pendingJob
	start, end time.Time
	nodes      []int
	masks      []uint64
	cpus       []uint32
	mem        []uint64
	gres       []uint64 // on each of nodes, by cycle.gresIdx; nil for none
}

// release is resources coming back at t: a holding job's, or (unblock)
// an earlier reservation's.
type release struct {
	t       time.Time
	node    int
	mask    uint64
	cpus    uint32
	mem     uint64
	gres    []uint64
	unblock bool
}

func (c *cycle) hasReservations() bool { return len(c.reservations) > 0 }

// timeline returns every holding job's release, in time order; unlimited
// jobs release nothing.
func (c *cycle) timeline() []release {
	if !c.relDirty {
		return c.releases
	}
	c.releases = c.releases[:0]
	for _, h := range c.held {
		if h.end.Equal(forever) {
			continue
		}
		for k, i := range h.nodes {
			c.releases = append(c.releases, release{t: h.end, node: i, mask: h.masks[k], cpus: h.cpus[k], mem: h.mem[k], gres: h.gres})
		}
	}
	slices.SortStableFunc(c.releases, func(a, b release) int { return a.t.Compare(b.t) })
	c.relDirty = false
	return c.releases
}

// reserve finds the earliest time, within the backfill window, at which
// the gang fits once running jobs end at their time limits, and where.
// Resources of earlier reservations count as busy until those end.
func (c *cycle) reserve(pj *pendingJob, r *request) *reservation {
	horizon := c.now.Add(c.cfg.backfillWindow())
	fut := c.st.clone()
	events := slices.Clone(c.timeline())
	// Earlier reservations' GPUs stay blocked until those reservations
	// end, whatever running job releases them first.
	physical := slices.Clone(fut.free)
	blocked := map[int]uint64{}
	// Generic resources are counts: what earlier reservations hold beyond
	// what is free now is owed, and paid first from what comes back.
	owed := make([]uint64, len(fut.gres))
	gresK := len(c.gresNames)
	takeGres := func(i int, g []uint64) {
		free, o := c.gresAt(fut, i), owed[i*gresK:(i+1)*gresK]
		for k, n := range g {
			t := min(free[k], n)
			free[k] -= t
			o[k] += n - t
		}
	}
	giveGres := func(i int, g []uint64) {
		free, o := c.gresAt(fut, i), owed[i*gresK:(i+1)*gresK]
		for k, n := range g {
			p := min(o[k], n)
			o[k] -= p
			free[k] += n - p
		}
	}
	for _, res := range c.reservations {
		for k, i := range res.nodes {
			blocked[i] |= res.masks[k]
			fut.cpus[i] -= min(fut.cpus[i], res.cpus[k])
			fut.mem[i] -= min(fut.mem[i], res.mem[k])
			if res.gres != nil {
				takeGres(i, res.gres)
			}
			if !res.end.Equal(forever) {
				events = append(events, release{t: res.end, node: i, cpus: res.cpus[k], mem: res.mem[k], gres: res.gres, unblock: true})
			}
		}
	}
	for i, b := range blocked {
		fut.free[i] &^= b
	}
	if len(c.reservations) > 0 {
		slices.SortStableFunc(events, func(a, b release) int { return a.t.Compare(b.t) })
	}
	reblock := func(i int, t time.Time) {
		var b uint64
		for _, res := range c.nodeRes[i] {
			if res.end.After(t) {
				b |= res.masks[slices.Index(res.nodes, i)]
			}
		}
		blocked[i] = b
	}
	// Cheap trigger: count nodes that could hold the gang's largest node
	// shape; attempt a full placement only when enough do.
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
	shape := r.layouts[first][0]
	need := int(r.lo) + first
	fitting := 0
	fitsNow := make(map[int]bool)
	for _, i := range c.nodesFor(r) {
		if _, ok := c.fits(fut, i, fut.free[i], fut.cpus[i], fut.mem[i], c.gresAt(fut, i), shape, r); ok {
			fitting++
			fitsNow[i] = true
		}
	}
	attempts := 0
	for e := 0; e < len(events); {
		t := events[e].t
		if t.After(horizon) {
			return nil
		}
		for ; e < len(events) && events[e].t.Equal(t); e++ {
			ev := events[e]
			if ev.unblock {
				reblock(ev.node, t)
			} else {
				physical[ev.node] |= ev.mask & c.nodes[ev.node].healthy
			}
			fut.free[ev.node] = physical[ev.node] &^ blocked[ev.node]
			fut.cpus[ev.node] += ev.cpus
			fut.mem[ev.node] += ev.mem
			if ev.gres != nil {
				giveGres(ev.node, ev.gres)
			}
			if !fitsNow[ev.node] && c.mayUse(r, ev.node) {
				if _, ok := c.fits(fut, ev.node, fut.free[ev.node], fut.cpus[ev.node], fut.mem[ev.node], c.gresAt(fut, ev.node), shape, r); ok {
					fitting++
					fitsNow[ev.node] = true
				}
			}
		}
		if fitting < need || attempts > 256 {
			continue
		}
		attempts++
		p, _ := c.placeOn(fut, r, forever, false)
		if p == nil {
			continue
		}
		start := t
		if start.Before(c.now) {
			start = c.now
		}
		res := &reservation{job: pj, start: start, end: forever, gres: r.gres}
		if pj.limit != 0 {
			res.end = start.Add(pj.limit)
		}
		for k, i := range p.nodes {
			res.nodes = append(res.nodes, i)
			res.masks = append(res.masks, p.masks[k])
			cpus, mem := p.shapes[k].CPUs, p.shapes[k].MemMB
			if r.exclusive {
				cpus, mem = c.nodes[i].node.Cpus, c.nodes[i].node.MemoryMb
			}
			res.cpus = append(res.cpus, cpus)
			res.mem = append(res.mem, mem)
		}
		return res
	}
	return nil
}

// addReservation makes later jobs respect res.
func (c *cycle) addReservation(res *reservation) {
	c.reservations = append(c.reservations, res)
	for _, i := range res.nodes {
		c.nodeRes[i] = append(c.nodeRes[i], res)
	}
	// Earlier failures stay failures; successes may now fail, and the memo
	// only records failures, so it stays sound.
}

// describe turns res into its exported form.
func (c *cycle) describe(res *reservation) Reservation {
	out := Reservation{JobID: res.job.job.Id, Start: res.start, End: res.end}
	for k, i := range res.nodes {
		ni := c.nodes[i]
		out.Nodes = append(out.Nodes, ni.node.Name)
		for b := res.masks[k]; b != 0; b &= b - 1 {
			out.GPUs = append(out.GPUs, ni.gpus[bits.TrailingZeros64(b)].Uuid)
		}
	}
	return out
}
