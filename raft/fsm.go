package raft

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"

	hraft "github.com/hashicorp/raft"
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
)

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
}

// Encode frames msg as a log entry of type c.
func Encode(c CommandType, msg proto.Message) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("raft: encode %s: %w", c, err)
	}
	return append([]byte{byte(c)}, b...), nil
}

// FSM applies committed entries to the Store.
type FSM struct {
	store *Store
	log   *slog.Logger
}

// NewFSM returns an FSM writing to store.
func NewFSM(store *Store, log *slog.Logger) *FSM {
	if log == nil {
		log = slog.Default()
	}
	return &FSM{store: store, log: log}
}

// Apply applies one committed entry. An entry it cannot decode panics:
// a replica that skips an entry has diverged, which is worse than a crash.
func (f *FSM) Apply(l *hraft.Log) any {
	if l.Type != hraft.LogCommand {
		return nil
	}
	return f.ApplyBytes(l.Index, l.Data)
}

// ApplyBytes applies an encoded command at index (exposed for tests and the
// simulator, which apply without a Raft log).
func (f *FSM) ApplyBytes(index uint64, data []byte) *Result {
	if len(data) == 0 {
		panic(fmt.Sprintf("raft: empty log entry at index %d", index))
	}
	ct := CommandType(data[0])
	cmd, ok := commands[ct]
	if !ok {
		panic(fmt.Sprintf("raft: unknown command type %d at index %d", data[0], index))
	}
	msg := cmd.new()
	if err := proto.Unmarshal(data[1:], msg); err != nil {
		panic(fmt.Sprintf("raft: cannot decode %s at index %d: %v", ct, index, err))
	}
	t := f.store.Snapshot().txn(index)
	res := cmd.apply(t, msg)
	f.store.publish(t.commit())
	res.Index = index
	return res
}

// Snapshot captures the current state for Raft. The state is immutable,
// so holding the pointer is the whole capture.
func (f *FSM) Snapshot() (hraft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.store.Snapshot()}, nil
}

// Restore replaces the state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("raft: read snapshot: %w", err)
	}
	var ss api.StateSnapshot
	if err := proto.Unmarshal(b, &ss); err != nil {
		return fmt.Errorf("raft: decode snapshot: %w", err)
	}
	t := emptySnapshot().txn(ss.Index)
	t.nextJobID = ss.NextJobId
	for _, n := range ss.Nodes {
		t.nodes.Insert([]byte(n.Name), n)
	}
	for _, sv := range ss.Servers {
		t.servers.Insert([]byte(sv.Id), sv)
	}
	for _, j := range ss.Jobs {
		k := jobKey(j.Id)
		t.jobs.Insert(k, j)
		indexJob(t.active, t.holding, k, j)
		if j.IdempotencyToken != "" {
			t.tokens.Insert([]byte(j.IdempotencyToken), j.Id)
		}
	}
	f.store.publish(t.commit())
	f.log.Info("restored state from snapshot", "index", ss.Index, "jobs", len(ss.Jobs), "nodes", len(ss.Nodes))
	return nil
}

type fsmSnapshot struct{ snap *Snapshot }

// Marshal encodes s as a StateSnapshot.
func (s *Snapshot) Marshal() ([]byte, error) {
	ss := &api.StateSnapshot{Index: s.index, NextJobId: s.nextJobID}
	for j := range s.Jobs() {
		ss.Jobs = append(ss.Jobs, j)
	}
	for n := range s.Nodes() {
		ss.Nodes = append(ss.Nodes, n)
	}
	for sv := range s.Servers() {
		ss.Servers = append(ss.Servers, sv)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(ss)
}

// Hash is a digest of the whole state, equal on replicas that applied the
// same entries: the fault tests compare it across servers.
func (s *Snapshot) Hash() (string, error) {
	b, err := s.Marshal()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func (s *fsmSnapshot) Persist(sink hraft.SnapshotSink) error {
	b, err := s.snap.Marshal()
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("raft: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// Errors the FSM returns in Result.Err.
var (
	ErrJobNotFound  = errors.New("no such job")
	ErrNodeNotFound = errors.New("no such node")
	ErrPermission   = errors.New("permission denied")
)
