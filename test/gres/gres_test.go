//go:build e2e

// Package gres runs agents that declare generic resources (loom agent
// --gres) and a GPU type (--gpu-type), and checks that jobs asking for
// them land only where they fit, never more than a node has at once, and
// that a resource no node has is refused at submit.
package gres

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
)

func startAgent(t *testing.T, dir, name, profile string, ports int, srv *cluster.Server, extra ...string) {
	t.Helper()
	args, err := harness.Agent{Name: name, Dir: dir, Profile: profile, Ports: ports, Servers: cluster.Addrs([]*cluster.Server{srv}),
		ClientAddr: strings.Join(cluster.Clients([]*cluster.Server{srv}), ","), PKI: cluster.PKI(t, dir)}.Args()
	if err != nil {
		t.Fatal(err)
	}
	cluster.Start(t, dir, name, append(args, extra...)...)
}

func TestGresOnAgents(t *testing.T) {
	logs := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"node0", "node1", "server"} {
				b, _ := os.ReadFile(filepath.Join(logs, name+".log"))
				t.Logf("%s.log:\n%s", name, b)
			}
		}
	})
	work := cluster.OpenDir(t, "loom-gres-")
	srv := cluster.StartServer(t, logs, "server")
	startAgent(t, logs, "node0", "dgx-h100", 30000, srv, "--gres=nvme:300,license_x:2")
	startAgent(t, logs, "node1", "", 30200, srv, "--gpus=2", "--gpu-type=a100", "--gres=nvme:100")
	jobs, nodes := cluster.Client(t, srv.Client())
	var listed []*api.NodeInfo
	cluster.WaitFor(t, "both agents to register", 30*time.Second, func() bool {
		r, err := nodes.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		listed = r.GetNodes()
		return err == nil && len(listed) == 2
	})
	for _, n := range listed {
		want := map[string]string{"node0": "license_x:2,nvme:300", "node1": "nvme:100"}[n.GetNode().GetName()]
		if got := api.FormatGres(n.GetNode().GetGres()); got != want {
			t.Errorf("node %s gres = %q, want %q", n.GetNode().GetName(), got, want)
		}
	}

	gate := filepath.Join(work, "go")
	env := map[string]string{"PATH": os.Getenv("PATH")}
	submit := func(token string, spec *api.JobSpec) (uint64, error) {
		spec.WorkingDir, spec.Env = work, env
		if spec.Script == "" {
			spec.Script = "#!/bin/sh\nwhile [ ! -e " + gate + " ]; do sleep 0.1; done\n"
		}
		r, err := jobs.Submit(cluster.Ctx(t), &api.SubmitRequest{Spec: spec, IdempotencyToken: token})
		return r.GetJobId(), err
	}
	if _, err := submit("unknown", &api.JobSpec{GresPerNode: map[string]uint64{"scratch": 1}}); err == nil ||
		!strings.Contains(err.Error(), `no node has generic resource "scratch" (the cluster has: license_x,nvme)`) {
		t.Errorf("submit --gres=scratch:1 = %v, want a refusal listing license_x,nvme", err)
	}
	if _, err := submit("too-much", &api.JobSpec{GresPerNode: map[string]uint64{"nvme": 301}}); err == nil ||
		!strings.Contains(err.Error(), "a node needs nvme:301 but the most any node") {
		t.Errorf("submit --gres=nvme:301 = %v, want a refusal naming nvme:301", err)
	}

	first, err := submit("first", &api.JobSpec{GresPerNode: map[string]uint64{"nvme": 200}})
	if err != nil {
		t.Fatal(err)
	}
	second, err := submit("second", &api.JobSpec{GresPerNode: map[string]uint64{"nvme": 200}})
	if err != nil {
		t.Fatal(err)
	}
	typed, err := submit("typed", &api.JobSpec{GpusPerNode: 1, GpuType: "a100", Script: "#!/bin/sh\ntrue\n"})
	if err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, "the first nvme:200 job to run and the second to wait on Resources", 30*time.Second, func() bool {
		return cluster.Job(t, jobs, first).GetState() == api.JobState_RUNNING && cluster.Job(t, jobs, second).GetReason() == "Resources"
	})
	if got := cluster.Job(t, jobs, first).GetAllocation().GetNodes(); !slices.Equal(got, []string{"node0"}) {
		t.Errorf("nvme:200 job placed on %v, want [node0] (node1 has 100)", got)
	}
	cluster.WaitFor(t, "the a100 job to be placed", 30*time.Second, func() bool {
		return len(cluster.Job(t, jobs, typed).GetAllocation().GetNodes()) > 0
	})
	if got := cluster.Job(t, jobs, typed).GetAllocation().GetNodes(); !slices.Equal(got, []string{"node1"}) {
		t.Errorf("--gres=gpu:a100 job placed on %v, want [node1] (--gpu-type=a100)", got)
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, "both nvme:200 jobs to complete", 60*time.Second, func() bool {
		return cluster.Job(t, jobs, first).GetState() == api.JobState_COMPLETED && cluster.Job(t, jobs, second).GetState() == api.JobState_COMPLETED
	})
	a, b := cluster.Job(t, jobs, first), cluster.Job(t, jobs, second)
	if b.GetStartUnixMs() < a.GetEndUnixMs() {
		t.Errorf("the second nvme:200 job started at %d, before the first ended at %d: node0's 300 nvme were held twice", b.GetStartUnixMs(), a.GetEndUnixMs())
	}
}
