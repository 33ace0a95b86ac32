// Package failover is `loom bench failover`: it starts real server
// and agent processes (this binary) with gossip on loopback, runs a 2-node
// gang, kills one of its nodes (agent and rank, SIGKILL) several times, and
// reports how long the leader took to mark the node DOWN (detect_ms) and
// until the gang ran again elsewhere (requeue_ms), as medians.
package failover

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"google.golang.org/grpc"
)

const gossipKey = "YmVuY2gta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU="

// Main runs the benchmark with args (without "bench failover").
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom bench failover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	agents := fs.Int("agents", 8, "agent processes (simulated DGX H100 nodes)")
	servers := fs.Int("servers", 3, "server processes")
	kills := fs.Int("kills", 5, "node kills to time")
	grace := fs.Duration("node-down-grace", time.Second, "the servers' --node-down-grace")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *agents < 3 {
		fmt.Fprintln(stderr, "loom bench failover: --agents must be at least 3 (a 2-node gang and a spare)")
		return 2
	}
	b := &bench{stdout: stdout, stderr: stderr}
	defer b.stop()
	if err := b.run(*servers, *agents, *kills, *grace); err != nil {
		fmt.Fprintln(stderr, "loom bench failover:", err)
		return 1
	}
	return 0
}

type bench struct {
	stdout, stderr io.Writer
	dir            string
	procs          []*harness.Proc
	agents         map[string]*harness.Proc
	conn           *grpc.ClientConn
}

func (b *bench) stop() {
	for _, p := range b.procs {
		p.Kill()
	}
	if b.conn != nil {
		b.conn.Close()
	}
	if b.dir != "" {
		// Ranks run in their own process groups: end any still sleeping.
		pids, _ := filepath.Glob(filepath.Join(b.dir, "work", "pid-*"))
		for _, f := range pids {
			var pid int
			if data, err := os.ReadFile(f); err == nil {
				fmt.Sscan(string(data), &pid)
			}
			if pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		os.RemoveAll(b.dir)
	}
}

func (b *bench) run(nServers, nAgents, kills int, grace time.Duration) error {
	// The servers and agents are this very binary, wherever it was run from.
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	if b.dir, err = os.MkdirTemp("", "loom-bench-failover-"); err != nil {
		return err
	}
	work := filepath.Join(b.dir, "work")
	os.MkdirAll(work, 0o755)
	ca, err := harness.NewPKI(filepath.Join(b.dir, "tls"))
	if err != nil {
		return err
	}
	keyFile, err := harness.WriteGossipKey(b.dir, gossipKey)
	if err != nil {
		return err
	}
	servers, err := harness.StartServers(bin, b.dir, nServers, "", harness.ServerOptions{
		PKI: ca, GossipKeyFile: keyFile, Flags: []string{"--node-down-grace", grace.String()}})
	if err != nil {
		return err
	}
	for _, s := range servers {
		b.procs = append(b.procs, s.Proc)
	}
	b.agents = map[string]*harness.Proc{}
	for i := 1; i <= nAgents; i++ {
		p, err := harness.Agent{Name: fmt.Sprintf("node%d", i), Dir: b.dir, Profile: "dgx-h100", Ports: 20000 + 100*i,
			Servers: harness.Addrs(servers), Gossip: harness.Gossips(servers), GossipKeyFile: keyFile, PKI: ca}.Proc(bin)
		if err != nil {
			return err
		}
		if err := p.Start(); err != nil {
			return err
		}
		b.procs = append(b.procs, p)
		b.agents[p.Name] = p
	}
	if b.conn, err = harness.Dial(servers[0].Client()); err != nil {
		return err
	}
	jobs, nodes := apirpc.NewJobServiceClient(b.conn), apirpc.NewNodeServiceClient(b.conn)
	if err := wait(60*time.Second, "every agent to register", func() bool {
		r, err := call(func(c context.Context) (*api.ListNodesResponse, error) {
			return nodes.ListNodes(c, &api.ListNodesRequest{Consistent: true})
		})
		if err != nil || len(r.Nodes) != nAgents {
			return false
		}
		for _, n := range r.Nodes {
			if n.State != api.NodeState_IDLE {
				return false
			}
		}
		return true
	}); err != nil {
		return err
	}
	fmt.Fprintf(b.stdout, "servers=%d agents=%d kills=%d node_down_grace_ms=%d\n", nServers, nAgents, kills, grace.Milliseconds())
	var detects, requeues []time.Duration
	for k := range kills {
		d, r, err := b.trial(jobs, nodes, work, k)
		if err != nil {
			return fmt.Errorf("kill %d: %w", k+1, err)
		}
		detects, requeues = append(detects, d), append(requeues, r)
		fmt.Fprintf(b.stdout, "kill_%d_detect_ms=%d kill_%d_requeue_ms=%d\n", k+1, d.Milliseconds(), k+1, r.Milliseconds())
	}
	fmt.Fprintf(b.stdout, "detect_ms=%d\n", median(detects).Milliseconds())
	fmt.Fprintf(b.stdout, "requeue_ms=%d\n", median(requeues).Milliseconds())
	return nil
}

// trial runs one gang, kills one of its nodes and times the recovery.
func (b *bench) trial(jobs apirpc.JobServiceClient, nodes apirpc.NodeServiceClient, work string, k int) (detect, requeue time.Duration, err error) {
	script := "#!/bin/sh\necho $$ > pid-$SLURMD_NODENAME-$LOOM_JOB_ID-$LOOM_GENERATION\nexec sleep 600\n"
	resp, err := call(func(c context.Context) (*api.SubmitResponse, error) {
		return jobs.Submit(c, &api.SubmitRequest{
			Spec:             &api.JobSpec{Name: "failover", NodesMin: 2, NtasksPerNode: 1, GpusPerNode: 8, Script: script, WorkingDir: work},
			IdempotencyToken: fmt.Sprintf("failover-%d-%d", os.Getpid(), k),
		})
	})
	if err != nil {
		return 0, 0, err
	}
	id := resp.JobId
	var job *api.Job
	if err := wait(30*time.Second, "the gang to run", func() bool {
		r, err := call(func(c context.Context) (*api.GetJobResponse, error) {
			return jobs.GetJob(c, &api.GetJobRequest{JobId: id, Consistent: true})
		})
		if err != nil || r.Job.State != api.JobState_RUNNING {
			return false
		}
		job = r.Job
		_, err = os.Stat(filepath.Join(work, fmt.Sprintf("pid-%s-%d-%d", job.Allocation.Nodes[1], id, job.Allocation.Generation)))
		return err == nil
	}); err != nil {
		return 0, 0, err
	}
	victim := job.Allocation.Nodes[1]
	gen := job.Allocation.Generation
	pidFile := filepath.Join(work, fmt.Sprintf("pid-%s-%d-%d", victim, id, gen))
	var rankPid int
	if data, err := os.ReadFile(pidFile); err == nil {
		fmt.Sscan(string(data), &rankPid)
	}

	killed := time.Now()
	b.agents[victim].Kill()
	if rankPid > 0 {
		syscall.Kill(rankPid, syscall.SIGKILL)
	}
	if err := wait(30*time.Second, "the node to be marked DOWN", func() bool {
		r, err := call(func(c context.Context) (*api.NodeInfo, error) {
			return nodes.GetNode(c, &api.GetNodeRequest{Name: victim})
		})
		return err == nil && r.State == api.NodeState_DOWN
	}); err != nil {
		return 0, 0, err
	}
	detect = time.Since(killed)
	if err := wait(30*time.Second, "the gang to run again", func() bool {
		r, err := call(func(c context.Context) (*api.GetJobResponse, error) {
			return jobs.GetJob(c, &api.GetJobRequest{JobId: id, Consistent: true})
		})
		return err == nil && r.Job.State == api.JobState_RUNNING && r.Job.Allocation.Generation > gen
	}); err != nil {
		return 0, 0, err
	}
	requeue = time.Since(killed)

	// Clean up for the next trial: cancel, bring the node back.
	if _, err := call(func(c context.Context) (*api.CancelResponse, error) {
		return jobs.Cancel(c, &api.CancelRequest{JobIds: []uint64{id}})
	}); err != nil {
		return 0, 0, err
	}
	if err := b.agents[victim].Start(); err != nil {
		return 0, 0, err
	}
	err = wait(60*time.Second, "the cluster to settle", func() bool {
		r, err := call(func(c context.Context) (*api.ListNodesResponse, error) {
			return nodes.ListNodes(c, &api.ListNodesRequest{Consistent: true})
		})
		if err != nil {
			return false
		}
		for _, n := range r.Nodes {
			if n.State != api.NodeState_IDLE {
				return false
			}
		}
		return true
	})
	return detect, requeue, err
}

// call runs one RPC with a timeout.
func call[T any](f func(context.Context) (T, error)) (T, error) {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f(c)
}

// wait polls cond every harness.PollInterval (10 ms): the granularity of
// the figures.
func wait(timeout time.Duration, what string, cond func() bool) error {
	return harness.Wait(context.Background(), what, timeout, cond)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
