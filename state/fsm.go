package state

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

// CommandType is the first byte of every Loom log entry.
type CommandType byte

// The command types. Values are on disk: never renumber, only append.
const (
	CmdSubmitJob          CommandType = 1
	CmdCancelJobs         CommandType = 2
	CmdApplyPlan          CommandType = 3
	CmdUpdateTasks        CommandType = 4
	CmdRegisterNode       CommandType = 5
	CmdNodeState          CommandType = 6
	CmdServerMember       CommandType = 7
	CmdSubmitJobs         CommandType = 8
	CmdHoldJobs           CommandType = 9
	CmdRequeueJobs        CommandType = 10
	CmdCreateStep         CommandType = 11
	CmdCancelSteps        CommandType = 12
	CmdCompleteAllocation CommandType = 13
	CmdExpireJobs         CommandType = 14
	CmdSetConfig          CommandType = 15
	CmdReservation        CommandType = 16
	CmdUpdateJob          CommandType = 17
	CmdUpdateTasksBatch   CommandType = 18
)

// CmdIgnorable is the flag bit of a command type that a server which does
// not know the type may skip (the rolling-upgrade rule in the package
// doc). None of the types above carries it.
const CmdIgnorable CommandType = 0x80

// Ignorable reports whether c carries the CmdIgnorable flag.
func (c CommandType) Ignorable() bool { return c&CmdIgnorable != 0 }

func (c CommandType) String() string {
	if e, ok := commands[c]; ok {
		return e.name
	}
	return fmt.Sprintf("CommandType(%d)", byte(c))
}

// Result is what applying one command returns to the proposer.
type Result struct {
	Index    uint64   // the entry's index
	JobID    uint64   // SubmitJob: the job's id (the existing one for a seen token)
	JobIDs   []uint64 // CancelJobs: the jobs cancelled; SubmitJobs: the ids, in request order; HoldJobs: the jobs changed
	Placed   int      // ApplyPlan: placements accepted
	Rejected int      // ApplyPlan: placements refused as conflicting
	StepID   uint32   // CreateStep: the step's id (the existing one for a seen token)
	StepIDs  []uint32 // CancelSteps: the steps cancelled or signalled
	Err      error    // a refusal the caller should show (unknown job, ...)
	Errs     []error  // SubmitJob(s), UpdateTasksBatch: each request's refusal (nil: accepted), in request order
}

type command struct {
	name  string
	new   func() proto.Message
	apply func(t *txn, msg proto.Message) *Result
}

// commands is the dispatch table: one apply function per command type.
var commands = map[CommandType]command{
	CmdSubmitJob:          {"SubmitJob", func() proto.Message { return &api.SubmitJobCommand{} }, applySubmitJob},
	CmdCancelJobs:         {"CancelJobs", func() proto.Message { return &api.CancelJobsCommand{} }, applyCancelJobs},
	CmdApplyPlan:          {"ApplyPlan", func() proto.Message { return &api.PlanCommand{} }, applyPlan},
	CmdUpdateTasks:        {"UpdateTasks", func() proto.Message { return &api.UpdateTasksCommand{} }, applyUpdateTasks},
	CmdRegisterNode:       {"RegisterNode", func() proto.Message { return &api.RegisterNodeCommand{} }, applyRegisterNode},
	CmdNodeState:          {"NodeState", func() proto.Message { return &api.NodeStateCommand{} }, applyNodeState},
	CmdServerMember:       {"ServerMembership", func() proto.Message { return &api.ServerMembershipCommand{} }, applyServerMembership},
	CmdSubmitJobs:         {"SubmitJobs", func() proto.Message { return &api.SubmitJobsCommand{} }, applySubmitJobs},
	CmdHoldJobs:           {"HoldJobs", func() proto.Message { return &api.HoldJobsCommand{} }, applyHoldJobs},
	CmdRequeueJobs:        {"RequeueJobs", func() proto.Message { return &api.RequeueJobsCommand{} }, applyRequeueJobs},
	CmdCreateStep:         {"CreateStep", func() proto.Message { return &api.CreateStepCommand{} }, applyCreateStep},
	CmdCancelSteps:        {"CancelSteps", func() proto.Message { return &api.CancelStepsCommand{} }, applyCancelSteps},
	CmdCompleteAllocation: {"CompleteAllocation", func() proto.Message { return &api.CompleteAllocationCommand{} }, applyCompleteAllocation},
	CmdExpireJobs:         {"ExpireJobs", func() proto.Message { return &api.ExpireJobsCommand{} }, applyExpireJobs},
	CmdSetConfig:          {"SetConfig", func() proto.Message { return &api.SetConfigCommand{} }, applySetConfig},
	CmdReservation:        {"Reservation", func() proto.Message { return &api.ReservationCommand{} }, applyReservation},
	CmdUpdateJob:          {"UpdateJob", func() proto.Message { return &api.UpdateJobCommand{} }, applyUpdateJob},
	CmdUpdateTasksBatch:   {"UpdateTasksBatch", func() proto.Message { return &api.UpdateTasksBatchCommand{} }, applyUpdateTasksBatch},
}

// Encode frames msg as a log entry of type c.
func Encode(c CommandType, msg proto.Message) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("state: encode %s: %w", c, err)
	}
	return append([]byte{byte(c)}, b...), nil
}

// FSM applies committed entries to the Store. Entries are applied one at
// a time, in log order, from one goroutine.
type FSM struct {
	store   *Store
	log     *slog.Logger
	skipped map[CommandType]bool // ignorable types already logged as skipped
	archive Archive              // where expired jobs go; nil drops them
}

// SetArchive makes the FSM hand the jobs it moves out of the live state
// to a. Call it before the first entry is applied.
func (f *FSM) SetArchive(a Archive) { f.archive = a }

// NewFSM returns an FSM writing to store.
func NewFSM(store *Store, log *slog.Logger) *FSM {
	if log == nil {
		log = slog.Default()
	}
	return &FSM{store: store, log: log, skipped: map[CommandType]bool{}}
}

// ApplyEntry applies the encoded command of the committed entry at index.
// An entry it cannot decode panics: a replica that skips an entry has
// diverged, which is worse than a crash. The one exception is an entry of
// an unknown type flagged CmdIgnorable, which is skipped.
func (f *FSM) ApplyEntry(index uint64, data []byte) *Result {
	if len(data) == 0 {
		panic(fmt.Sprintf("state: empty log entry at index %d", index))
	}
	ct := CommandType(data[0])
	cmd, ok := commands[ct]
	if !ok {
		if !ct.Ignorable() {
			panic(fmt.Sprintf("state: log entry at index %d has command type %d, which this server does not know and may not skip: "+
				"a newer Loom server wrote it; upgrade this server to that version", index, data[0]))
		}
		f.skip(index, ct)
		return &Result{Index: index}
	}
	msg := cmd.new()
	if err := proto.Unmarshal(data[1:], msg); err != nil {
		panic(fmt.Sprintf("state: cannot decode %s at index %d: %v", ct, index, err))
	}
	t := f.store.View().txn(index)
	res := cmd.apply(t, msg)
	if len(t.expired) > 0 && f.archive != nil {
		// Written before the state without them is published, so a reader
		// that misses a job in the state finds it in the archive. A write
		// that fails would lose the records: stop, as for a log we cannot
		// write.
		if err := f.archive.Archive(index, t.expired); err != nil {
			panic(fmt.Sprintf("state: archive %d expired jobs at index %d: %v", len(t.expired), index, err))
		}
	}
	f.store.publish(t.commit())
	res.Index = index
	return res
}

// skip passes over an ignorable entry this server does not know: the state
// stays as it was but now includes index, so that waiters on the applied
// index go on. Each such type is logged once.
func (f *FSM) skip(index uint64, ct CommandType) {
	if !f.skipped[ct] {
		f.skipped[ct] = true
		f.log.Warn("skipping log entries of an unknown command type flagged ignorable; a newer server wrote them",
			"command_type", byte(ct), "index", index)
	}
	v := *f.store.View()
	v.index = index
	f.store.publish(&v)
}

// Restore replaces the state with the one a Raft snapshot holds (the
// encoding of View.Marshal, or of WriteSnapshot: the archived jobs it
// carries go to the archive before the state is replaced).
func (f *FSM) Restore(r io.Reader) error {
	ss, err := f.readSnapshot(r)
	if err != nil {
		return err
	}
	t := emptyView().txn(ss.Index)
	t.nextJobID = ss.NextJobId
	t.config = ss.Config
	for _, n := range ss.Nodes {
		t.nodes.Insert([]byte(n.Name), n)
	}
	for _, sv := range ss.Servers {
		t.servers.Insert([]byte(sv.Id), sv)
	}
	for _, r := range ss.Reservations {
		t.resv.Insert([]byte(r.Name), r)
	}
	var arraySpec *api.JobSpec
	var arrayID uint64
	for _, j := range ss.Jobs {
		// Later tasks of an array come without the spec they share with
		// the array's first task in the snapshot (View.Marshal).
		switch {
		case j.Spec == nil && j.ArrayJobId != 0 && j.ArrayJobId == arrayID:
			j.Spec = arraySpec
		case j.ArrayJobId != 0:
			arrayID, arraySpec = j.ArrayJobId, j.Spec
		}
		t.jobs.Insert(jobKey(j.Id), j)
		t.countUnfinished(nil, j)
		t.indexJob(j)
		if j.IdempotencyToken != "" {
			t.tokens.Insert([]byte(j.IdempotencyToken), j.Id)
		}
	}
	f.store.publish(t.commit())
	f.log.Info("restored state from snapshot", "index", ss.Index, "jobs", len(ss.Jobs), "nodes", len(ss.Nodes))
	return nil
}

// Errors the FSM returns in Result.Err.
var (
	ErrJobNotFound  = errors.New("no such job")
	ErrNodeNotFound = errors.New("no such node")
	ErrPermission   = errors.New("permission denied")
)

// applySetConfig replaces the cluster configuration. The leader validated
// it before proposing; the FSM takes it as it is, so every server holds
// the same rules.
func applySetConfig(t *txn, msg proto.Message) *Result {
	c := msg.(*api.SetConfigCommand)
	t.config = c.Config
	return &Result{}
}
