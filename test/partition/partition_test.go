//go:build e2e

// Package partition cuts a node off the network with a network namespace
// and a veth pair while its gang runs: the agent stays alive but cannot be
// reached. The gang must be requeued elsewhere, and once the partition
// heals the node must kill its old ranks rather than run them beside the
// requeued gang (fencing by generation), and come back IDLE. The test
// asserts that the stale rank really ran during the cut, that generation
// 2 avoided the cut node, and that no GPU was held by two generations at
// once, counting the stale rank as holding its GPUs until node0's death
// was committed.
package partition

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
)

const script = `#!/bin/sh
echo "$$" > "pid-$SLURMD_NODENAME-g$LOOM_GENERATION"
if [ "$LOOM_RESTART_COUNT" = 0 ]; then exec sleep 300; fi
sleep 2
`

// testNet is a namespace joined to the host by a veth pair:
// host side hostIP, namespace side nsIP.
type testNet struct {
	ns, hostIf, hostIP, nsIP string
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

func setupNet(t *testing.T) *testNet {
	harness.Require(t, "root (for network namespaces)", os.Geteuid() == 0)
	_, err := exec.LookPath("ip")
	harness.Require(t, "the ip command (apt-get install iproute2)", err == nil)
	id := os.Getpid() % 200
	n := &testNet{
		ns:     fmt.Sprintf("loomp%d", id),
		hostIf: fmt.Sprintf("lmh%d", id),
		hostIP: fmt.Sprintf("10.231.%d.1", id),
		nsIP:   fmt.Sprintf("10.231.%d.2", id),
	}
	nsIf := fmt.Sprintf("lmn%d", id)
	exec.Command("ip", "netns", "del", n.ns).Run()
	exec.Command("ip", "link", "del", n.hostIf).Run()
	ipCmd(t, "netns", "add", n.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.ns).Run() })
	ipCmd(t, "link", "add", n.hostIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { exec.Command("ip", "link", "del", n.hostIf).Run() })
	ipCmd(t, "link", "set", nsIf, "netns", n.ns)
	ipCmd(t, "addr", "add", n.hostIP+"/24", "dev", n.hostIf)
	ipCmd(t, "link", "set", n.hostIf, "up")
	ipCmd(t, "-n", n.ns, "addr", "add", n.nsIP+"/24", "dev", nsIf)
	ipCmd(t, "-n", n.ns, "link", "set", nsIf, "up")
	ipCmd(t, "-n", n.ns, "link", "set", "lo", "up")
	return n
}

func TestPartitionedNodeIsFenced(t *testing.T) {
	net := setupNet(t)
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	os.MkdirAll(work, 0o777)
	servers := cluster.StartServersOn(t, dir, 3, net.hostIP)
	// node0 lives in the namespace; node1 and node2 on the host side.
	n0 := cluster.StartIn(t, net.ns, dir, "node0", cluster.AgentArgs(t, dir, "node0", "dgx-h100", net.nsIP, 29500, servers)...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(n0.Tail())
			for _, s := range servers {
				t.Log(s.Tail())
			}
		}
	})
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("node%d", i)
		cluster.Start(t, dir, name, cluster.AgentArgs(t, dir, name, "dgx-h100", net.hostIP, 29500+100*i, servers)...)
	}
	jobs, nodes := cluster.Client(t, servers[0].Client())
	ledger := cluster.NewLedger()
	stopWatch := ledger.Watch(jobs, nodes, 50*time.Millisecond)
	defer stopWatch()
	cluster.WaitFor(t, "three registered nodes", 30*time.Second, func() bool {
		r, err := nodes.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == 3
	})
	// Keep node2 out until the gang has landed, so it spans node0 and node1.
	if _, err := nodes.DrainNode(cluster.Ctx(t), &api.NodeStateRequest{Name: "node2", Reason: "test: keep the gang on node0"}); err != nil {
		t.Fatal(err)
	}
	r, err := jobs.Submit(cluster.Ctx(t), &api.SubmitRequest{
		Spec: &api.JobSpec{Name: "fenced", NodesMin: 2, NtasksPerNode: 1, GpusPerNode: 8, Script: script, WorkingDir: work, EveryRank: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func() *api.Job {
		r, err := jobs.GetJob(cluster.Ctx(t), &api.GetJobRequest{JobId: r.JobId})
		if err != nil {
			return nil
		}
		return r.Job
	}
	stalePid := filepath.Join(work, "pid-node0-g1")
	cluster.WaitFor(t, "the gang to run on node0 and node1", 30*time.Second, func() bool {
		j := get()
		_, err := os.Stat(stalePid)
		return j != nil && j.State == api.JobState_RUNNING && err == nil
	})
	if _, err := nodes.ResumeNode(cluster.Ctx(t), &api.NodeStateRequest{Name: "node2"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(stalePid)
	var pid int
	fmt.Sscan(string(b), &pid)

	ipCmd(t, "link", "set", net.hostIf, "down")
	t.Log("node0 cut off")
	var gen2 *api.Allocation
	cluster.WaitFor(t, "the gang to run again without node0", 30*time.Second, func() bool {
		j := get()
		if j == nil || j.State != api.JobState_RUNNING || j.Allocation.Generation != 2 {
			return false
		}
		gen2 = j.Allocation
		return true
	})
	// Generation 2 must avoid the cut node, and its rank on node0 must
	// really have been running all along (the fencing below is then
	// what stops it), not have died on its own.
	for _, r := range gen2.Ranks {
		if r.Node == "node0" {
			t.Fatalf("generation 2 placed rank %d on node0, which is cut off: %v", r.Rank, gen2.Nodes)
		}
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the stale rank (pid %d) on node0 is not running during the cut: %v", pid, err)
	}
	if _, err := os.Stat(filepath.Join(work, "pid-node0-g2")); err == nil {
		t.Fatal("a generation 2 rank started on node0, which is cut off")
	}
	ipCmd(t, "link", "set", net.hostIf, "up")
	t.Log("partition healed")
	cluster.WaitFor(t, "node0 to kill its stale rank after the heal", 20*time.Second, func() bool {
		return syscall.Kill(pid, 0) != nil
	})
	cluster.WaitFor(t, "node0 to come back IDLE", 30*time.Second, func() bool {
		r, err := nodes.GetNode(cluster.Ctx(t), &api.GetNodeRequest{Name: "node0"})
		return err == nil && r.State == api.NodeState_IDLE
	})
	cluster.WaitFor(t, "the requeued gang to complete", 30*time.Second, func() bool {
		j := get()
		return j != nil && j.State.Terminal()
	})
	if j := get(); j.State != api.JobState_COMPLETED || j.RestartCount != 1 {
		t.Fatalf("job %s with %d restarts, want COMPLETED after 1", j.State, j.RestartCount)
	}
	// The stale rank still ran when generation 2 started: it must have
	// counted as holding its GPUs until node0's death was committed, and
	// no generation may have shared a GPU with another.
	stopWatch()
	if gens := ledger.Generations(r.JobId); len(gens) != 2 {
		t.Fatalf("the ledger saw %d generations of the job, want 2", len(gens))
	}
	spans, unverified, err := ledger.CheckNoGPUHeldTwice()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d GPU holdings checked, %d ends of replaced generations not seen", spans, unverified)
}
