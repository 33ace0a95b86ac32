package raftnode

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"github.com/loomhpc/loom/state"
)

// fsm is hashicorp/raft's FSM over Loom's: it hands committed commands to
// the state FSM and snapshots the store.
type fsm struct {
	fsm   *state.FSM
	store *state.Store
}

// Apply applies one committed entry; Raft's own entries (configuration
// changes, no-ops, barriers) are not commands.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	return f.fsm.ApplyEntry(l.Index, l.Data)
}

// Snapshot captures the current state for Raft. The state is immutable,
// so holding the view is the whole capture; the accounting records are
// read when the snapshot is persisted (records are only ever added, and
// one archived after the view was taken is stored as applying its entry
// would store it).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{fsm: f.fsm, view: f.store.View()}, nil
}

// Restore replaces the state with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.fsm.Restore(rc)
}

type fsmSnapshot struct {
	fsm  *state.FSM
	view *state.View
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.fsm.WriteSnapshot(sink, s.view); err != nil {
		sink.Cancel()
		return fmt.Errorf("raft: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
