//go:build e2e

// Package features runs agents that declare node features and checks that
// jobs with --constraint (node counts too) or a GPU type land only on
// matching nodes, and that one no node can meet is refused at submit.
package features

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
)

func startAgent(t *testing.T, dir, name, profile string, ports int, srv *cluster.Server, features string) {
	t.Helper()
	args, err := harness.Agent{Name: name, Dir: dir, Profile: profile, Ports: ports, Servers: cluster.Addrs([]*cluster.Server{srv}),
		ClientAddr: strings.Join(cluster.Clients([]*cluster.Server{srv}), ","), PKI: cluster.PKI(t, dir)}.Args()
	if err != nil {
		t.Fatal(err)
	}
	cluster.Start(t, dir, name, append(args, "--features="+features)...)
}

func TestConstraintPlacesOnFeaturedNodes(t *testing.T) {
	logs := t.TempDir()
	work := cluster.OpenDir(t, "loom-features-")
	srv := cluster.StartServer(t, logs, "server")
	startAgent(t, logs, "node0", "dgx-a100", 30000, srv, "ib,rack1")
	startAgent(t, logs, "node1", "dgx-h100", 30200, srv, "rack2")
	jobs, nodes := cluster.Client(t, srv.Client())
	var listed []*api.NodeInfo
	cluster.WaitFor(t, "both agents to register", 30*time.Second, func() bool {
		r, err := nodes.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		listed = r.GetNodes()
		return err == nil && len(listed) == 2
	})
	for _, n := range listed {
		want := map[string][]string{"node0": {"ib", "rack1", "a100"}, "node1": {"rack2", "h100"}}[n.GetNode().GetName()]
		if got := n.GetNode().AllFeatures(); !slices.Equal(got, want) {
			t.Errorf("node %s features = %q, want %q", n.GetNode().GetName(), got, want)
		}
	}

	env := map[string]string{"PATH": os.Getenv("PATH")}
	submit := func(token string, spec *api.JobSpec) (uint64, error) {
		spec.WorkingDir, spec.Env, spec.Script = work, env, "#!/bin/sh\nsleep 1\n"
		spec.NodesMin = max(spec.NodesMin, 1)
		r, err := jobs.Submit(cluster.Ctx(t), &api.SubmitRequest{Spec: spec, IdempotencyToken: token})
		return r.GetJobId(), err
	}
	placedOn := func(id uint64) []string {
		var a []string
		cluster.WaitFor(t, "the job to be placed", 30*time.Second, func() bool {
			a = cluster.Job(t, jobs, id).GetAllocation().GetNodes()
			return len(a) > 0
		})
		return a
	}
	for _, tt := range []struct {
		name string
		spec *api.JobSpec
		want string
	}{
		{"declared", &api.JobSpec{GpusPerNode: 1, Constraint: "rack2"}, "node1"},
		{"declared and derived", &api.JobSpec{GpusPerNode: 1, Constraint: "ib&a100"}, "node0"},
		{"GPU type", &api.JobSpec{GpusPerNode: 1, GpuType: "h100"}, "node1"},
	} {
		id, err := submit(tt.name, tt.spec)
		if err != nil {
			t.Fatalf("%s: submit: %v", tt.name, err)
		}
		if got := placedOn(id); !slices.Equal(got, []string{tt.want}) {
			t.Errorf("%s: job placed on %v, want [%s]", tt.name, got, tt.want)
		}
	}
	// Node counts: one node with ib, another with rack2.
	id, err := submit("counts", &api.JobSpec{NodesMin: 2, GpusPerNode: 1, Constraint: "[ib*1&rack2*1]"})
	if err != nil {
		t.Fatalf("counts: submit: %v", err)
	}
	if got := placedOn(id); len(got) != 2 || !slices.Contains(got, "node0") || !slices.Contains(got, "node1") {
		t.Errorf("[ib*1&rack2*1]: job placed on %v, want node0 and node1", got)
	}
	for _, tt := range []struct {
		spec *api.JobSpec
		want string
	}{
		{&api.JobSpec{Constraint: "nvme"}, `--constraint=nvme: no node of partition "batch" has these features`},
		{&api.JobSpec{NodesMin: 2, Constraint: "[rack1|rack2]"}, "no 2 nodes"},
		{&api.JobSpec{GpusPerNode: 1, GpuType: "v100"}, `GPU type "v100"`},
		{&api.JobSpec{NodesMin: 2, Constraint: "rack1*2"}, `rack1*2 asks for 2 nodes with feature "rack1" but partition "batch" has 1`},
		{&api.JobSpec{Constraint: "rack1*2"}, "the counts add up to 2 nodes, more than --nodes=1"},
	} {
		if _, err := submit("bad-"+tt.spec.String(), tt.spec); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("submit %v = %v, want an error containing %q", tt.spec, err, tt.want)
		}
	}
}
