package scheduler

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
)

// TestExcludeKeepsJobsOffNodes: a job never lands on a node it excludes,
// even when that node is the best or the only fit, and a job of the same
// shape without the exclusion is not held back by it (the scheduler's
// per-shape memos must tell them apart).
func TestExcludeKeepsJobsOffNodes(t *testing.T) {
	v := &View{
		Nodes: []*api.Node{node("a", 8, 64), node("b", 8, 64), node("c", 8, 64)},
		Jobs: []*api.Job{
			pending(1, &api.JobSpec{NodesMin: 1, GpusPerNode: 8, Exclude: []string{"a", "b", "c"}}),
			pending(2, &api.JobSpec{NodesMin: 1, GpusPerNode: 8, Exclude: []string{"a"}}),
			pending(3, &api.JobSpec{NodesMin: 2, GpusPerNode: 4, Exclude: []string{"b"}}),
			pending(4, &api.JobSpec{NodesMin: 1, GpusPerNode: 8}),
		},
	}
	p := Schedule(v, time.Unix(0, 0), Config{})
	on := map[uint64][]string{}
	for _, pl := range p.Placements {
		on[pl.JobId] = pl.Allocation.Nodes
	}
	if _, ok := on[1]; ok {
		t.Fatalf("job 1 excludes every node and was placed on %v", on[1])
	}
	if n := on[2]; len(n) != 1 || n[0] == "a" {
		t.Fatalf("job 2 (exclude a) placed on %v", n)
	}
	if n := on[3]; len(n) != 2 || strings.Contains(strings.Join(n, ","), "b") {
		t.Fatalf("job 3 (exclude b) placed on %v", n)
	}
	// Jobs 2 and 3 take b or c whole and half of a and c: job 4 needs a
	// whole node, which only exists if they left one.
	used := map[string]bool{}
	for _, id := range []uint64{2, 3} {
		for _, n := range on[id] {
			used[n] = true
		}
	}
	if len(used) == 3 {
		if _, ok := on[4]; ok {
			t.Fatalf("job 4 placed on %v although every node is partly used", on[4])
		}
	}

	// The same shape as job 2 but excluding the only free node waits,
	// while the unrestricted twin submitted after it runs.
	v = &View{
		Nodes: []*api.Node{node("a", 8, 64)},
		Jobs: []*api.Job{
			pending(5, &api.JobSpec{NodesMin: 1, GpusPerNode: 8, Exclude: []string{"a"}}),
			pending(6, &api.JobSpec{NodesMin: 1, GpusPerNode: 8}),
		},
	}
	p = Schedule(v, time.Unix(0, 0), Config{})
	if len(p.Placements) != 1 || p.Placements[0].JobId != 6 {
		t.Fatalf("placements = %v, want only job 6 (job 5 excludes the only node)", p.Placements)
	}
}

// TestExcludeDoesNotLeakToOtherJobs: the nodes one job excludes stay
// available to the next.
func TestExcludeDoesNotLeakToOtherJobs(t *testing.T) {
	v := &View{
		Nodes: []*api.Node{node("a", 8, 64), node("b", 8, 64)},
		Jobs: []*api.Job{
			pending(1, &api.JobSpec{NodesMin: 1, GpusPerNode: 1, Exclude: []string{"a"}}),
			pending(2, &api.JobSpec{NodesMin: 1, GpusPerNode: 8}),
			pending(3, &api.JobSpec{NodesMin: 1, GpusPerNode: 1, Nodelist: []string{"b"}, NodesMax: 1}),
		},
	}
	p := Schedule(v, time.Unix(0, 0), Config{})
	on := map[uint64]string{}
	for _, pl := range p.Placements {
		on[pl.JobId] = strings.Join(pl.Allocation.Nodes, ",")
	}
	if on[1] != "b" || on[2] != "a" || on[3] != "b" {
		t.Fatalf("placed %v, want job 1 on b, job 2 on a, job 3 on b", on)
	}
}

func TestFeasibleWithExclude(t *testing.T) {
	nodes := []*api.Node{node("a", 8, 64), node("b", 8, 64)}
	if err := Feasible(nodes, &api.JobSpec{NodesMin: 2, GpusPerNode: 1, Exclude: []string{"b"}}); err == nil ||
		!strings.Contains(err.Error(), "only 1 nodes outside --exclude") {
		t.Fatalf("2 nodes with one excluded: err = %v", err)
	}
	if err := Feasible(nodes, &api.JobSpec{NodesMin: 1, GpusPerNode: 1, Exclude: []string{"a", "b"}}); err == nil ||
		!strings.Contains(err.Error(), "--exclude leaves no node") {
		t.Fatalf("every node excluded: err = %v", err)
	}
	if err := Feasible(nodes, &api.JobSpec{NodesMin: 1, GpusPerNode: 8, Exclude: []string{"a", "zz"}}); err != nil {
		t.Fatalf("one node left: %v", err)
	}
}

// TestNodelistRunsOnExactlyThoseNodes: a job listing nodes lands on them
// even when others fit better, and waits while one of them is busy.
func TestNodelistRunsOnExactlyThoseNodes(t *testing.T) {
	v := &View{
		Nodes: []*api.Node{node("a", 8, 64), node("b", 8, 64), node("c", 8, 64), node("d", 8, 64)},
		Jobs: []*api.Job{
			pending(1, &api.JobSpec{NodesMin: 2, NodesMax: 2, GpusPerNode: 2, Nodelist: []string{"d", "b"}, TimeLimitS: 3600}),
			pending(2, &api.JobSpec{NodesMin: 1, NodesMax: 1, GpusPerNode: 8, Nodelist: []string{"d"}, TimeLimitS: 3600}),
			// Backfills around job 2's reservation on d: time limits known.
			pending(3, &api.JobSpec{NodesMin: 1, GpusPerNode: 8, TimeLimitS: 3600}),
		},
	}
	p := Schedule(v, time.Unix(0, 0), Config{})
	on := map[uint64]string{}
	for _, pl := range p.Placements {
		n := slices.Clone(pl.Allocation.Nodes)
		slices.Sort(n)
		on[pl.JobId] = strings.Join(n, ",")
	}
	if on[1] != "b,d" {
		t.Fatalf("job 1 (nodelist d,b) placed on %q", on[1])
	}
	if _, ok := on[2]; ok {
		t.Fatalf("job 2 wants all of d, which job 1 half uses, and was placed on %q", on[2])
	}
	if on[3] == "" || strings.Contains(on[3], "b") || strings.Contains(on[3], "d") {
		t.Fatalf("job 3 (any whole node) placed on %q", on[3])
	}
	if err := Feasible(v.Nodes, &api.JobSpec{NodesMin: 1, NodesMax: 1, GpusPerNode: 1, Nodelist: []string{"zz"}}); err == nil ||
		!strings.Contains(err.Error(), "no node zz") {
		t.Fatalf("unknown node in nodelist: err = %v", err)
	}
	if err := Feasible(v.Nodes, &api.JobSpec{NodesMin: 1, NodesMax: 1, GpusPerNode: 9, Nodelist: []string{"a"}}); err == nil {
		t.Fatal("9 GPUs on an 8-GPU listed node passed")
	}
}

// Jobs that tie on priority and submit time (committed in one millisecond)
// run in submit order, which their ids record.
func TestSameMillisecondKeepsSubmitOrder(t *testing.T) {
	for n := uint64(2); n <= 40; n++ {
		v := &View{Nodes: []*api.Node{node("a", 8, 64)}}
		for id := uint64(1); id <= n; id++ {
			j := pending(id, &api.JobSpec{NodesMin: 1, GpusPerNode: 8})
			j.SubmitUnixMs = 5000
			v.Jobs = append(v.Jobs, j)
		}
		p := Schedule(v, time.Unix(10, 0), Config{})
		if len(p.Placements) != 1 || p.Placements[0].JobId != 1 {
			t.Fatalf("%d tied jobs: placed %v, want job 1 first", n, p.Placements)
		}
	}
}
