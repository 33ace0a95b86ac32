package server

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/state"
)

// TestSubmitFeatureCounts: a --constraint with node counts is accepted
// when the partition's nodes can meet it, and refused at submit, naming
// the feature and how many nodes have it, when they cannot; counts that
// add up past --nodes are refused naming the option.
func TestSubmitFeatureCounts(t *testing.T) {
	e := newAuthzEnv(t) // node1, without features
	for _, name := range []string{"node2", "node3"} {
		n := testNode(name)
		n.Features = []string{"big"}
		if _, err := e.s.apply(ctx(t), state.CmdRegisterNode, &api.RegisterNodeCommand{Node: n}); err != nil {
			t.Fatal(err)
		}
	}
	spec := func(constraint string, nodes uint32) *api.JobSpec {
		return &api.JobSpec{Script: "#!/bin/sh\n", Constraint: constraint, NodesMin: nodes, Hold: true}
	}
	e.submit(alice, &api.SubmitRequest{Spec: spec("big*2", 3)})
	e.submit(alice, &api.SubmitRequest{Spec: spec("big*1", 2)})
	jobs := apirpc.NewJobServiceClient(e.user(alice))
	for _, tt := range []struct {
		spec *api.JobSpec
		want string
	}{
		{spec("big*3", 3), `big*3 asks for 3 nodes with feature "big" but partition`},
		{spec("big*2", 1), "--constraint=big*2: the counts add up to 2 nodes, more than --nodes=1"},
		{spec("big*2|x", 3), "can only be joined by '&'"},
	} {
		_, err := jobs.Submit(ctx(t), &api.SubmitRequest{Spec: tt.spec})
		wantCode(t, tt.want, err, codes.InvalidArgument)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("submitting --constraint=%s --nodes=%d: %v, want %q", tt.spec.Constraint, tt.spec.NodesMin, err, tt.want)
		}
	}
}
