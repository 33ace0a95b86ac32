//go:build e2e

// Package snapshot checks backup and restore end to end on real
// processes: a snapshot saved from a 3-server cluster with agents and
// finished jobs, restored into a fresh 3-server cluster, gives the same
// state and the same accounting; a damaged file and a user who is not an
// operator are refused, and leave the cluster as it was.
package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/backup"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// loom runs the loom binary against the servers at addrs (their local
// sockets, where the test, as root, is an operator) in dir, as user when
// it is not empty, and returns its output and exit error.
func loom(t *testing.T, dir string, addrs []string, user string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin := cluster.Binary(t)
	if user != "" {
		args = append([]string{"-u", user, "--", bin}, args...)
		bin = "runuser"
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LOOM_ADDR="+strings.Join(addrs, ","), "SLURM_JOB_ID=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// mustLoom is loom as root that must succeed.
func mustLoom(t *testing.T, dir string, addrs []string, args ...string) string {
	t.Helper()
	out, errOut, err := loom(t, dir, addrs, "", args...)
	if err != nil {
		t.Fatalf("loom %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func inspect(t *testing.T, dir string, path string) *api.SnapshotInfo {
	t.Helper()
	var info api.SnapshotInfo
	if err := protojson.Unmarshal([]byte(mustLoom(t, dir, nil, "operator", "snapshot", "inspect", "--json", path)), &info); err != nil {
		t.Fatal(err)
	}
	return &info
}

// contentHash digests a snapshot file's jobs, nodes and next job id: the
// state an admin backs up, without the servers' own records and the
// index, which a cluster restored into rewrites as it runs.
func contentHash(t *testing.T, path string) string {
	t.Helper()
	fd, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	f, err := backup.Read(fd)
	if err != nil {
		t.Fatal(err)
	}
	var ss api.StateSnapshot
	if err := proto.Unmarshal(f.State, &ss); err != nil {
		t.Fatal(err)
	}
	ss.Index, ss.Servers = 0, nil
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&ss)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestSaveInspectRestoreIntoAFreshCluster(t *testing.T) {
	cluster.RequireRoot(t)
	alice := cluster.LookupUser(t, cluster.UserA)
	_, err := exec.LookPath("runuser")
	harness.Require(t, "runuser (util-linux) to act as "+cluster.UserA, err == nil)

	dir := cluster.OpenDir(t, "loom-snapshot-")
	orig := cluster.StartGossiping(t, filepath.Join(dir, "a"), 3, 2)
	addrs := cluster.Clients(orig.Servers)

	// A few jobs that end in different ways: two complete (one on each
	// node), one fails with exit code 3, one is cancelled while held.
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sbatch := func(args ...string) uint64 {
		t.Helper()
		out := mustLoom(t, dir, addrs, append([]string{"slurm", "sbatch", "--parsable"}, args...)...)
		id, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
		if err != nil {
			t.Fatalf("sbatch printed %q, not a job id", out)
		}
		return id
	}
	ok := script("ok.sh", "echo hello")
	ids := []uint64{
		sbatch("-N", "1", "--gpus-per-node=2", ok),
		sbatch("-N", "2", "--gpus-per-node=1", ok),
		sbatch("-N", "1", "--gpus-per-node=1", script("fail.sh", "exit 3")),
		sbatch("--hold", "-N", "1", ok),
	}
	mustLoom(t, dir, addrs, "slurm", "scancel", fmt.Sprint(ids[3]))
	for _, id := range ids {
		cluster.WaitFor(t, fmt.Sprintf("job %d to end", id), 30*time.Second, func() bool {
			j := cluster.Job(t, orig.Jobs, id)
			return j != nil && j.State.Terminal() && !j.HoldsResources()
		})
	}
	// sacctLocal reads the server it is sent to; sacctArgs the leader.
	sacctLocal := []string{"slurm", "sacct", "--allusers", "--parsable2", "--starttime", "now-1days",
		"--format", "JobID,JobName,User,UID,AllocGPUS,NNodes,NodeList,State,ExitCode,Submit,Start,End,Elapsed,WorkDir"}
	sacctArgs := append(slices.Clone(sacctLocal), "--consistent")
	wantSacct := mustLoom(t, dir, addrs, sacctArgs...)
	t.Logf("the original cluster's accounting:\n%s", wantSacct)
	if !strings.Contains(wantSacct, "FAILED|3:0") || !strings.Contains(wantSacct, "CANCELLED") {
		t.Fatalf("the original cluster's accounting lacks the failed or the cancelled job:\n%s", wantSacct)
	}

	// Save, through a follower (it relays the leader's snapshot).
	ops := operators(t, orig.Servers)
	leader, err := harness.WaitLeader(cluster.Ctx(t), ops, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	follower := addrs[(leader+1)%len(addrs)]
	// Each server publishes its own address in the state once it knows
	// the leader (a tick of a second); the jobs above may all have ended
	// before the followers did.
	cluster.WaitFor(t, "every server's address in the replicated state", 30*time.Second, func() bool {
		r, err := ops[leader].RaftListPeers(cluster.Ctx(t), &api.RaftListPeersRequest{})
		if err != nil || len(r.Servers) != len(addrs) {
			return false
		}
		for _, sv := range r.Servers {
			if sv.RpcAddr == "" {
				return false
			}
		}
		return true
	})
	file := filepath.Join(dir, "backup.snap")
	mustLoom(t, dir, []string{follower}, "operator", "snapshot", "save", file)
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved snapshot: %v (%v); want a file of mode 0600", fi, err)
	}
	info := inspect(t, dir, file)
	if info.Jobs != uint32(len(ids)) || info.Nodes != 2 || info.Servers != 3 || info.Meta.Index == 0 || info.Meta.Term == 0 {
		t.Fatalf("inspect = %v; want %d jobs, 2 nodes, 3 servers, an index and a term", info, len(ids))
	}
	text := mustLoom(t, dir, nil, "operator", "snapshot", "inspect", file)
	t.Logf("snapshot inspect:\n%s", text)
	for _, want := range []string{"Index", "Term", "Checksum", "(verified)", "Jobs", "State hash", info.StateHash} {
		if !strings.Contains(text, want) {
			t.Fatalf("inspect's text lacks %q:\n%s", want, text)
		}
	}
	// The file is the leader's state: a server at the file's index has
	// exactly its hash.
	for i, op := range ops {
		st, err := op.ServerStatus(cluster.Ctx(t), &api.ServerStatusRequest{})
		if err == nil && st.AppliedIndex == info.Meta.Index && st.StateHash != info.StateHash {
			t.Fatalf("server %d at index %d has state hash %s, the snapshot of that index %s", i, st.AppliedIndex, st.StateHash, info.StateHash)
		}
	}

	// A damaged copy is refused by inspect, by restore, and by the server
	// itself when sent past the command's own check.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(raw)
	bad[len(bad)-20] ^= 0x01
	badFile := filepath.Join(dir, "damaged.snap")
	if err := os.WriteFile(badFile, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"inspect", "restore"} {
		_, errOut, err := loom(t, dir, addrs, "", "operator", "snapshot", verb, badFile)
		if err == nil || !strings.Contains(errOut, "checksum: the header says sha256") {
			t.Fatalf("snapshot %s of a damaged file: %v, stderr %q; want a refusal naming the checksum mismatch", verb, err, errOut)
		}
	}
	stream, err := ops[leader].SnapshotRestore(cluster.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&api.SnapshotChunk{Data: bad}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("SnapshotRestore(damaged) = %v; want InvalidArgument naming the checksum", err)
	}

	// A user who is not an operator may neither save nor restore.
	aliceFile := filepath.Join(dir, "alice.snap")
	if _, errOut, err := loom(t, dir, addrs, alice.Name, "operator", "snapshot", "save", aliceFile); err == nil || !strings.Contains(errOut, "only operators") {
		t.Fatalf("snapshot save as %s: %v, stderr %q; want a refusal for non-operators", alice.Name, err, errOut)
	}
	if _, err := os.Stat(aliceFile); !os.IsNotExist(err) {
		t.Fatalf("a refused save left %s behind (%v)", aliceFile, err)
	}
	readable := filepath.Join(dir, "readable.snap")
	if err := os.WriteFile(readable, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := loom(t, dir, addrs, alice.Name, "operator", "snapshot", "restore", readable); err == nil || !strings.Contains(errOut, "only operators") {
		t.Fatalf("snapshot restore as %s: %v, stderr %q; want a refusal for non-operators", alice.Name, err, errOut)
	}
	if got := mustLoom(t, dir, addrs, sacctArgs...); got != wantSacct {
		t.Fatalf("the refused restores changed the accounting:\n%s\nwant:\n%s", got, wantSacct)
	}

	// A fresh cluster, no agents and no gossip (so that the restored
	// nodes are not marked down meanwhile), takes the snapshot through a
	// follower.
	freshDir := filepath.Join(dir, "b")
	started, err := harness.StartServers(cluster.Binary(t), freshDir, 3, "", harness.ServerOptions{PKI: cluster.PKI(t, freshDir)})
	if err != nil {
		t.Fatal(err)
	}
	var fresh []*cluster.Server
	for _, s := range started {
		t.Cleanup(s.Kill)
		fresh = append(fresh, &cluster.Server{Server: s})
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range fresh {
				t.Log(s.Tail())
			}
		}
	})
	freshAddrs := cluster.Clients(fresh)
	freshOps := operators(t, fresh)
	fl, err := harness.WaitLeader(cluster.Ctx(t), freshOps, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var restored api.SnapshotRestoreResponse
	out := mustLoom(t, dir, []string{freshAddrs[(fl+1)%len(freshAddrs)]}, "operator", "snapshot", "restore", "--json", file)
	if err := protojson.Unmarshal([]byte(out), &restored); err != nil {
		t.Fatal(err)
	}
	if r := restored.Restored; r.StateHash != info.StateHash || r.Jobs != info.Jobs || r.Meta.Index != info.Meta.Index {
		t.Fatalf("restore installed %v; want the saved state, hash %s", r, info.StateHash)
	}

	// Every fresh server holds the restored state: the same accounting,
	// read from each one, as the original cluster's.
	for i, a := range freshAddrs {
		var got string
		cluster.WaitFor(t, fmt.Sprintf("fresh server %d to hold the restored accounting", i), 10*time.Second, func() bool {
			got, _, _ = loom(t, dir, []string{a}, "", sacctLocal...)
			return got == wantSacct
		})
	}
	// And so does a snapshot saved from the fresh cluster: the same jobs,
	// nodes and next job id.
	again := filepath.Join(dir, "again.snap")
	mustLoom(t, dir, freshAddrs, "operator", "snapshot", "save", again)
	if got, want := contentHash(t, again), contentHash(t, file); got != want {
		t.Fatalf("the fresh cluster's state (jobs, nodes, next job id) hashes to %s after the restore, the original's to %s", got, want)
	}
	// Job ids go on from the restored ones.
	if id := sbatchOn(t, dir, freshAddrs, ok); id != ids[len(ids)-1]+1 {
		t.Fatalf("the first job submitted after the restore got id %d, want %d", id, ids[len(ids)-1]+1)
	}
	// The fresh servers agree with each other.
	cluster.WaitFor(t, "the fresh servers to reach the same state hash", 10*time.Second, func() bool {
		var hashes []string
		for _, op := range freshOps {
			st, err := op.ServerStatus(cluster.Ctx(t), &api.ServerStatusRequest{})
			if err != nil {
				return false
			}
			hashes = append(hashes, st.StateHash)
		}
		return hashes[0] == hashes[1] && hashes[1] == hashes[2]
	})
}

func sbatchOn(t *testing.T, dir string, addrs []string, script string) uint64 {
	t.Helper()
	out := mustLoom(t, dir, addrs, "slurm", "sbatch", "--parsable", "--hold", script)
	id, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatalf("sbatch printed %q, not a job id", out)
	}
	return id
}

func operators(t *testing.T, servers []*cluster.Server) []apirpc.OperatorClient {
	t.Helper()
	var ops []apirpc.OperatorClient
	for _, s := range servers {
		conn, err := harness.Dial(s.Client())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		ops = append(ops, apirpc.NewOperatorClient(conn))
	}
	return ops
}

// TestRestoreIntoTheRunningCluster rewinds a live cluster: a job
// submitted after the save is gone, job ids are not given again, and a
// node that registered after the save comes back by itself (its agent's
// stream ends and it registers again).
func TestRestoreIntoTheRunningCluster(t *testing.T) {
	cluster.RequireRoot(t)
	dir := cluster.OpenDir(t, "loom-snapshot-live-")
	g := cluster.StartGossiping(t, filepath.Join(dir, "a"), 3, 1)
	addrs := cluster.Clients(g.Servers)
	ok := filepath.Join(dir, "ok.sh")
	if err := os.WriteFile(ok, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	first := sbatchOn(t, dir, addrs, ok)
	file := filepath.Join(dir, "backup.snap")
	mustLoom(t, dir, addrs, "operator", "snapshot", "save", file)

	g.Agents["node2"] = cluster.StartGossipAgent(t, filepath.Join(dir, "a"), "node2", "dgx-h100", 29700, g.Servers)
	listNodes := func() int {
		r, err := g.Nodes.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{Consistent: true})
		if err != nil {
			return -1
		}
		return len(r.Nodes)
	}
	cluster.WaitFor(t, "node2 to register", 30*time.Second, func() bool { return listNodes() == 2 })
	later := sbatchOn(t, dir, addrs, ok)

	out := mustLoom(t, dir, addrs, "operator", "snapshot", "restore", file)
	t.Log(out)
	if j := cluster.Job(t, g.Jobs, first); j == nil {
		t.Fatalf("job %d, in the snapshot, is gone after the restore", first)
	}
	cluster.WaitFor(t, fmt.Sprintf("job %d, submitted after the save, to be gone", later), 10*time.Second, func() bool {
		_, err := g.Jobs.GetJob(cluster.Ctx(t), &api.GetJobRequest{JobId: later, Consistent: true})
		return status.Code(err) == codes.NotFound
	})
	cluster.WaitFor(t, "node2, registered after the save, to register again", 30*time.Second, func() bool { return listNodes() == 2 })
	if id := sbatchOn(t, dir, addrs, ok); id <= later {
		t.Fatalf("a job submitted after the restore got id %d, which job %d had before it: ids must not be reused", id, later)
	}
}
