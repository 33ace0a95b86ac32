package state

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
)

// TestPlanRefusesGresOversubscription: the FSM's re-check of a plan
// counts generic resources as it counts GPUs: a placement that would hold
// more of a node's nvme than it has is refused, within one plan and
// against what running jobs hold, and so is an allocation that holds less
// than its job asked for.
func TestPlanRefusesGresOversubscription(t *testing.T) {
	f := NewTestFSM()
	n := TestNode("n1", 2, 8)
	n.Gres = map[string]uint64{"nvme": 300}
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: n})
	spec := func() *api.JobSpec { return &api.JobSpec{Script: "x", GresPerNode: map[string]uint64{"nvme": 200}} }
	first, second, third := submit(f, "", spec()).JobID, submit(f, "", spec()).JobID, submit(f, "", spec()).JobID
	alloc := func(port uint32, gres uint64) *api.Allocation {
		a := &api.Allocation{Ranks: []*api.Rank{{Node: "n1", Cpus: 1, Port: port}}, Nodes: []string{"n1"}}
		if gres != 0 {
			a.GresPerNode = map[string]uint64{"nvme": gres}
		}
		return a
	}
	res := f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{
		{JobId: first, Allocation: alloc(29500, 200)},
		{JobId: second, Allocation: alloc(29502, 200)},
	}})
	if res.Placed != 1 || res.Rejected != 1 {
		t.Fatalf("two nvme:200 on a node of 300 in one plan: placed %d, rejected %d; want 1 and 1", res.Placed, res.Rejected)
	}
	res = f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: second, Allocation: alloc(29504, 200)}}})
	if res.Placed != 0 || res.Rejected != 1 {
		t.Fatalf("nvme:200 beside a running nvme:200: placed %d, rejected %d; want 0 and 1", res.Placed, res.Rejected)
	}
	snap := f.Store.View()
	if got := snap.Usage()["n1"].Gres["nvme"]; got != 200 {
		t.Errorf("usage of n1: nvme %d, want 200", got)
	}
	if s := snap.Job(second).State; s != api.JobState_PENDING {
		t.Errorf("job %d: %s, want PENDING", second, s)
	}
	// An allocation without the gres its job asks for is refused too.
	res = f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: third, Allocation: alloc(29506, 0)}}})
	if res.Placed != 0 {
		t.Fatalf("an allocation holding no nvme for a job asking nvme:200 was placed")
	}
}

func TestCheckPlacementNamesGres(t *testing.T) {
	f := NewTestFSM()
	n := TestNode("n1", 2, 8)
	n.Gres = map[string]uint64{"nvme": 100}
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: n})
	id := submit(f, "", &api.JobSpec{Script: "x", GresPerNode: map[string]uint64{"nvme": 150}}).JobID
	a := &api.Allocation{Ranks: []*api.Rank{{Node: "n1", Cpus: 1, Port: 29500}}, Nodes: []string{"n1"}, GresPerNode: map[string]uint64{"nvme": 150}}
	tx := f.Store.View().txn(0)
	err := checkPlacement(tx, tx.job(id), a, tx.base.Usage())
	if err == nil || !strings.Contains(err.Error(), "n1 has 100 of 100 nvme free, needs 150") {
		t.Fatalf("checkPlacement = %v, want it to say n1 has 100 of 100 nvme free, needs 150", err)
	}
}

// TestGresSurvivesSnapshot: a node's generic resources, a job's request
// and what its allocation holds come back from a snapshot, and so does
// the usage counted from them.
func TestGresSurvivesSnapshot(t *testing.T) {
	f := NewTestFSM()
	n := TestNode("n1", 2, 8)
	n.Gres = map[string]uint64{"nvme": 300, "license_x": 4}
	f.Apply(CmdRegisterNode, &api.RegisterNodeCommand{Node: n})
	id := submit(f, "", &api.JobSpec{Script: "x", GresPerNode: map[string]uint64{"nvme": 200}}).JobID
	f.Apply(CmdApplyPlan, &api.PlanCommand{Placements: []*api.Placement{{JobId: id, Allocation: &api.Allocation{
		Ranks: []*api.Rank{{Node: "n1", Cpus: 1, Port: 29500}}, Nodes: []string{"n1"}, GresPerNode: map[string]uint64{"nvme": 200}}}}})
	before, err := f.Store.View().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g := NewTestFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(before))); err != nil {
		t.Fatal(err)
	}
	v := g.Store.View()
	if got := api.FormatGres(v.Node("n1").Gres); got != "license_x:4,nvme:300" {
		t.Errorf("restored node gres %q, want license_x:4,nvme:300", got)
	}
	j := v.Job(id)
	if j.Spec.GresPerNode["nvme"] != 200 || j.Allocation.GresPerNode["nvme"] != 200 {
		t.Errorf("restored job: spec %v, allocation %v; want nvme:200 in both", j.Spec.GresPerNode, j.Allocation.GresPerNode)
	}
	if got := v.Usage()["n1"].Gres["nvme"]; got != 200 {
		t.Errorf("restored usage of n1: nvme %d, want 200", got)
	}
}

// TestStepGresWithinJob: a step may ask for no more of a generic resource
// than its job holds on each node.
func TestStepGresWithinJob(t *testing.T) {
	f := NewTestFSM()
	allocationJob(t, f, &api.JobSpec{Script: "x"})
	res := createStep(f, &api.JobSpec{GresPerNode: map[string]uint64{"nvme": 1}})
	if res.Err == nil || !strings.Contains(res.Err.Error(), "--gres: the step asks for nvme:1 per node and the job holds nvme:0") {
		t.Fatalf("step asking nvme:1 of a job holding none: %v, want a refusal naming --gres", res.Err)
	}
}
