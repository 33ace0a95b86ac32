//go:build e2e

// Package membership changes the membership of a five-server cluster
// while clients submit: a follower is stopped until the others have
// compacted their logs past it, so that it can only catch up by
// installing a snapshot; a server is removed (loom operator raft
// remove-peer), one is added, and one is replaced by a fresh one. No
// acknowledged submit may be lost, and every member must end with the
// same state.
package membership

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
)

// trailing is the log entries a snapshot leaves behind (--raft-trailing-logs):
// a follower further behind than that must install a snapshot.
const trailing = 32

// member is one server of the cluster and its clients.
type member struct {
	*harness.Server
	op   apirpc.OperatorClient
	jobs apirpc.JobServiceClient
}

type testCluster struct {
	t       *testing.T
	dir     string
	opts    harness.ServerOptions
	members []*member // the servers in the configuration
}

func (c *testCluster) wrap(s *harness.Server) *member {
	c.t.Cleanup(s.Kill)
	cc, err := harness.Dial(s.Client())
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cc.Close() })
	return &member{Server: s, op: apirpc.NewOperatorClient(cc), jobs: apirpc.NewJobServiceClient(cc)}
}

func (c *testCluster) ops() []apirpc.OperatorClient {
	var out []apirpc.OperatorClient
	for _, m := range c.members {
		out = append(out, m.op)
	}
	return out
}

func (c *testCluster) jobClients() []apirpc.JobServiceClient {
	var out []apirpc.JobServiceClient
	for _, m := range c.members {
		out = append(out, m.jobs)
	}
	return out
}

// leader waits for a leader among the members and returns it.
func (c *testCluster) leader() *member {
	c.t.Helper()
	l, err := harness.WaitLeader(context.Background(), c.ops(), 30*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.members[l]
}

// follower returns a member that does not lead right now.
func (c *testCluster) follower() *member {
	c.t.Helper()
	l := c.leader()
	for _, m := range c.members {
		if m != l {
			return m
		}
	}
	c.t.Fatal("no follower")
	return nil
}

func status(m *member) *api.ServerStatusResponse {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := m.op.ServerStatus(ctx, &api.ServerStatusRequest{})
	if err != nil {
		return nil
	}
	return st
}

// add starts a server with an empty data dir that joins the members.
func (c *testCluster) add(name string) *member {
	c.t.Helper()
	s, err := harness.NewServer(cluster.Binary(c.t), c.dir, name, "")
	if err != nil {
		c.t.Fatal(err)
	}
	args, err := c.opts.Args([]*harness.Server{s}, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	var live []*harness.Server
	for _, m := range c.members {
		live = append(live, m.Server)
	}
	// The last --gossip-join wins over the lone server's own.
	s.Args = append(args, "--join", strings.Join(harness.Addrs(live), ","), "--gossip-join", strings.Join(harness.Gossips(live), ","))
	if err := s.Start(); err != nil {
		c.t.Fatal(err)
	}
	m := c.wrap(s)
	c.members = append(c.members, m)
	return m
}

// remove kills m and removes it from the configuration with the CLI.
func (c *testCluster) remove(m *member) {
	c.t.Helper()
	m.Kill()
	c.members = slices.DeleteFunc(c.members, func(x *member) bool { return x == m })
	var addrs []string
	for _, x := range c.members {
		addrs = append(addrs, x.Client())
	}
	cmd := exec.Command(cluster.Binary(c.t), "operator", "raft", "remove-peer", m.Name)
	cmd.Env = append(os.Environ(), "LOOM_ADDR="+strings.Join(addrs, ","))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "Removed server "+m.Name) {
		c.t.Fatalf("loom operator raft remove-peer %s: %v: %s", m.Name, err, out.String())
	}
}

// waitPeers waits until the configuration is exactly the members, all
// voters.
func (c *testCluster) waitPeers() {
	c.t.Helper()
	var want []string
	for _, m := range c.members {
		want = append(want, m.Name)
	}
	slices.Sort(want)
	var got []string
	cluster.WaitFor(c.t, fmt.Sprintf("the configuration to be %v", want), 30*time.Second, func() bool {
		l, _ := harness.Leader(context.Background(), c.ops())
		if l < 0 {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r, err := c.members[l].op.RaftListPeers(ctx, &api.RaftListPeersRequest{})
		if err != nil {
			return false
		}
		got = got[:0]
		for _, s := range r.Servers {
			if !s.Voter {
				return false
			}
			got = append(got, s.Id)
		}
		slices.Sort(got)
		return slices.Equal(got, want)
	})
	c.t.Logf("configuration: %v", got)
}

// snapshotIndexes returns the indexes of the Raft snapshots in a data dir.
// startCluster starts n servers with flags, one gossiping agent (node1,
// its ports from portMin) and waits until every server lists the others.
// A failed test logs each server's last output.
func startCluster(t *testing.T, n, portMin int, flags ...string) *testCluster {
	dir := t.TempDir()
	c := &testCluster{t: t, dir: dir, opts: harness.ServerOptions{
		PKI: cluster.PKI(t, dir), GossipKeyFile: cluster.GossipKeyFile(t, dir), Flags: flags,
	}}
	started, err := harness.StartServers(cluster.Binary(t), dir, n, "", c.opts)
	if err != nil {
		t.Fatal(err)
	}
	var initial []*cluster.Server
	for _, s := range started {
		c.members = append(c.members, c.wrap(s))
		initial = append(initial, &cluster.Server{Server: s})
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range c.members {
				t.Log(m.Tail())
			}
		}
	})
	cluster.StartGossipAgent(t, dir, "node1", "dgx-h100", portMin, initial)
	c.waitPeers()
	return c
}

func snapshotIndexes(dataDir string) []uint64 {
	entries, _ := os.ReadDir(filepath.Join(dataDir, "snapshots"))
	var out []uint64
	for _, e := range entries {
		var term, index, ms uint64
		if strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if n, _ := fmt.Sscanf(e.Name(), "%d-%d-%d", &term, &index, &ms); n == 3 {
			out = append(out, index)
		}
	}
	return out
}

func newest(xs []uint64) uint64 {
	if len(xs) == 0 {
		return 0
	}
	return slices.Max(xs)
}

func TestMembershipChangesUnderLoad(t *testing.T) {
	c := startCluster(t, 5, 29500, "--raft-snapshot-threshold", "64", "--raft-trailing-logs", fmt.Sprint(trailing), "--raft-snapshot-interval", "200ms")

	sub := cluster.NewSubmitter(c.jobClients()...)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); sub.Run(ctx, w) }()
	}
	defer func() { stop(); wg.Wait() }()
	flowing := func(what string, more int64) {
		t.Helper()
		from := sub.Count()
		cluster.WaitFor(t, fmt.Sprintf("%d more acknowledged submits %s", more, what), 60*time.Second, func() bool {
			return sub.Count() >= from+more
		})
	}
	flowing("before any change", 100)

	// A lagging follower: stopped until every other member has compacted
	// its log past it, it can only catch up by installing a snapshot.
	lag := c.follower()
	st := status(lag)
	if st == nil {
		t.Fatalf("%s does not answer", lag.Name)
	}
	killed := st.AppliedIndex
	lag.Kill()
	t.Logf("stopped %s at index %d", lag.Name, killed)
	cluster.WaitFor(t, "the others to compact their logs past the stopped follower", 60*time.Second, func() bool {
		for _, m := range c.members {
			if m != lag && newest(snapshotIndexes(m.DataDir)) <= killed+trailing+1 {
				return false
			}
		}
		return true
	})
	if err := lag.Start(); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, "the lagging follower to catch up", 60*time.Second, func() bool {
		l := status(c.leader())
		s := status(lag)
		return l != nil && s != nil && s.AppliedIndex+trailing >= l.AppliedIndex && s.AppliedIndex > killed+trailing+1
	})
	if idx := newest(snapshotIndexes(lag.DataDir)); idx <= killed {
		t.Fatalf("%s caught up from index %d without a newer snapshot in its data dir (newest %d)", lag.Name, killed, idx)
	}
	t.Logf("%s caught up from index %d by installing a snapshot (newest %d)", lag.Name, killed, newest(snapshotIndexes(lag.DataDir)))
	flowing("after the catch-up", 50)

	// Remove a follower.
	gone := c.follower()
	c.remove(gone)
	c.waitPeers()
	sub.SetServers(c.jobClients()...)
	flowing(fmt.Sprintf("with %s removed", gone.Name), 50)

	// Add a server.
	c.add("s5")
	c.waitPeers()
	sub.SetServers(c.jobClients()...)
	flowing("with s5 added", 50)

	// Replace a follower by a fresh server.
	old := c.follower()
	c.remove(old)
	c.add("s6")
	c.waitPeers()
	sub.SetServers(c.jobClients()...)
	flowing(fmt.Sprintf("with %s replaced by s6", old.Name), 50)
	stop()
	wg.Wait()

	hashes := cluster.WaitSameState(t, "every member to hold the same state", 60*time.Second, c.ops())
	t.Logf("same state on every member: %v", hashes)

	l := c.leader()
	lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := l.jobs.ListJobs(lctx, &api.ListJobsRequest{All: true, Consistent: true})
	if err != nil {
		t.Fatal(err)
	}
	if lost := sub.Missing(r.Jobs); len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged submits are not jobs, e.g. job %d", len(lost), sub.Count(), lost[0].ID)
	}
	ledger := cluster.NewLedger()
	ledger.Observe(r.Jobs)
	if _, _, err := ledger.CheckNoGPUHeldTwice(); err != nil {
		t.Fatal(err)
	}
	t.Logf("all %d acknowledged submits are jobs", sub.Count())
}
