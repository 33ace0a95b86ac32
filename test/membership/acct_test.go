//go:build e2e

package membership

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/backup"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// saveSnapshot returns a snapshot file of the leader's state (what loom
// operator snapshot save writes) with how many jobs its live state and
// its accounting records hold, or nil when none answers.
func saveSnapshot(op apirpc.OperatorClient) (file []byte, live, archived int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := op.SnapshotSave(ctx, &api.SnapshotSaveRequest{})
	if err != nil {
		return nil, 0, 0
	}
	var buf bytes.Buffer
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, 0
		}
		buf.Write(c.Data)
	}
	f, err := backup.Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return nil, 0, 0
	}
	var ss api.StateSnapshot
	if err := proto.Unmarshal(f.State, &ss); err != nil {
		return nil, 0, 0
	}
	for _, r := range ss.Archived {
		if r.JobId != 0 {
			archived++
		}
	}
	return buf.Bytes(), len(ss.Jobs), archived
}

// sacct runs loom's sacct against the server at addr alone (no
// --consistent: it reads that server's own state and accounting store).
func sacct(t *testing.T, addr string) string {
	t.Helper()
	cmd := exec.Command(cluster.Binary(t), "slurm", "sacct", "--allusers", "--parsable2", "--starttime", "now-1days",
		"--format", "JobID,JobName,User,AllocGPUS,NNodes,NodeList,State,ExitCode,Submit,Start,End,Elapsed")
	cmd.Env = append(os.Environ(), "LOOM_ADDR="+addr, "SLURM_JOB_ID=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("sacct on %s: %v: %s", addr, err, errb.String())
	}
	return out.String()
}

// TestJoinedServerHasArchivedJobs: jobs that finished and left the live
// state (--min-job-age) before a server joined reach it in the Raft
// snapshot it installs, so its sacct answers for them exactly as the
// leader's does; so does a fresh server into which the operator's
// snapshot file is restored.
func TestJoinedServerHasArchivedJobs(t *testing.T) {
	c := startCluster(t, 3, 29700, "--min-job-age", "1s", "--raft-snapshot-threshold", "16", "--raft-trailing-logs", "8",
		"--raft-snapshot-interval", "200ms")
	dir := c.dir
	jobs := c.leader().jobs
	cluster.WaitFor(t, "the node to register", 30*time.Second, func() bool {
		r, err := apirpc.NewNodeServiceClient(mustDial(t, c.leader().Client())).ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == 1
	})

	// Jobs that end in three ways: two run and complete, one fails, and
	// a held job and a held array of four are cancelled.
	submit := func(spec *api.JobSpec) uint64 {
		spec.WorkingDir = dir
		if spec.Script == "" {
			spec.Script = "#!/bin/sh\ntrue\n"
		}
		return cluster.SubmitRetrying(t, jobs, &api.SubmitRequest{Spec: spec, IdempotencyToken: fmt.Sprint(time.Now().UnixNano())}, 30*time.Second)
	}
	ids := []uint64{
		submit(&api.JobSpec{Name: "ok", GpusPerNode: 2}),
		submit(&api.JobSpec{Name: "ok2", GpusPerNode: 1}),
		submit(&api.JobSpec{Name: "fail", GpusPerNode: 1, Script: "#!/bin/sh\nexit 3\n"}),
		submit(&api.JobSpec{Name: "held", Hold: true}),
		submit(&api.JobSpec{Name: "sweep", Hold: true, Array: "0-3"}),
	}
	var cancel []uint64
	r, err := jobs.ListJobs(cluster.Ctx(t), &api.ListJobsRequest{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range r.Jobs {
		if j.Id >= ids[3] { // the held job and the array's tasks
			cancel = append(cancel, j.Id)
		}
	}
	if len(cancel) < 5 {
		t.Fatalf("found %d held jobs and tasks to cancel, want 5: %v", len(cancel), r.Jobs)
	}
	if _, err := jobs.Cancel(cluster.Ctx(t), &api.CancelRequest{JobIds: cancel}); err != nil {
		t.Fatal(err)
	}
	lead := c.leader()
	var saved []byte
	cluster.WaitFor(t, "every job to end and leave the live state", 60*time.Second, func() bool {
		file, live, archived := saveSnapshot(lead.op)
		saved = file
		return file != nil && live == 0 && archived == len(cancel)+3
	})
	expiredAt := status(lead).AppliedIndex
	want := sacct(t, lead.Client())
	t.Logf("the leader's accounting, all of it from the accounting store:\n%s", want)
	if n := strings.Count(want, "\n"); n < 1+8 || !strings.Contains(want, "FAILED|3:0") || !strings.Contains(want, "CANCELLED") {
		t.Fatalf("the leader's sacct has %d lines, without the failed or the cancelled jobs:\n%s", n, want)
	}

	// More entries than the snapshot threshold after the expiry, so that
	// every member snapshots past it and compacts its log: a server that
	// joins now can only catch up by installing a snapshot.
	for range 24 {
		submit(&api.JobSpec{Name: "later", Hold: true})
	}
	cluster.WaitFor(t, "every member to snapshot past the expiry", 60*time.Second, func() bool {
		for _, m := range c.members {
			if newest(snapshotIndexes(m.DataDir)) <= expiredAt+8 {
				return false
			}
		}
		return true
	})
	joined := c.add("s3")
	c.waitPeers()
	cluster.WaitSameState(t, "the joined server to reach the others' state", 60*time.Second, c.ops())
	got := sacct(t, joined.Client())
	// The later jobs are pending in the live state on both: compare the
	// archived ones, which are every line of want.
	for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
		if !strings.Contains(got, line+"\n") {
			t.Errorf("%s's sacct lacks the leader's line %q", joined.Name, line)
		}
	}
	if t.Failed() {
		t.Fatalf("%s's sacct:\n%s", joined.Name, got)
	}
	if full := sacct(t, c.leader().Client()); full != got {
		t.Fatalf("%s's sacct differs from the leader's:\n%s\nleader's:\n%s", joined.Name, got, full)
	}

	// The operator's snapshot file, saved once every job had left the
	// live state, carries the records too: restored into a fresh server,
	// its sacct is the leader's.
	path := filepath.Join(dir, "acct.snap")
	if err := os.WriteFile(path, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := cluster.StartServer(t, filepath.Join(dir, "fresh"), "fresh")
	cmd := exec.Command(cluster.Binary(t), "operator", "snapshot", "restore", path)
	cmd.Env = append(os.Environ(), "LOOM_ADDR="+fresh.Client())
	cluster.WaitFor(t, "the fresh server to take the restore", 30*time.Second, func() bool {
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf("restore: %v: %s", err, out)
			cmd = exec.Command(cmd.Path, cmd.Args[1:]...)
			cmd.Env = append(os.Environ(), "LOOM_ADDR="+fresh.Client())
		}
		return err == nil
	})
	if got := sacct(t, fresh.Client()); got != want {
		t.Fatalf("after restoring the file into a fresh server its sacct is:\n%s\nwant the leader's:\n%s", got, want)
	}
	if b, _ := os.ReadFile(joined.Log); !strings.Contains(string(b), "restored accounting records from snapshot") {
		t.Fatalf("%s caught up without restoring accounting records from a snapshot:\n%s", joined.Name, joined.Tail())
	}
}

func mustDial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := harness.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}
