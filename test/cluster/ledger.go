package cluster

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
)

// Ledger records every generation of every allocation a fault test sees,
// not only the last one a job ends with, and when each node's death was
// committed, so that CheckNoGPUHeldTwice can ask whether two allocations
// of any generations ever held one GPU at the same time.
type Ledger struct {
	mu     sync.Mutex
	allocs map[genKey]*api.Allocation // the newest version seen of each
	// seenAt is the job's modify index when allocs[k] was recorded, so
	// that a stale read from a lagging follower does not replace a newer
	// version.
	seenAt map[genKey]uint64
	// current is each job's newest generation seen.
	current map[uint64]uint64
	// deaths are the times at which nodes were committed DOWN (the node's
	// updated_unix_ms when first seen DOWN).
	deaths map[string]int64
}

type genKey struct{ job, gen uint64 }

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{allocs: map[genKey]*api.Allocation{}, seenAt: map[genKey]uint64{}, current: map[uint64]uint64{}, deaths: map[string]int64{}}
}

// Observe records the allocations of jobs.
func (l *Ledger) Observe(jobs []*api.Job) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, j := range jobs {
		a := j.GetAllocation()
		if a == nil || len(a.Ranks) == 0 {
			continue
		}
		k := genKey{j.Id, a.Generation}
		if old, ok := l.seenAt[k]; ok && old > j.ModifyIndex {
			continue
		}
		l.allocs[k], l.seenAt[k] = a, j.ModifyIndex
		l.current[j.Id] = max(l.current[j.Id], a.Generation)
	}
}

// ObserveNodes records the nodes that are DOWN, with the time their death
// was committed.
func (l *Ledger) ObserveNodes(nodes []*api.NodeInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range nodes {
		if n.State != api.NodeState_DOWN {
			continue
		}
		if _, ok := l.deaths[n.Node.Name]; !ok {
			l.deaths[n.Node.Name] = n.Node.UpdatedUnixMs
		}
	}
}

// Watch polls jobs and nodes every interval, recording what it sees,
// until the returned stop is called (or the test ends). Failed calls (no
// leader, a killed server) are skipped.
func (l *Ledger) Watch(jobs apirpc.JobServiceClient, nodes apirpc.NodeServiceClient, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			if r, err := nodes.ListNodes(cctx, &api.ListNodesRequest{}); err == nil {
				l.ObserveNodes(r.Nodes)
			}
			if r, err := jobs.ListJobs(cctx, &api.ListJobsRequest{All: true}); err == nil {
				l.Observe(r.Jobs)
			}
			ccancel()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

// Generations returns the generations recorded for job, in order.
func (l *Ledger) Generations(job uint64) []*api.Allocation {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*api.Allocation
	for k, a := range l.allocs {
		if k.job == job {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b *api.Allocation) int { return int(a.Generation) - int(b.Generation) })
	return out
}

// held is the time one allocation held one GPU.
type held struct {
	from, to int64 // unix ms; to is math.MaxInt64 while held
	job, gen uint64
	node     string
}

// CheckNoGPUHeldTwice returns an error naming the first GPU that two
// recorded allocations held at overlapping times. An allocation holds a
// rank's GPU from its creation until the rank's end; a rank that never
// reported an end holds it until its node's death was committed, or, on a
// node that did not die, for ever. The one exception is a rank of a
// generation the ledger saw replaced, whose end it missed between two
// polls: it holds its GPU until the next generation was created (the
// server places a job again only once every old rank is known to be
// gone), and unverified counts such ranks.
func (l *Ledger) CheckNoGPUHeldTwice() (spans, unverified int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	byGPU := map[string][]held{}
	for k, a := range l.allocs {
		next := l.allocs[genKey{k.job, k.gen + 1}]
		for i, r := range a.Ranks {
			to := int64(math.MaxInt64)
			var ts *api.TaskStatus
			if i < len(a.Tasks) {
				ts = a.Tasks[i]
			}
			switch death, dead := l.deaths[r.Node]; {
			case ts.Ended():
				to = ts.EndedUnixMs
			case dead && death >= a.CreatedUnixMs:
				to = death
			case k.gen < l.current[k.job] && next != nil:
				unverified++
				to = next.CreatedUnixMs
			}
			for _, g := range r.GpuUuids {
				byGPU[g] = append(byGPU[g], held{a.CreatedUnixMs, to, k.job, k.gen, r.Node})
			}
		}
	}
	for g, hs := range byGPU {
		slices.SortFunc(hs, func(a, b held) int {
			if a.from != b.from {
				return cmpInt(a.from, b.from)
			}
			return cmpInt(int64(a.job), int64(b.job))
		})
		for i := 1; i < len(hs); i++ {
			p, c := hs[i-1], hs[i]
			if c.from < p.to {
				return 0, unverified, fmt.Errorf("GPU %s on %s held by job %d generation %d from %d until %s and by job %d generation %d from %d",
					g, c.node, p.job, p.gen, p.from, until(p.to), c.job, c.gen, c.from)
			}
		}
		spans += len(hs)
	}
	return spans, unverified, nil
}

func until(ms int64) string {
	if ms == math.MaxInt64 {
		return "no reported end"
	}
	return fmt.Sprint(ms)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
