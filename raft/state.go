package raft

import (
	"context"
	"encoding/binary"
	"iter"
	"sync"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"github.com/loomhpc/loom/api"
)

// Snapshot is one immutable version of the replicated state. Readers hold
// it as long as they like; the FSM builds the next version beside it.
// Objects reached through it must not be modified: writers copy.
type Snapshot struct {
	index     uint64
	nextJobID uint64
	jobs      *iradix.Tree[*api.Job]
	active    *iradix.Tree[*api.Job] // jobs not finished, or still holding resources
	holding   *iradix.Tree[*api.Job] // jobs whose allocation still holds resources
	nodes     *iradix.Tree[*api.Node]
	tokens    *iradix.Tree[uint64] // idempotency token -> job id
	servers   *iradix.Tree[*api.ServerInfo]
}

func emptySnapshot() *Snapshot {
	return &Snapshot{
		nextJobID: 1,
		jobs:      iradix.New[*api.Job](),
		active:    iradix.New[*api.Job](),
		holding:   iradix.New[*api.Job](),
		nodes:     iradix.New[*api.Node](),
		tokens:    iradix.New[uint64](),
		servers:   iradix.New[*api.ServerInfo](),
	}
}

func jobKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}

// Index is the Raft index of the last entry this state includes.
func (s *Snapshot) Index() uint64 { return s.index }

// NextJobID is the id the next submitted job will get.
func (s *Snapshot) NextJobID() uint64 { return s.nextJobID }

// Job returns the job with id, or nil.
func (s *Snapshot) Job(id uint64) *api.Job {
	j, _ := s.jobs.Get(jobKey(id))
	return j
}

// JobByToken returns the job submitted with an idempotency token, or nil.
func (s *Snapshot) JobByToken(token string) *api.Job {
	id, ok := s.tokens.Get([]byte(token))
	if !ok {
		return nil
	}
	return s.Job(id)
}

// Jobs yields every job, oldest first.
func (s *Snapshot) Jobs() iter.Seq[*api.Job] {
	return func(yield func(*api.Job) bool) {
		it := s.jobs.Root().Iterator()
		for _, j, ok := it.Next(); ok; _, j, ok = it.Next() {
			if !yield(j) {
				return
			}
		}
	}
}

// ActiveJobs yields the jobs that are pending, running, or still hold an
// allocation, oldest first: what the scheduler and agents care about.
func (s *Snapshot) ActiveJobs() iter.Seq[*api.Job] {
	return func(yield func(*api.Job) bool) {
		it := s.active.Root().Iterator()
		for _, j, ok := it.Next(); ok; _, j, ok = it.Next() {
			if !yield(j) {
				return
			}
		}
	}
}

// NumJobs returns how many jobs the state holds.
func (s *Snapshot) NumJobs() int { return s.jobs.Len() }

// Node returns the node called name, or nil.
func (s *Snapshot) Node(name string) *api.Node {
	n, _ := s.nodes.Get([]byte(name))
	return n
}

// Nodes yields every node in name order.
func (s *Snapshot) Nodes() iter.Seq[*api.Node] {
	return func(yield func(*api.Node) bool) {
		it := s.nodes.Root().Iterator()
		for _, n, ok := it.Next(); ok; _, n, ok = it.Next() {
			if !yield(n) {
				return
			}
		}
	}
}

// NodesVersion identifies the set of nodes and their records: equal
// values mean nothing about any node changed in between.
func (s *Snapshot) NodesVersion() any { return s.nodes.Root() }

// Server returns what the state records of server id, or nil.
func (s *Snapshot) Server(id string) *api.ServerInfo {
	v, _ := s.servers.Get([]byte(id))
	return v
}

// Servers yields the recorded control-plane servers in id order.
func (s *Snapshot) Servers() iter.Seq[*api.ServerInfo] {
	return func(yield func(*api.ServerInfo) bool) {
		it := s.servers.Root().Iterator()
		for _, v, ok := it.Next(); ok; _, v, ok = it.Next() {
			if !yield(v) {
				return
			}
		}
	}
}

// HoldingJobs yields the jobs whose allocations hold resources, oldest
// first.
func (s *Snapshot) HoldingJobs() iter.Seq[*api.Job] {
	return func(yield func(*api.Job) bool) {
		it := s.holding.Root().Iterator()
		for _, j, ok := it.Next(); ok; _, j, ok = it.Next() {
			if !yield(j) {
				return
			}
		}
	}
}

// Usage returns what live allocations hold on each node.
func (s *Snapshot) Usage() api.Usage { return api.ComputeUsage(s.HoldingJobs()) }

// Store publishes the current Snapshot and wakes waiters on each change.
type Store struct {
	mu      sync.Mutex
	cur     *Snapshot
	changed chan struct{}
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{cur: emptySnapshot(), changed: make(chan struct{})}
}

// Snapshot returns the current state.
func (st *Store) Snapshot() *Snapshot {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cur
}

// Changed returns the current state and a channel closed at the next change.
func (st *Store) Changed() (*Snapshot, <-chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cur, st.changed
}

// WaitIndex blocks until the state includes index, or ctx ends.
func (st *Store) WaitIndex(ctx context.Context, index uint64) (*Snapshot, error) {
	for {
		snap, ch := st.Changed()
		if snap.index >= index {
			return snap, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return snap, ctx.Err()
		}
	}
}

func (st *Store) publish(s *Snapshot) {
	st.mu.Lock()
	st.cur = s
	close(st.changed)
	st.changed = make(chan struct{})
	st.mu.Unlock()
}

// txn is the FSM's writable view while it applies one entry.
type txn struct {
	index     uint64
	nextJobID uint64
	jobs      *iradix.Txn[*api.Job]
	active    *iradix.Txn[*api.Job]
	holding   *iradix.Txn[*api.Job]
	nodes     *iradix.Txn[*api.Node]
	tokens    *iradix.Txn[uint64]
	servers   *iradix.Txn[*api.ServerInfo]
	base      *Snapshot
}

func (s *Snapshot) txn(index uint64) *txn {
	return &txn{
		index:     index,
		nextJobID: s.nextJobID,
		jobs:      s.jobs.Txn(),
		active:    s.active.Txn(),
		holding:   s.holding.Txn(),
		nodes:     s.nodes.Txn(),
		tokens:    s.tokens.Txn(),
		servers:   s.servers.Txn(),
		base:      s,
	}
}

func (t *txn) commit() *Snapshot {
	return &Snapshot{
		index:     t.index,
		nextJobID: t.nextJobID,
		jobs:      t.jobs.Commit(),
		active:    t.active.Commit(),
		holding:   t.holding.Commit(),
		nodes:     t.nodes.Commit(),
		tokens:    t.tokens.Commit(),
		servers:   t.servers.Commit(),
	}
}

func (t *txn) job(id uint64) *api.Job {
	j, _ := t.jobs.Get(jobKey(id))
	return j
}

// putJob stores j (which the caller built fresh or cloned) and keeps the
// active index in step with its state.
func (t *txn) putJob(j *api.Job) {
	if j.CreateIndex == 0 {
		j.CreateIndex = t.index
	}
	j.ModifyIndex = t.index
	k := jobKey(j.Id)
	t.jobs.Insert(k, j)
	indexJob(t.active, t.holding, k, j)
}

// indexJob keeps the active and holding indexes in step with j's state.
func indexJob(active, holding *iradix.Txn[*api.Job], k []byte, j *api.Job) {
	holds := j.HoldsResources()
	if j.State.Terminal() && !holds {
		active.Delete(k)
	} else {
		active.Insert(k, j)
	}
	if holds {
		holding.Insert(k, j)
	} else {
		holding.Delete(k)
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
