package devcluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// These tests run the whole path of a job — gRPC submit, Raft commit,
// scheduler, agents, real processes — in one process.

func startCluster(t *testing.T, agents int) (*Cluster, apirpc.JobServiceClient) {
	t.Helper()
	return startClusterWith(t, Options{Agents: agents})
}

// startClusterWith starts a dev cluster of o.Agents dgx-h100 nodes with
// the rest of o as given.
func startClusterWith(t *testing.T, o Options) (*Cluster, apirpc.JobServiceClient) {
	t.Helper()
	o.Profile, o.RPCAddr, o.DataDir, o.Logger = "dgx-h100", "127.0.0.1:0", t.TempDir(), testLogger()
	c, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	conn, err := harness.Dial(c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return c, apirpc.NewJobServiceClient(conn)
}

func submit(t *testing.T, jobs apirpc.JobServiceClient, spec *api.JobSpec) uint64 {
	t.Helper()
	if spec.WorkingDir == "" {
		spec.WorkingDir = t.TempDir()
	}
	resp, err := jobs.Submit(context.Background(), &api.SubmitRequest{
		Spec: spec,
	})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return resp.JobId
}

func getJob(t *testing.T, jobs apirpc.JobServiceClient, id uint64) *api.Job {
	t.Helper()
	resp, err := jobs.GetJob(context.Background(), &api.GetJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Job
}

func waitDone(t *testing.T, jobs apirpc.JobServiceClient, id uint64) *api.Job {
	t.Helper()
	var j *api.Job
	harness.WaitFor(t, fmt.Sprintf("job %d to end", id), 30*time.Second, func() bool {
		j = getJob(t, jobs, id)
		return j.State.Terminal() && !j.HoldsResources()
	})
	return j
}

func TestHelloGang(t *testing.T) {
	_, jobs := startCluster(t, 2)
	dir := t.TempDir()
	id := submit(t, jobs, &api.JobSpec{
		Name: "hello", NodesMin: 2, NtasksPerNode: 4, GpusPerNode: 4, WorkingDir: dir,
		Output: "hello-%j-%t.out", EveryRank: true,
		Script: "#!/bin/sh\necho \"RANK=$RANK WORLD_SIZE=$WORLD_SIZE NODE=$SLURMD_NODENAME GPUS=$CUDA_VISIBLE_DEVICES MASTER=$MASTER_ADDR:$MASTER_PORT\"\n",
	})
	j := waitDone(t, jobs, id)
	if j.State != api.JobState_COMPLETED {
		t.Fatalf("job state = %s (%s), want COMPLETED", j.State, j.Reason)
	}
	ranks, nodes, gpus := map[string]bool{}, map[string]bool{}, map[string]string{}
	for r := range 8 {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("hello-%d-%d.out", id, r)))
		if err != nil {
			t.Fatal(err)
		}
		f := map[string]string{}
		for _, kv := range strings.Fields(string(b)) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if f["RANK"] != fmt.Sprint(r) || f["WORLD_SIZE"] != "8" {
			t.Errorf("rank %d printed RANK=%s WORLD_SIZE=%s, want %d and 8", r, f["RANK"], f["WORLD_SIZE"], r)
		}
		if f["MASTER"] == "" || strings.HasSuffix(f["MASTER"], ":0") {
			t.Errorf("rank %d has no MASTER_PORT: %q", r, f["MASTER"])
		}
		ranks[f["RANK"]] = true
		nodes[f["NODE"]] = true
		if f["GPUS"] == "" {
			t.Errorf("rank %d has no CUDA_VISIBLE_DEVICES", r)
		}
		for _, g := range strings.Split(f["GPUS"], ",") {
			if other, dup := gpus[g]; dup {
				t.Errorf("GPU %s visible to rank %d and rank %s", g, r, other)
			}
			gpus[g] = fmt.Sprint(r)
		}
	}
	if len(ranks) != 8 || len(nodes) != 2 {
		t.Fatalf("%d distinct ranks on %d nodes, want 8 on 2", len(ranks), len(nodes))
	}
}

// TestThirdGangWaits is the foundation's acceptance scenario: two half-node
// gangs run at once, a whole-node gang waits on Resources and runs after.
func TestThirdGangWaits(t *testing.T) {
	_, jobs := startCluster(t, 2)
	half := func() *api.JobSpec {
		return &api.JobSpec{NodesMin: 2, NtasksPerNode: 4, GpusPerNode: 4, Script: "#!/bin/sh\nsleep 2\n"}
	}
	a, b := submit(t, jobs, half()), submit(t, jobs, half())
	c := submit(t, jobs, &api.JobSpec{NodesMin: 2, GpusPerNode: 8, Script: "#!/bin/sh\ntrue\n"})
	harness.WaitFor(t, "jobs a and b to run together", 10*time.Second, func() bool {
		ja, jb := getJob(t, jobs, a), getJob(t, jobs, b)
		return ja.State == api.JobState_RUNNING && jb.State == api.JobState_RUNNING
	})
	// The cycle that records why c waits may come just after the one that
	// started a and b: wait for its reason, which must come while c pends.
	harness.WaitFor(t, "the third job to pend on Resources", 10*time.Second, func() bool {
		jc := getJob(t, jobs, c)
		if jc.State != api.JobState_PENDING {
			t.Fatalf("third job: state %s while the first two run, want PENDING", jc.State)
		}
		return jc.Reason == "Resources"
	})
	ja, jb, jc := waitDone(t, jobs, a), waitDone(t, jobs, b), waitDone(t, jobs, c)
	for _, j := range []*api.Job{ja, jb, jc} {
		if j.State != api.JobState_COMPLETED {
			t.Fatalf("job %d: %s (%s), want COMPLETED", j.Id, j.State, j.Reason)
		}
	}
	if jc.StartUnixMs < max(ja.EndUnixMs, jb.EndUnixMs) {
		t.Fatalf("third job started at %d, before the others ended (%d, %d)", jc.StartUnixMs, ja.EndUnixMs, jb.EndUnixMs)
	}
	used := map[string]uint64{}
	for _, j := range []*api.Job{ja, jb} {
		for _, r := range j.Allocation.Ranks {
			for _, g := range r.GpuUuids {
				if other, ok := used[g]; ok && other != j.Id {
					t.Fatalf("GPU %s given to concurrent jobs %d and %d", g, other, j.Id)
				}
				used[g] = j.Id
			}
		}
	}
}

func TestInfeasibleAndInvalidSubmits(t *testing.T) {
	_, jobs := startCluster(t, 2)
	tests := []struct {
		spec *api.JobSpec
		want string
	}{
		{&api.JobSpec{NodesMin: 3, Script: "x"}, "--nodes=3"},
		{&api.JobSpec{GpusPerNode: 9, Script: "x"}, "needs 9 GPUs"},
		{&api.JobSpec{NodesMin: 2, NodesMax: 1, Script: "x"}, "--nodes"},
		{&api.JobSpec{}, "no script"},
	}
	for _, tt := range tests {
		_, err := jobs.Submit(context.Background(), &api.SubmitRequest{Spec: tt.spec})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Submit(%v) = %v, want InvalidArgument mentioning %q", tt.spec, err, tt.want)
		}
	}
	resp, err := jobs.ListJobs(context.Background(), &api.ListJobsRequest{All: true})
	if err != nil || len(resp.Jobs) != 0 {
		t.Fatalf("refused submits left %d jobs (err %v), want none", len(resp.Jobs), err)
	}
}

func TestFailureStopsWholeGang(t *testing.T) {
	_, jobs := startCluster(t, 2)
	dir := t.TempDir()
	// Rank 5 fails at once; the others would sleep for a minute. The gang
	// is restarted once (--max-restarts=1), fails again, and stays FAILED.
	id := submit(t, jobs, &api.JobSpec{NodesMin: 2, NtasksPerNode: 4, WorkingDir: dir, MaxRestarts: proto.Uint32(1), EveryRank: true,
		Script: "#!/bin/sh\nif [ \"$RANK\" = 5 ]; then exit 3; fi\necho $$ >> pid-$RANK\nexec sleep 60\n"})
	start := time.Now()
	j := waitDone(t, jobs, id)
	if j.State != api.JobState_FAILED || j.ExitCode != 3 || j.RestartCount != 1 {
		t.Fatalf("job: %s exit %d after %d restarts (%s), want FAILED exit 3 after 1", j.State, j.ExitCode, j.RestartCount, j.Reason)
	}
	if !strings.Contains(j.Reason, "rank 5") {
		t.Errorf("reason %q does not name rank 5", j.Reason)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("gang took %s to stop; the sleeping ranks were not killed", took)
	}
	pids, _ := filepath.Glob(filepath.Join(dir, "pid-*"))
	sort.Strings(pids)
	for _, p := range pids {
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			var pid int
			fmt.Sscan(f, &pid)
			if pid > 0 && processAlive(pid) {
				t.Errorf("%s: process %d still running after the gang failed", filepath.Base(p), pid)
			}
		}
	}
}

func TestCancelAndTimeLimit(t *testing.T) {
	_, jobs := startCluster(t, 1)
	long := submit(t, jobs, &api.JobSpec{Script: "#!/bin/sh\nexec sleep 60\n"})
	harness.WaitFor(t, "job to run", 10*time.Second, func() bool { return getJob(t, jobs, long).State == api.JobState_RUNNING })
	if _, err := jobs.Cancel(context.Background(), &api.CancelRequest{JobIds: []uint64{long}}); err != nil {
		t.Fatal(err)
	}
	if j := waitDone(t, jobs, long); j.State != api.JobState_CANCELLED {
		t.Fatalf("cancelled job ended %s, want CANCELLED", j.State)
	}
	limited := submit(t, jobs, &api.JobSpec{TimeLimitS: 1, Script: "#!/bin/sh\nexec sleep 60\n"})
	if j := waitDone(t, jobs, limited); j.State != api.JobState_TIMEOUT {
		t.Fatalf("job past its 1s limit ended %s (%s), want TIMEOUT", j.State, j.Reason)
	}
	_, err := jobs.Cancel(context.Background(), &api.CancelRequest{JobIds: []uint64{9999}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("cancel of an unknown job: %v, want NotFound", err)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("LOOM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestSignalBeforeTimeLimit: --signal=B:USR1@2 reaches the batch script
// two seconds before its three-second limit, and the job still ends
// TIMEOUT.
func TestSignalBeforeTimeLimit(t *testing.T) {
	_, jobs := startCluster(t, 1)
	dir := t.TempDir()
	id := submit(t, jobs, &api.JobSpec{TimeLimitS: 3, Signal: "B:USR1@2", WorkingDir: dir, Requeue: proto.Bool(false),
		Script: "#!/bin/sh\ntrap 'echo got-usr1 >> signals' USR1\nwhile true; do sleep 0.1; done\n"})
	if j := waitDone(t, jobs, id); j.State != api.JobState_TIMEOUT {
		t.Fatalf("job ended %s (%s), want TIMEOUT", j.State, j.Reason)
	}
	b, err := os.ReadFile(filepath.Join(dir, "signals"))
	if err != nil || !strings.Contains(string(b), "got-usr1") {
		t.Fatalf("the rank did not record SIGUSR1 before its limit: %q, %v", b, err)
	}
}
