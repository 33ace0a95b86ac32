package state

import (
	"iter"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"github.com/loomhpc/loom/api"
)

// txn is the FSM's writable view while it applies one entry.
type txn struct {
	index      uint64
	nextJobID  uint64
	jobs       *iradix.Txn[*api.Job]
	active     *iradix.Txn[*api.Job]
	holding    *iradix.Txn[*api.Job]
	byUser     *iradix.Txn[*api.Job]
	userActive *iradix.Txn[*api.Job]
	nodes      *iradix.Txn[*api.Node]
	tokens     *iradix.Txn[uint64]
	servers    *iradix.Txn[*api.ServerInfo]
	base       *View

	unfinished *iradix.Txn[uint32]
	config     *api.ClusterConfig
	resv       *iradix.Txn[*api.Reservation]
	numJobs    int // jobs in the live state, as the jobs tree will hold
	// expired collects the jobs this entry moved out of the live state,
	// for the FSM to hand to the accounting archive.
	expired []*api.Job
}

func (v *View) txn(index uint64) *txn {
	return &txn{
		index:      index,
		nextJobID:  v.nextJobID,
		jobs:       v.jobs.Txn(),
		active:     v.active.Txn(),
		holding:    v.holding.Txn(),
		byUser:     v.byUser.Txn(),
		userActive: v.userActive.Txn(),
		nodes:      v.nodes.Txn(),
		tokens:     v.tokens.Txn(),
		servers:    v.servers.Txn(),
		base:       v,

		unfinished: v.unfinished.Txn(),
		config:     v.config,
		resv:       v.reservations.Txn(),
		numJobs:    v.jobs.Len(),
	}
}

func (t *txn) commit() *View {
	return &View{
		index:      t.index,
		nextJobID:  t.nextJobID,
		jobs:       t.jobs.Commit(),
		active:     t.active.Commit(),
		holding:    t.holding.Commit(),
		byUser:     t.byUser.Commit(),
		userActive: t.userActive.Commit(),
		nodes:      t.nodes.Commit(),
		tokens:     t.tokens.Commit(),
		servers:    t.servers.Commit(),

		unfinished: t.unfinished.Commit(),
		config:     t.config,

		reservations: t.resv.Commit(),
	}
}

func (t *txn) job(id uint64) *api.Job {
	j, _ := t.jobs.Get(jobKey(id))
	return j
}

// putJob stores j (which the caller built fresh or cloned) and keeps the
// indexes in step with its state.
func (t *txn) putJob(j *api.Job) {
	if j.CreateIndex == 0 {
		j.CreateIndex = t.index
	}
	j.ModifyIndex = t.index
	old, updated := t.jobs.Insert(jobKey(j.Id), j)
	if !updated {
		t.numJobs++
	}
	t.indexJob(j)
	t.countUnfinished(old, j)
}

// countUnfinished keeps the per-user count of unfinished jobs in step
// when a job changes from old (nil: new) to now (nil: removed).
func (t *txn) countUnfinished(old, now *api.Job) {
	was := old != nil && !old.State.Terminal()
	is := now != nil && !now.State.Terminal()
	if was == is {
		return
	}
	j := now
	if j == nil {
		j = old
	}
	k := uidKey(j.Uid)
	n, _ := t.unfinished.Get(k)
	switch {
	case is:
		n++
	case n > 0:
		n--
	}
	if n == 0 {
		t.unfinished.Delete(k)
	} else {
		t.unfinished.Insert(k, n)
	}
}

// removeJob takes a finished job out of the live state: its record, the
// indexes and its idempotency token.
func (t *txn) removeJob(j *api.Job) {
	k := jobKey(j.Id)
	if _, ok := t.jobs.Delete(k); ok {
		t.numJobs--
	}
	t.active.Delete(k)
	t.holding.Delete(k)
	uk := userJobKey(j.User, j.Id)
	t.byUser.Delete(uk)
	t.userActive.Delete(uk)
	if j.IdempotencyToken != "" {
		if id, ok := t.tokens.Get([]byte(j.IdempotencyToken)); ok && id == j.Id {
			t.tokens.Delete([]byte(j.IdempotencyToken))
		}
	}
	t.countUnfinished(j, nil)
}

// indexJob keeps the active, holding and by-user indexes in step with
// j's state.
func (t *txn) indexJob(j *api.Job) {
	k, uk := jobKey(j.Id), userJobKey(j.User, j.Id)
	t.byUser.Insert(uk, j)
	holds := j.HoldsResources()
	if j.State.Terminal() && !holds {
		t.active.Delete(k)
		t.userActive.Delete(uk)
	} else {
		t.active.Insert(k, j)
		t.userActive.Insert(uk, j)
	}
	if holds {
		t.holding.Insert(k, j)
	} else {
		t.holding.Delete(k)
	}
}

func (t *txn) node(name string) *api.Node {
	n, _ := t.nodes.Get([]byte(name))
	return n
}

func (t *txn) putNode(n *api.Node) {
	if n.CreateIndex == 0 {
		n.CreateIndex = t.index
	}
	n.ModifyIndex = t.index
	t.nodes.Insert([]byte(n.Name), n)
}

// holdingJobs yields the jobs holding resources as of the start of this
// transaction.
func (t *txn) holdingJobs() iter.Seq[*api.Job] { return t.base.HoldingJobs() }
