package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"iter"
	"math"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

// View is one immutable version of the replicated state, read-only. Readers
// hold it as long as they like; the FSM builds the next version beside it.
// Objects reached through it must not be modified: writers copy.
type View struct {
	index     uint64
	nextJobID uint64
	jobs      *iradix.Tree[*api.Job]
	active    *iradix.Tree[*api.Job] // jobs not finished, or still holding resources
	holding   *iradix.Tree[*api.Job] // jobs whose allocation still holds resources
	// byUser and userActive are jobs and active by owner (userJobKey),
	// so that one user's listing does not scan everyone's jobs.
	byUser     *iradix.Tree[*api.Job]
	userActive *iradix.Tree[*api.Job]
	nodes      *iradix.Tree[*api.Node]
	tokens     *iradix.Tree[uint64] // idempotency token -> job id
	servers    *iradix.Tree[*api.ServerInfo]
	// unfinished counts each user's (uid's) jobs not yet finished, for
	// max_jobs_per_user.
	unfinished *iradix.Tree[uint32]
	// config is the cluster configuration last set (SetConfigCommand);
	// nil until a leader first proposes one. Never modified in place.
	config *api.ClusterConfig
	// reservations are the advance reservations by name.
	reservations *iradix.Tree[*api.Reservation]
}

func emptyView() *View {
	return &View{
		nextJobID:  1,
		jobs:       iradix.New[*api.Job](),
		active:     iradix.New[*api.Job](),
		holding:    iradix.New[*api.Job](),
		byUser:     iradix.New[*api.Job](),
		userActive: iradix.New[*api.Job](),
		nodes:      iradix.New[*api.Node](),
		tokens:     iradix.New[uint64](),
		servers:    iradix.New[*api.ServerInfo](),

		unfinished:   iradix.New[uint32](),
		reservations: iradix.New[*api.Reservation](),
	}
}

func uidKey(uid uint32) []byte { return binary.BigEndian.AppendUint32(nil, uid) }

// UnfinishedJobs returns how many of uid's jobs have not finished.
func (v *View) UnfinishedJobs(uid uint32) uint32 {
	n, _ := v.unfinished.Get(uidKey(uid))
	return n
}

func jobKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}

// Index is the Raft index of the last entry this state includes.
func (v *View) Index() uint64 { return v.index }

// Config is the replicated cluster configuration, or nil when none was
// ever set (the scheduler's defaults apply). It must not be modified.
func (v *View) Config() *api.ClusterConfig { return v.config }

// NextJobID is the id the next submitted job will get.
func (v *View) NextJobID() uint64 { return v.nextJobID }

// Job returns the job with id, or nil.
func (v *View) Job(id uint64) *api.Job {
	j, _ := v.jobs.Get(jobKey(id))
	return j
}

// userJobKey is a job's key in the by-user indexes: the user's name, a
// NUL (which no user name holds), the job id.
func userJobKey(user string, id uint64) []byte {
	return append(append([]byte(user), 0), jobKey(id)...)
}

// JobByToken returns the job submitted with an idempotency token, or nil.
func (v *View) JobByToken(token string) *api.Job {
	id, ok := v.tokens.Get([]byte(token))
	if !ok {
		return nil
	}
	return v.Job(id)
}

// Jobs yields every job, oldest first.
func (v *View) Jobs() iter.Seq[*api.Job] { return v.JobsAfter(JobFilter{}) }

// ActiveJobs yields the jobs that are pending, running, or still hold an
// allocation, oldest first: what the scheduler and agents care about.
func (v *View) ActiveJobs() iter.Seq[*api.Job] { return v.JobsAfter(JobFilter{Active: true}) }

// JobFilter picks the jobs JobsAfter yields from an index.
type JobFilter struct {
	Active  bool   // only active jobs (ActiveJobs)
	User    string // only this user's jobs; "" for everyone's
	AfterID uint64 // only jobs with larger ids
}

// JobsAfter yields the jobs f picks, oldest first, from the index that
// holds just those: a page of one user's queue costs the page, not a scan
// of every job.
func (v *View) JobsAfter(f JobFilter) iter.Seq[*api.Job] {
	tree, prefix := v.jobs, []byte(nil)
	switch {
	case f.User != "" && f.Active:
		tree, prefix = v.userActive, append([]byte(f.User), 0)
	case f.User != "":
		tree, prefix = v.byUser, append([]byte(f.User), 0)
	case f.Active:
		tree = v.active
	}
	return func(yield func(*api.Job) bool) {
		if f.AfterID == math.MaxUint64 {
			return
		}
		it := tree.Root().Iterator()
		if f.AfterID > 0 {
			it.SeekLowerBound(append(prefix, jobKey(f.AfterID+1)...))
		} else {
			it.SeekPrefix(prefix)
		}
		for k, j, ok := it.Next(); ok; k, j, ok = it.Next() {
			if !bytes.HasPrefix(k, prefix) || !yield(j) {
				return
			}
		}
	}
}

// NumJobs returns how many jobs the state holds.
func (v *View) NumJobs() int { return v.jobs.Len() }

// Node returns the node called name, or nil.
func (v *View) Node(name string) *api.Node {
	n, _ := v.nodes.Get([]byte(name))
	return n
}

// Nodes yields every node in name order.
func (v *View) Nodes() iter.Seq[*api.Node] {
	return func(yield func(*api.Node) bool) {
		it := v.nodes.Root().Iterator()
		for _, n, ok := it.Next(); ok; _, n, ok = it.Next() {
			if !yield(n) {
				return
			}
		}
	}
}

// NodesVersion identifies the set of nodes and their records: equal
// values mean nothing about any node changed in between.
func (v *View) NodesVersion() any { return v.nodes.Root() }

// Server returns what the state records of server id, or nil.
func (v *View) Server(id string) *api.ServerInfo {
	sv, _ := v.servers.Get([]byte(id))
	return sv
}

// Servers yields the recorded control-plane servers in id order.
func (v *View) Servers() iter.Seq[*api.ServerInfo] {
	return func(yield func(*api.ServerInfo) bool) {
		it := v.servers.Root().Iterator()
		for _, sv, ok := it.Next(); ok; _, sv, ok = it.Next() {
			if !yield(sv) {
				return
			}
		}
	}
}

// HoldingJobs yields the jobs whose allocations hold resources, oldest
// first.
func (v *View) HoldingJobs() iter.Seq[*api.Job] {
	return func(yield func(*api.Job) bool) {
		it := v.holding.Root().Iterator()
		for _, j, ok := it.Next(); ok; _, j, ok = it.Next() {
			if !yield(j) {
				return
			}
		}
	}
}

// Usage returns what live allocations hold on each node.
func (v *View) Usage() api.Usage { return api.ComputeUsage(v.HoldingJobs()) }

// Marshal encodes v as a StateSnapshot, the form Raft snapshots hold.
func (v *View) Marshal() ([]byte, error) {
	ss := &api.StateSnapshot{Index: v.index, NextJobId: v.nextJobID, Config: v.config}
	var arraySpec *api.JobSpec // the spec of the array last written
	var arrayID uint64
	for j := range v.Jobs() {
		// The tasks of an array share one spec in memory; the snapshot
		// writes it once too, with the array's first task kept here, and
		// the later tasks without it (Restore shares it again).
		if j.ArrayJobId != 0 && j.ArrayJobId == arrayID && j.Spec == arraySpec {
			j = withSpec(j, nil)
		} else if j.ArrayJobId != 0 {
			arrayID, arraySpec = j.ArrayJobId, j.Spec
		}
		ss.Jobs = append(ss.Jobs, j)
	}
	for n := range v.Nodes() {
		ss.Nodes = append(ss.Nodes, n)
	}
	for sv := range v.Servers() {
		ss.Servers = append(ss.Servers, sv)
	}
	for r := range v.Reservations() {
		ss.Reservations = append(ss.Reservations, r)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(ss)
}

// Hash is a digest of the whole state, equal on replicas that applied the
// same entries: the fault tests compare it across servers.
func (v *View) Hash() (string, error) {
	b, err := v.Marshal()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
