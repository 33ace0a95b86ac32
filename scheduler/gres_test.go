package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"pgregory.net/rapid"
)

// gresNode is node with generic resources.
func gresNode(name string, gres map[string]uint64) *api.Node {
	n := node(name, 8, 64)
	n.Gres = gres
	return n
}

// runningGres is a running job holding gres on the nodes of its ranks, as
// the scheduler records it.
func runningGres(id uint64, spec *api.JobSpec, start time.Time, ranks ...*api.Rank) *api.Job {
	j := running(id, spec, start, ranks...)
	j.Allocation.GresPerNode = spec.GresPerNode
	for _, r := range ranks {
		j.Allocation.Nodes = append(j.Allocation.Nodes, r.Node)
	}
	return j
}

// TestGresNeverShared: two jobs that each ask 200 of a node's 300 nvme
// never run on the node together, however many GPUs and CPUs it has
// free; with a second node they run side by side.
func TestGresNeverShared(t *testing.T) {
	spec := func() *api.JobSpec { return &api.JobSpec{GresPerNode: map[string]uint64{"nvme": 200}} }
	v := &View{Nodes: []*api.Node{gresNode("a", map[string]uint64{"nvme": 300})},
		Jobs: []*api.Job{pending(1, spec()), pending(2, spec())}}
	p := Schedule(v, time.Unix(0, 0), Config{})
	if len(p.Placements) != 1 || p.Placements[0].JobId != 1 {
		t.Fatalf("placements = %v, want job 1 alone", p.Placements)
	}
	if got := p.Placements[0].Allocation.GresPerNode["nvme"]; got != 200 {
		t.Errorf("allocation holds nvme:%d, want 200", got)
	}
	if r := reasonOf(p, 2); r != ReasonResources {
		t.Errorf("job 2: %s, want %s", r, ReasonResources)
	}
	// The next cycle counts what job 1 holds.
	v = apply(v, p)
	if p := Schedule(v, time.Unix(1, 0), Config{}); len(p.Placements) != 0 {
		t.Fatalf("second cycle placed %v beside job 1", p.Placements)
	}

	v = &View{Nodes: []*api.Node{gresNode("a", map[string]uint64{"nvme": 300}), gresNode("b", map[string]uint64{"nvme": 300})},
		Jobs: []*api.Job{pending(1, spec()), pending(2, spec())}}
	p = Schedule(v, time.Unix(0, 0), Config{})
	on := placedOn(p)
	if len(on) != 2 || on[1][0] == on[2][0] {
		t.Fatalf("placed on %v, want jobs 1 and 2 on different nodes", on)
	}
}

// TestGresUnknownAndLacking: a job asking for a generic resource no node
// has, or more than any node has, is never placed; one node lacking it
// sends the job to the node that has it.
func TestGresUnknownAndLacking(t *testing.T) {
	v := &View{Nodes: []*api.Node{node("a", 8, 64), gresNode("b", map[string]uint64{"nvme": 100})},
		Jobs: []*api.Job{
			pending(1, &api.JobSpec{GresPerNode: map[string]uint64{"lic": 1}}),
			pending(2, &api.JobSpec{GresPerNode: map[string]uint64{"nvme": 101}}),
			pending(3, &api.JobSpec{GresPerNode: map[string]uint64{"nvme": 100}}),
		}}
	p := Schedule(v, time.Unix(0, 0), Config{})
	on := placedOn(p)
	if len(on) != 1 || on[3][0] != "b" {
		t.Fatalf("placed %v, want job 3 alone, on b", on)
	}
}

// TestGresReservationHonoured: a waiting job's reservation holds the
// generic resources it will need; a later job that would still hold them
// at the reservation's start is not backfilled, one that ends before is.
func TestGresReservationHonoured(t *testing.T) {
	t0 := time.Unix(100_000, 0)
	a := gresNode("a", map[string]uint64{"nvme": 300})
	holder := runningGres(1, &api.JobSpec{GresPerNode: map[string]uint64{"nvme": 100}, TimeLimitS: 3600}, t0, gpuRank("a"))
	big := pending(2, &api.JobSpec{GresPerNode: map[string]uint64{"nvme": 300}, TimeLimitS: 3600})
	long := pending(3, &api.JobSpec{GresPerNode: map[string]uint64{"nvme": 100}, TimeLimitS: 7200})
	short := pending(4, &api.JobSpec{GresPerNode: map[string]uint64{"nvme": 100}, TimeLimitS: 1800})
	v := &View{Nodes: []*api.Node{a}, Jobs: []*api.Job{holder, big, long, short}}
	p := Schedule(v, t0, Config{Order: OrderFIFO})
	if len(p.Reservations) == 0 || p.Reservations[0].JobID != 2 || !p.Reservations[0].Start.Equal(t0.Add(time.Hour)) {
		t.Fatalf("reservations = %+v, want job 2's first, at %v", p.Reservations, t0.Add(time.Hour))
	}
	for _, r := range p.Reservations[1:] {
		if r.JobID == 3 && r.Start.Before(t0.Add(2*time.Hour)) {
			t.Errorf("job 3 reserved from %v, while job 2 holds all nvme until %v", r.Start, t0.Add(2*time.Hour))
		}
	}
	if r := reasonOf(p, 3); r == "placed" {
		t.Errorf("job 3 (2 h) was backfilled onto nvme job 2 has reserved from 1 h")
	}
	if r := reasonOf(p, 4); r != "placed" {
		t.Errorf("job 4 (30 min): %s, want placed before job 2's reservation", r)
	}
}

// TestGresPreemption: a higher QoS preempts a job for the generic
// resources it holds when the node's GPUs and CPUs are free already.
func TestGresPreemption(t *testing.T) {
	t0 := time.Unix(100_000, 0)
	cfg := Config{QOS: map[string]QOS{"high": {Priority: 10, Preempt: []string{"low"}}, "low": {}}}
	low := runningGres(1, &api.JobSpec{GresPerNode: map[string]uint64{"nvme": 200}, Qos: "low"}, t0.Add(-time.Hour), gpuRank("a"))
	high := pending(2, &api.JobSpec{GresPerNode: map[string]uint64{"nvme": 200}, Qos: "high"})
	v := &View{Nodes: []*api.Node{gresNode("a", map[string]uint64{"nvme": 300})}, Jobs: []*api.Job{low, high}}
	p := Schedule(v, t0, cfg)
	if len(p.Preemptions) != 1 || p.Preemptions[0].JobId != 1 || p.Preemptions[0].ForJobId != 2 {
		t.Fatalf("preemptions = %v, want job 1 for job 2", p.Preemptions)
	}
}

func TestFeasibleGres(t *testing.T) {
	nodes := []*api.Node{gresNode("a", map[string]uint64{"nvme": 3600, "license_x": 4}), node("b", 8, 64)}
	nodes[1].Partitions = []string{"cpu"}
	tests := []struct {
		gres map[string]uint64
		part string
		want string // "" feasible, else a substring of the error
	}{
		{map[string]uint64{"nvme": 200}, "", ""},
		{map[string]uint64{"nvme": 3600, "license_x": 4}, "", ""},
		{map[string]uint64{"scratch": 1}, "", `--gres=scratch:1: no node has generic resource "scratch" (the cluster has: license_x,nvme)`},
		{map[string]uint64{"nvme": 3601}, "", `a node needs nvme:3601 but the most any node of partition "batch" has is 3600`},
		{map[string]uint64{"nvme": 1}, "cpu", `a node needs nvme:1 but the most any node of partition "cpu" has is 0`},
	}
	for _, tt := range tests {
		spec := &api.JobSpec{GresPerNode: tt.gres, Partition: tt.part}
		err := Feasible(nodes, spec)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Feasible(--gres=%s) = %v, want nil", api.FormatGres(tt.gres), err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Feasible(--gres=%s) = %v, want an error containing %q", api.FormatGres(tt.gres), err, tt.want)
		}
	}
}

// TestPropertyGresNeverOversubscribed: whatever jobs come and go, the
// generic resources that running jobs hold on a node never exceed what it
// has, and every running job holds what it asked for on each of its nodes.
func TestPropertyGresNeverOversubscribed(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		now := time.Unix(1_000_000, 0)
		v := &View{}
		for i := range rapid.IntRange(1, 4).Draw(rt, "nodes") {
			g := map[string]uint64{"nvme": uint64(rapid.IntRange(0, 400).Draw(rt, "nvme"))}
			if rapid.Bool().Draw(rt, "lic") {
				g["lic"] = uint64(rapid.IntRange(1, 3).Draw(rt, "lics"))
			}
			v.Nodes = append(v.Nodes, gresNode(fmt.Sprint("n", i), g))
		}
		for id := uint64(1); id <= uint64(rapid.IntRange(1, 25).Draw(rt, "jobs")); id++ {
			spec := &api.JobSpec{TimeLimitS: int64(rapid.IntRange(1, 20).Draw(rt, "limit")) * 100,
				NodesMin:    uint32(rapid.IntRange(1, len(v.Nodes)).Draw(rt, "N")),
				GresPerNode: map[string]uint64{"nvme": uint64(rapid.IntRange(1, 300).Draw(rt, "want"))}}
			if rapid.Bool().Draw(rt, "wantlic") {
				spec.GresPerNode["lic"] = 1
			}
			spec.GpusPerNode = uint32(rapid.IntRange(0, 2).Draw(rt, "gpus"))
			qos := rapid.SampledFrom([]string{"", "low", "high"}).Draw(rt, "qos")
			spec.Qos = qos
			v.Jobs = append(v.Jobs, pending(id, spec))
		}
		cfg := Config{Order: OrderFIFO, ReserveDepth: rapid.IntRange(1, 4).Draw(rt, "K"), BackfillWindow: 1000 * time.Hour,
			QOS: map[string]QOS{"high": {Priority: 10, Preempt: []string{"low"}}, "low": {}}}
		ends := map[uint64]time.Time{}
		for step := 0; step < 100; step++ {
			p := Schedule(v, now, cfg)
			v = applyAt(v, p, now)
			held := map[string]map[string]uint64{}
			for _, j := range v.Jobs {
				if !j.HoldsResources() {
					continue
				}
				a := j.Allocation
				for g, n := range j.Spec.GresPerNode {
					if a.GresPerNode[g] < n {
						rt.Fatalf("job %d holds %s:%d, asked for %d", j.Id, g, a.GresPerNode[g], n)
					}
				}
				for _, name := range a.Nodes {
					if held[name] == nil {
						held[name] = map[string]uint64{}
					}
					for g, n := range a.GresPerNode {
						held[name][g] += n
					}
				}
				if j.State == api.JobState_RUNNING {
					ends[j.Id] = time.UnixMilli(j.StartUnixMs).Add(time.Duration(j.Spec.TimeLimitS) * time.Second)
				}
			}
			for _, n := range v.Nodes {
				for g, h := range held[n.Name] {
					if h > n.Gres[g] {
						rt.Fatalf("step %d: node %s: running jobs hold %s:%d of %d", step, n.Name, g, h, n.Gres[g])
					}
				}
			}
			// Preempted jobs stop at once; the next end ends its jobs.
			next := time.Time{}
			for _, e := range ends {
				if next.IsZero() || e.Before(next) {
					next = e
				}
			}
			if next.IsZero() && len(p.Preemptions) == 0 {
				break
			}
			if !next.IsZero() {
				now = next
			}
			var kept []*api.Job
			for _, j := range v.Jobs {
				if e, ok := ends[j.Id]; ok && !e.After(now) {
					delete(ends, j.Id)
					continue
				}
				if j.State == api.JobState_PENDING && j.Allocation != nil {
					// A preempted job's ranks have stopped: it waits again.
					delete(ends, j.Id)
					j = &api.Job{Id: j.Id, Spec: j.Spec, State: api.JobState_PENDING, SubmitUnixMs: j.SubmitUnixMs}
				}
				kept = append(kept, j)
			}
			v = &View{Nodes: v.Nodes, Jobs: kept}
		}
	})
}
