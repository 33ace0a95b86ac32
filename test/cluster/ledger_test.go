package cluster

import (
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
)

func alloc(job, gen uint64, created int64, ranks ...*api.Rank) *api.Job {
	a := &api.Allocation{JobId: job, Generation: gen, CreatedUnixMs: created, Ranks: ranks}
	for i := range ranks {
		a.Tasks = append(a.Tasks, &api.TaskStatus{Rank: uint32(i), State: api.TaskState_TASK_RUNNING})
	}
	return &api.Job{Id: job, Allocation: a}
}

func rank(node, gpu string) *api.Rank { return &api.Rank{Node: node, GpuUuids: []string{gpu}} }

func ended(j *api.Job, rank int, at int64) *api.Job {
	j.Allocation.Tasks[rank].State, j.Allocation.Tasks[rank].EndedUnixMs = api.TaskState_TASK_EXITED, at
	return j
}

func modified(j *api.Job, index uint64) *api.Job {
	j.ModifyIndex = index
	return j
}

func down(name string, at int64) *api.NodeInfo {
	return &api.NodeInfo{Node: &api.Node{Name: name, UpdatedUnixMs: at}, State: api.NodeState_DOWN}
}

func TestLedger(t *testing.T) {
	tests := []struct {
		name       string
		polls      [][]*api.Job
		deaths     []*api.NodeInfo
		wantErr    string // "" for none
		unverified int
	}{
		{name: "one after the other", polls: [][]*api.Job{
			{ended(alloc(1, 1, 100, rank("n0", "g0")), 0, 200)},
			{ended(alloc(2, 1, 200, rank("n0", "g0")), 0, 300)},
		}},
		{name: "second placed before the first ended", wantErr: "GPU g0 on n0 held by job 1 generation 1", polls: [][]*api.Job{
			{ended(alloc(1, 1, 100, rank("n0", "g0")), 0, 250)},
			{alloc(2, 1, 200, rank("n0", "g0"))},
		}},
		{name: "an earlier generation overlaps the next", wantErr: "job 1 generation 1 from 100 until 400", polls: [][]*api.Job{
			{ended(alloc(1, 1, 100, rank("n0", "g0"), rank("n1", "g1")), 0, 400)},
			{alloc(1, 2, 300, rank("n1", "g1"))},
			{alloc(1, 2, 300, rank("n0", "g0"))},
		}},
		{name: "a rank that never ended holds its GPU while its node lives", wantErr: "until no reported end", polls: [][]*api.Job{
			{alloc(1, 1, 100, rank("n0", "g0"))},
			{alloc(2, 1, 500, rank("n0", "g0"))},
		}},
		{name: "a rank that never ended holds its GPU until its node's death", deaths: []*api.NodeInfo{down("n0", 300)}, wantErr: "until 300", polls: [][]*api.Job{
			{alloc(1, 1, 100, rank("n0", "g0"))},
			{alloc(2, 1, 250, rank("n0", "g0"))},
		}},
		{name: "after the death is committed the GPU is free", deaths: []*api.NodeInfo{down("n0", 300)}, polls: [][]*api.Job{
			{alloc(1, 1, 100, rank("n0", "g0"))},
			{alloc(2, 1, 300, rank("n0", "g0"))},
		}},
		{name: "a stale read does not hide an end seen before", polls: [][]*api.Job{
			{modified(ended(alloc(1, 1, 100, rank("n0", "g0")), 0, 200), 7)},
			{modified(alloc(1, 1, 100, rank("n0", "g0")), 5)},
			{alloc(2, 1, 300, rank("n0", "g0"))},
		}},
		{name: "a missed end of a replaced generation ends at the next", unverified: 1, polls: [][]*api.Job{
			{alloc(1, 1, 100, rank("n0", "g0"))},
			{alloc(1, 2, 300, rank("n0", "g0"))},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLedger()
			l.ObserveNodes(tt.deaths)
			for _, p := range tt.polls {
				l.Observe(p)
			}
			spans, unverified, err := l.CheckNoGPUHeldTwice()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("CheckNoGPUHeldTwice() = %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("CheckNoGPUHeldTwice() = %v, want an error with %q", err, tt.wantErr)
			case err == nil && spans == 0:
				t.Fatal("CheckNoGPUHeldTwice() counted no spans")
			}
			if err == nil && unverified != tt.unverified {
				t.Errorf("CheckNoGPUHeldTwice() unverified = %d, want %d", unverified, tt.unverified)
			}
		})
	}
}
