package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
)

// TestFeatureCountPlacement: a --constraint with node counts (feature*N)
// places at least N of the gang's nodes on nodes with the feature, each
// node counted once, the others on any node that meets the rest of the
// constraint; a count the free nodes cannot meet waits.
func TestFeatureCountPlacement(t *testing.T) {
	const h100 = "NVIDIA H100 80GB HBM3"
	eight := func() []*api.Node {
		var ns []*api.Node
		for _, n := range []string{"o1", "o2", "o3", "o4", "o5", "o6", "a1", "a2"} {
			fs := []string{"ib"}
			if n[0] == 'a' {
				fs = append(fs, "a")
			}
			ns = append(ns, featured(n, h100, fs...))
		}
		return ns
	}
	// Half of each other node is taken, so that best fit alone would
	// choose four of them.
	jobs := []*api.Job{pending(1, &api.JobSpec{NodesMin: 4, GpusPerNode: 4, Constraint: "a*2"})}
	for k := range 6 {
		name := fmt.Sprintf("o%d", k+1)
		jobs = append(jobs, running(uint64(10+k), &api.JobSpec{GpusPerNode: 4}, time.Unix(0, 0), gpuRank(name, 0, 1, 2, 3)))
	}
	v := &View{Nodes: eight(), Jobs: jobs}
	got := placedOn(Schedule(v, time.Unix(0, 0), Config{}))[1]
	if len(got) != 4 || !slices.Contains(got, "a1") || !slices.Contains(got, "a2") {
		t.Errorf("a*2 over 4 nodes placed on %v, want a1, a2 and two others", got)
	}

	// Each node counts once: x has a and b, y only a, so b must come
	// from x and a from y (though z, half taken, fits best).
	v = &View{Nodes: []*api.Node{featured("z", h100, "c"), featured("x", h100, "a", "b"), featured("y", h100, "a")},
		Jobs: []*api.Job{pending(1, &api.JobSpec{NodesMin: 2, GpusPerNode: 4, Constraint: "[a*1&b*1]"}),
			running(2, &api.JobSpec{GpusPerNode: 4}, time.Unix(0, 0), gpuRank("z", 0, 1, 2, 3))}}
	got = placedOn(Schedule(v, time.Unix(0, 0), Config{}))[1]
	slices.Sort(got)
	if !slices.Equal(got, []string{"x", "y"}) {
		t.Errorf("[a*1&b*1] placed on %v, want [x y]", got)
	}

	// The uncounted part binds every node: z lacks ib.
	v = &View{Nodes: []*api.Node{featured("w", h100, "ib"), featured("v", h100, "ib"), featured("z", h100), featured("y", h100, "a"), featured("x", h100, "a", "ib")},
		Jobs: []*api.Job{pending(1, &api.JobSpec{NodesMin: 2, GpusPerNode: 8, Constraint: "ib&a*1"})}}
	got = placedOn(Schedule(v, time.Unix(0, 0), Config{}))[1]
	if len(got) != 2 || !slices.Contains(got, "x") || slices.Contains(got, "y") || slices.Contains(got, "z") {
		t.Errorf("ib&a*1 placed on %v, want x and one of v and w", got)
	}

	// With a2 busy until t0+1h, a*2 cannot start (though six other
	// nodes are free) and its reservation holds both a nodes.
	t0 := time.Unix(10000, 0)
	v = &View{Nodes: eight(), Jobs: []*api.Job{
		withLimit(running(1, &api.JobSpec{GpusPerNode: 8}, t0, gpuRank("a2", 0, 1, 2, 3, 4, 5, 6, 7)), time.Hour),
		withLimit(pending(2, &api.JobSpec{NodesMin: 4, GpusPerNode: 8, Constraint: "a*2"}), time.Hour),
	}}
	p := Schedule(v, t0, Config{})
	if got, ok := placedOn(p)[2]; ok {
		t.Errorf("a*2 with one a node free placed on %v", got)
	}
	if len(p.Reservations) == 0 || p.Reservations[0].JobID != 2 {
		t.Fatalf("reservations = %+v, want one for job 2", p.Reservations)
	}
	res := p.Reservations[0]
	if len(res.Nodes) != 4 || !slices.Contains(res.Nodes, "a1") || !slices.Contains(res.Nodes, "a2") || !res.Start.Equal(t0.Add(time.Hour)) {
		t.Errorf("reservation = %+v, want 4 nodes with a1 and a2 from t0+1h", res)
	}
}

// TestFeasibleFeatureCounts: a count more nodes ask for than the
// partition has with the feature is refused, naming the feature and how
// many there are; counts that can be met are not.
func TestFeasibleFeatureCounts(t *testing.T) {
	const h100 = "NVIDIA H100 80GB HBM3"
	nodes := []*api.Node{featured("a", h100, "a", "ib"), featured("b", h100, "a"), featured("c", h100, "ib"), featured("d", h100, "ib")}
	tests := []struct {
		spec *api.JobSpec
		want string // "" feasible, else a substring of the error
	}{
		{&api.JobSpec{NodesMin: 4, Constraint: "a*2"}, ""},
		{&api.JobSpec{NodesMin: 2, Constraint: "[a*1&ib*1]"}, ""},
		{&api.JobSpec{NodesMin: 4, Constraint: "a*3"}, `--constraint=a*3: a*3 asks for 3 nodes with feature "a" but partition "batch" has 2`},
		// b lacks ib, so only one node meets ib and has a.
		{&api.JobSpec{NodesMin: 3, Constraint: "ib&a*2"}, `has 1`},
		{&api.JobSpec{NodesMin: 2, Constraint: "[b*1&a*1]"}, `feature "b"`},
	}
	for _, tt := range tests {
		err := Feasible(nodes, tt.spec)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Feasible(%+v) = %v, want nil", tt.spec, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Feasible(%+v) = %v, want an error containing %q", tt.spec, err, tt.want)
		}
	}
}
