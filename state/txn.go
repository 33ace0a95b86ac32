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
	t.jobs.Insert(jobKey(j.Id), j)
	t.indexJob(j)
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
