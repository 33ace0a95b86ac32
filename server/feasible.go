package server

import (
	"sync"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/scheduler"
	"github.com/loomhpc/loom/state"
	"google.golang.org/protobuf/proto"
)

// feasibility remembers scheduler.Feasible's verdicts for the current set
// of nodes. The check builds the scheduler's view of every node, which on
// the submit path cost more than the rest of a submit's handling; a batch
// of similar jobs (an array, a sweep) asks the same question again and
// again. Any change to the nodes starts a fresh memory.
type feasibility struct {
	mu       sync.Mutex
	nodes    any // the node set the verdicts hold for (state.View.NodesVersion)
	parts    *api.PartitionTable
	verdicts map[string]error
}

// maxVerdicts bounds the memory; beyond it, it starts again.
const maxVerdicts = 4096

func (f *feasibility) check(snap *state.View, nodes []*api.Node, spec *api.JobSpec) error {
	key := feasibilityKey(spec)
	version := snap.NodesVersion()
	parts := api.PartitionsOf(snap.Config())
	f.mu.Lock()
	if f.nodes != version || f.parts != parts || len(f.verdicts) >= maxVerdicts {
		f.nodes, f.parts, f.verdicts = version, parts, map[string]error{}
	}
	err, ok := f.verdicts[key]
	f.mu.Unlock()
	if ok {
		return err
	}
	err = scheduler.FeasibleIn(nodes, parts, spec)
	f.mu.Lock()
	if f.nodes == version && f.parts == parts {
		f.verdicts[key] = err
	}
	f.mu.Unlock()
	return err
}

// feasibilityKey is the spec without the fields that cannot change
// whether it fits: what runs, where its output goes, when and in which
// order. Anything left in only makes the key more particular.
func feasibilityKey(spec *api.JobSpec) string {
	s := proto.Clone(spec).(*api.JobSpec)
	s.Name, s.Script, s.Argv, s.Env, s.WorkingDir = "", "", nil, nil, ""
	s.Output, s.Error, s.OpenMode, s.Signal = "", "", "", ""
	s.Dependency, s.Array, s.BeginUnixMs, s.Hold, s.Nice = "", "", 0, false, 0
	s.Requeue, s.MaxRestarts, s.Image, s.Mounts = nil, nil, "", nil
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	return string(b)
}
