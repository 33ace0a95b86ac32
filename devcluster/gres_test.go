package devcluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
)

// TestGresScheduling: agents given --gres nvme:300 take jobs asking for
// nvme:200 one at a time each: of three such jobs two run, on different
// nodes, and the third waits for one of them to end. A --gres naming a
// resource no node has is refused at submit, listing those there are.
func TestGresScheduling(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and runs jobs")
	}
	c, jobs := startClusterWith(t, Options{Agents: 2, Gres: map[string]uint64{"nvme": 300}})
	conn, err := harness.Dial(c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	nodes := apirpc.NewNodeServiceClient(conn)

	_, err = jobs.Submit(context.Background(), &api.SubmitRequest{Spec: &api.JobSpec{Script: "#!/bin/sh\ntrue\n",
		WorkingDir: t.TempDir(), GresPerNode: map[string]uint64{"scratch": 1}}})
	if err == nil || !strings.Contains(err.Error(), `no node has generic resource "scratch" (the cluster has: nvme)`) {
		t.Fatalf("submit --gres=scratch:1 = %v, want a refusal listing nvme", err)
	}

	dir := t.TempDir()
	gate := filepath.Join(dir, "go")
	var ids []uint64
	for range 3 {
		ids = append(ids, submit(t, jobs, &api.JobSpec{GpusPerNode: 1, GresPerNode: map[string]uint64{"nvme": 200}, WorkingDir: dir,
			Script: "#!/bin/sh\nwhile [ ! -e " + gate + " ]; do sleep 0.05; done\n"}))
	}
	harness.WaitFor(t, "two jobs running and the third waiting on Resources", 20*time.Second, func() bool {
		running, waiting := 0, 0
		for _, id := range ids {
			j := getJob(t, jobs, id)
			switch {
			case j.State == api.JobState_RUNNING:
				running++
			case j.State == api.JobState_PENDING && j.Reason == "Resources":
				waiting++
			}
		}
		return running == 2 && waiting == 1
	})
	on := map[string]uint64{}
	for _, id := range ids {
		j := getJob(t, jobs, id)
		if j.State != api.JobState_RUNNING {
			continue
		}
		if got := j.Allocation.GresPerNode["nvme"]; got != 200 {
			t.Errorf("job %d holds nvme:%d, want 200", id, got)
		}
		n := j.Allocation.Nodes[0]
		if other, ok := on[n]; ok {
			t.Fatalf("jobs %d and %d both hold nvme:200 of node %s's 300", other, id, n)
		}
		on[n] = id
	}
	resp, err := nodes.ListNodes(context.Background(), &api.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range resp.Nodes {
		if n.Node.Gres["nvme"] != 300 || n.GresAllocated["nvme"] != 200 {
			t.Errorf("node %s: gres %v allocated %v, want nvme 300 with 200 allocated", n.Node.Name, n.Node.Gres, n.GresAllocated)
		}
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if j := waitDone(t, jobs, id); j.State != api.JobState_COMPLETED {
			t.Errorf("job %d ended %s, want COMPLETED", id, j.State)
		}
	}
}
