//go:build e2e

// Package ha is the control plane's fault test: three real server
// processes take thousands of concurrent submits while the leader is
// killed with SIGKILL twice. No acknowledged job may be lost or doubled,
// every server must end with the same state, and no GPU may ever be held
// by two jobs at once.
package ha

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	clients    = 8
	totalJobs  = 2400
	killsWhile = 2
)

// outcome is one client's record of one submit.
type outcome struct {
	token string
	acked bool   // the server answered with a job id
	id    uint64 // the id it answered
	err   error  // the last error, when not acknowledged
}

type conns struct {
	jobs  []apirpc.JobServiceClient
	ops   []apirpc.OperatorClient
	close func()
}

func dial(t *testing.T, addrs []string) *conns {
	c := &conns{}
	var all []*grpc.ClientConn
	for _, a := range addrs {
		cc, err := harness.Dial(a)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, cc)
		c.jobs = append(c.jobs, apirpc.NewJobServiceClient(cc))
		c.ops = append(c.ops, apirpc.NewOperatorClient(cc))
	}
	c.close = func() {
		for _, cc := range all {
			cc.Close()
		}
	}
	return c
}

// submit is what the CLI does: go round the servers on Unavailable with the
// same token until one acknowledges, for at most budget. A call that times
// out leaves the outcome unknown (maybe applied).
func submit(c *conns, first int, budget time.Duration) outcome {
	b := make([]byte, 12)
	rand.Read(b)
	o := outcome{token: hex.EncodeToString(b)}
	req := &api.SubmitRequest{
		Spec:             &api.JobSpec{Name: "ha", GpusPerNode: 1, Script: "#!/bin/sh\ntrue\n", WorkingDir: os.TempDir()},
		IdempotencyToken: o.token,
	}
	deadline := time.Now().Add(budget)
	for i := 0; time.Now().Before(deadline); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		resp, err := c.jobs[(first+i)%len(c.jobs)].Submit(ctx, req)
		cancel()
		if err == nil {
			o.acked, o.id = true, resp.JobId
			return o
		}
		o.err = err
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			return o
		}
		time.Sleep(20 * time.Millisecond)
	}
	return o
}

func leaderIndex(c *conns) int {
	l, _ := harness.Leader(context.Background(), c.ops)
	return l
}

func TestLeaderKillsLoseNothing(t *testing.T) {
	dir := t.TempDir()
	servers := cluster.StartServers(t, dir, 3)
	addrs := cluster.Clients(servers)
	for i := range 2 {
		cluster.StartGossipAgent(t, dir, fmt.Sprintf("node%d", i+1), "dgx-h100", 29500+100*i, servers)
	}
	c := dial(t, addrs)
	defer c.close()
	cluster.WaitFor(t, "a leader and two registered nodes", 30*time.Second, func() bool {
		l := leaderIndex(c)
		if l < 0 {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := apirpc.NewNodeServiceClient(mustConn(t, addrs[l])).ListNodes(ctx, &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == 2
	})

	// Record every generation of every allocation while the leader dies,
	// not only the allocations the jobs end with; once a second, because
	// listing thousands of jobs slows the servers down.
	ledger := cluster.NewLedger()
	stopWatch := ledger.Watch(c.jobs[1], apirpc.NewNodeServiceClient(mustConn(t, addrs[1])), time.Second)
	defer stopWatch()
	var (
		mu      sync.Mutex
		history []outcome
		next    atomic.Int64
		wg      sync.WaitGroup
	)
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= totalJobs {
				o := submit(c, w, 15*time.Second)
				mu.Lock()
				history = append(history, o)
				mu.Unlock()
			}
		}()
	}
	// Kill the leader twice while the clients submit, restarting it each time.
	for k := range killsWhile {
		cluster.WaitFor(t, "submits to flow", 60*time.Second, func() bool { return next.Load() > int64((k+1)*totalJobs/(killsWhile+2)) })
		l := leaderIndex(c)
		if l < 0 {
			t.Fatalf("no leader before kill %d", k+1)
		}
		t.Logf("kill -9 leader %s after %d submits", servers[l].Name, next.Load())
		servers[l].Kill()
		time.Sleep(1500 * time.Millisecond)
		servers[l].Restart(t)
	}
	wg.Wait()
	stopWatch()

	acked := 0
	for _, o := range history {
		if o.acked {
			acked++
		}
	}
	t.Logf("%d submits, %d acknowledged", len(history), acked)
	if acked < totalJobs*9/10 {
		errs := map[string]int{}
		for _, o := range history {
			if !o.acked {
				errs[fmt.Sprint(o.err)]++
			}
		}
		t.Fatalf("only %d of %d submits acknowledged: the cluster did not recover from the kills; errors: %v", acked, totalJobs, errs)
	}

	// Let every job run to its end, then read the state through the leader.
	var jobs []*api.Job
	cluster.WaitFor(t, "every job to finish", 180*time.Second, func() bool {
		l := leaderIndex(c)
		if l < 0 {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := c.jobs[l].ListJobs(ctx, &api.ListJobsRequest{All: true, Consistent: true})
		if err != nil {
			return false
		}
		for _, j := range r.Jobs {
			if !j.State.Terminal() || j.HoldsResources() {
				return false
			}
		}
		jobs = r.Jobs
		return true
	})

	stopWatch()
	ledger.Observe(jobs)
	checkExactlyOnce(t, history, jobs)
	checkNoGPUHeldTwice(t, ledger)
	checkSameState(t, c)
}

func mustConn(t *testing.T, addr string) *grpc.ClientConn {
	cc, err := harness.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// checkExactlyOnce: every acknowledged submit is a job, with the id the
// client was given, exactly once; an unacknowledged one (timed out) may
// exist at most once; no job exists that no client submitted.
func checkExactlyOnce(t *testing.T, history []outcome, jobs []*api.Job) {
	t.Helper()
	byToken := map[string][]*api.Job{}
	for _, j := range jobs {
		byToken[j.IdempotencyToken] = append(byToken[j.IdempotencyToken], j)
	}
	tried := map[string]bool{}
	lost, dup, wrong, maybe := 0, 0, 0, 0
	for _, o := range history {
		tried[o.token] = true
		got := byToken[o.token]
		switch {
		case len(got) > 1:
			dup++
		case o.acked && len(got) == 0:
			lost++
		case o.acked && got[0].Id != o.id:
			wrong++
		case !o.acked && len(got) == 1:
			maybe++
		}
	}
	for tok := range byToken {
		if !tried[tok] {
			t.Errorf("job with token %s was never submitted", tok)
		}
	}
	t.Logf("%d jobs in the state; %d timed-out submits were applied", len(jobs), maybe)
	if lost+dup+wrong > 0 {
		t.Fatalf("acknowledged submits: %d lost, %d duplicated, %d with another id", lost, dup, wrong)
	}
	ids := map[uint64]bool{}
	for _, j := range jobs {
		if ids[j.Id] {
			t.Fatalf("job id %d used twice", j.Id)
		}
		ids[j.Id] = true
	}
}

// checkNoGPUHeldTwice: for every GPU, the intervals during which the
// allocations of any generation held it never overlap (see
// cluster.Ledger).
func checkNoGPUHeldTwice(t *testing.T, ledger *cluster.Ledger) {
	t.Helper()
	spans, unverified, err := ledger.CheckNoGPUHeldTwice()
	if err != nil {
		t.Fatal(err)
	}
	if spans == 0 {
		t.Fatal("no job was ever placed on a GPU")
	}
	t.Logf("%d GPU holdings checked, %d ends of replaced generations not seen", spans, unverified)
}

// checkSameState: all three servers reach the same applied index with the
// same state hash.
func checkSameState(t *testing.T, c *conns) {
	t.Helper()
	var last []string
	cluster.WaitFor(t, "the three servers to hold the same state", 30*time.Second, func() bool {
		last = last[:0]
		var first *api.ServerStatusResponse
		for _, op := range c.ops {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := op.ServerStatus(ctx, &api.ServerStatusRequest{})
			cancel()
			if err != nil {
				return false
			}
			last = append(last, fmt.Sprintf("%s@%d:%s", st.Server.Id, st.AppliedIndex, st.StateHash[:12]))
			if first == nil {
				first = st
			} else if st.AppliedIndex != first.AppliedIndex || st.StateHash != first.StateHash {
				return false
			}
		}
		return true
	})
	t.Logf("state hashes: %v", last)
}

// TestQuorum: with one of three servers down the cluster takes and places
// jobs; with two down writes are refused with a "no quorum" answer; when
// they return it recovers without anyone's help.
func TestQuorum(t *testing.T) {
	dir := t.TempDir()
	servers := cluster.StartServers(t, dir, 3)
	addrs := cluster.Clients(servers)
	cluster.StartGossipAgent(t, dir, "node1", "dgx-h100", 29500, servers)
	c := dial(t, addrs)
	defer c.close()
	cluster.WaitFor(t, "a leader", 30*time.Second, func() bool { return leaderIndex(c) >= 0 })
	cluster.WaitFor(t, "the agent to register", 30*time.Second, func() bool { return submit(c, 0, time.Second).acked })

	l := leaderIndex(c)
	servers[l].Kill()
	o := submit(c, l, 15*time.Second)
	if !o.acked {
		t.Fatalf("with one server down, a submit was not acknowledged")
	}
	get := func(id uint64) *api.Job {
		for _, jc := range c.jobs {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			r, err := jc.GetJob(ctx, &api.GetJobRequest{JobId: id, Consistent: true})
			cancel()
			if err == nil {
				return r.Job
			}
		}
		return nil
	}
	cluster.WaitFor(t, "the job to run to completion with one server down", 30*time.Second, func() bool {
		j := get(o.id)
		return j != nil && j.State == api.JobState_COMPLETED
	})

	other := (l + 1) % 3
	servers[other].Kill()
	live := 3 - l - other
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	// Until it misses the leader's heartbeats the lone server still tries
	// to forward; then it must say plainly that there is no quorum.
	cluster.WaitFor(t, "the lone server to report that there is no quorum", 10*time.Second, func() bool {
		_, err = c.jobs[live].Submit(ctx, &api.SubmitRequest{Spec: &api.JobSpec{Script: "x"}, IdempotencyToken: "quorum-probe"})
		return status.Code(err) == codes.Unavailable && strings.Contains(status.Convert(err).Message(), "no quorum")
	})

	servers[l].Restart(t)
	servers[other].Restart(t)
	o = submit(c, live, 30*time.Second)
	if !o.acked {
		t.Fatal("after the servers returned, submits are still refused")
	}
}
