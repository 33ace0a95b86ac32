//go:build e2e

// Package failover checks whole-gang failure handling with real processes:
// when a node of a running gang dies, gossip tells the leader, the gang is
// stopped everywhere, requeued with a new generation and completes on the
// remaining nodes; the dead node comes back IDLE.
package failover

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/test/cluster"
)

// gangScript records each rank's pid per generation; the first generation
// waits to be killed, the requeued one finishes.
const gangScript = `#!/bin/sh
echo "$$ $SLURMD_NODENAME" > "pid-$RANK-g$LOOM_GENERATION"
if [ "$LOOM_RESTART_COUNT" = 0 ]; then exec sleep 300; fi
sleep 1
`

// pidFile reads the pid and node a rank of generation gen recorded; ok is
// false until the file holds both (the shell creates it before writing).
func pidFile(dir string, rank int, gen uint64) (pid int, node string, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("pid-%d-g%d", rank, gen)))
	if err != nil {
		return 0, "", false
	}
	n, _ := fmt.Sscan(string(b), &pid, &node)
	return pid, node, n == 2 && pid > 0
}

func readPid(t *testing.T, dir string, rank int, gen uint64) (int, string) {
	t.Helper()
	pid, node, ok := pidFile(dir, rank, gen)
	if !ok {
		t.Fatalf("pid-%d-g%d holds no pid and node", rank, gen)
	}
	return pid, node
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestAgentKillRequeuesGang(t *testing.T) {
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	os.MkdirAll(work, 0o755)
	c := cluster.StartGossiping(t, dir, 3, 3)
	servers, agents, jobs, nodes := c.Servers, c.Agents, c.Jobs, c.Nodes
	id := cluster.SubmitRetrying(t, jobs, &api.SubmitRequest{
		Spec:             &api.JobSpec{Name: "gang", NodesMin: 2, NtasksPerNode: 1, GpusPerNode: 8, Script: gangScript, WorkingDir: work, EveryRank: true},
		IdempotencyToken: "failover-gang",
	}, 20*time.Second)
	get := func() *api.Job { return cluster.Job(t, jobs, id) }
	cluster.WaitFor(t, "the gang to run", 30*time.Second, func() bool {
		j := get()
		if j == nil || j.State != api.JobState_RUNNING {
			return false
		}
		_, _, ok0 := pidFile(work, 0, 1)
		_, _, ok1 := pidFile(work, 1, 1)
		return ok0 && ok1
	})
	survivorPid, survivorNode := readPid(t, work, 0, 1)
	victimPid, victimNode := readPid(t, work, 1, 1)

	// The victim node dies: its agent and its rank, at once.
	t.Logf("killing %s (rank 1) while %s runs rank 0", victimNode, survivorNode)
	agents[victimNode].Kill()
	syscall.Kill(victimPid, syscall.SIGKILL)
	killed := time.Now()

	var j *api.Job
	cluster.WaitFor(t, "the requeued gang to complete", 60*time.Second, func() bool {
		j = get()
		return j != nil && j.State.Terminal() && !j.HoldsResources()
	})
	t.Logf("job ended %s after %s", j.State, time.Since(killed).Round(time.Millisecond))
	if j.State != api.JobState_COMPLETED || j.RestartCount != 1 || j.Allocation.Generation != 2 {
		t.Fatalf("job: %s restarts %d generation %d (%s), want COMPLETED 1 2\n%s", j.State, j.RestartCount, j.Allocation.Generation, j.Reason, servers[0].Tail())
	}
	for _, n := range j.Allocation.Nodes {
		if n == victimNode {
			t.Fatalf("requeued gang placed on the dead node %s", n)
		}
	}
	if alive(survivorPid) {
		t.Fatalf("rank 0 of generation 1 (pid %d on %s) still runs after the gang was requeued", survivorPid, survivorNode)
	}

	r, err := nodes.GetNode(cluster.Ctx(t), &api.GetNodeRequest{Name: victimNode})
	if err != nil || r.State != api.NodeState_DOWN || !strings.HasPrefix(r.Node.Reason, "gossip: ") {
		t.Fatalf("dead node: %v %v, want DOWN with a gossip reason", r, err)
	}
	agents[victimNode].Restart(t)
	cluster.WaitFor(t, "the restarted node to come back IDLE", 30*time.Second, func() bool {
		r, err := nodes.GetNode(cluster.Ctx(t), &api.GetNodeRequest{Name: victimNode})
		return err == nil && r.State == api.NodeState_IDLE
	})
	all, err := jobs.ListJobs(cluster.Ctx(t), &api.ListJobsRequest{All: true})
	if err != nil || len(all.Jobs) != 1 {
		t.Fatalf("jobs after the failover: %d (err %v), want exactly 1", len(all.Jobs), err)
	}
}
