//go:build e2e

// Package mnist is the main job under a node failure: the data-parallel
// MNIST learner runs as a 2-node gang, one of its nodes is killed after
// the first checkpoint, and the gang must be requeued, resume from that
// checkpoint and still reach 97% test accuracy.
package mnist

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/test/cluster"
)

func learnerBinary(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	b := filepath.Join(filepath.Dir(file), "..", "..", "bin", "mnist")
	if _, err := os.Stat(b); err != nil {
		t.Fatalf("no learner at %s: run make build (or make e2e) first", b)
	}
	abs, _ := filepath.Abs(b)
	return abs
}

// ranksOn returns the pids of the job's learner processes on node.
func ranksOn(t *testing.T, job uint64, node string) []int {
	t.Helper()
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		env := "\x00" + string(b)
		if strings.Contains(env, "\x00LOOM_JOB_ID="+strconv.FormatUint(job, 10)+"\x00") &&
			strings.Contains(env, "\x00SLURMD_NODENAME="+node+"\x00") {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestTrainingSurvivesNodeLoss(t *testing.T) {
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	os.MkdirAll(work, 0o755)
	c := cluster.StartGossiping(t, dir, 3, 3)
	agents, jobs := c.Agents, c.Jobs
	script := fmt.Sprintf("#!/bin/sh\nexec %s --epochs 4 --batch 32 --checkpoint-every 200\n", learnerBinary(t))
	id := cluster.SubmitRetrying(t, jobs, &api.SubmitRequest{
		Spec: &api.JobSpec{Name: "mnist", NodesMin: 2, NtasksPerNode: 2, GpusPerTask: 1, TimeLimitS: 1200,
			Script: script, WorkingDir: work, Output: "mnist-%j-%t.out", EveryRank: true, Env: map[string]string{"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME")}},
		IdempotencyToken: "mnist-resume",
	}, 20*time.Second)
	get := func() *api.Job { return cluster.Job(t, jobs, id) }
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if j := get(); j != nil {
			t.Logf("job: %s restarts %d reason %q", j.State, j.RestartCount, j.Reason)
		}
		outs, _ := filepath.Glob(filepath.Join(work, "*.out"))
		for _, f := range outs {
			b, _ := os.ReadFile(f)
			if len(b) > 1500 {
				b = b[len(b)-1500:]
			}
			t.Logf("--- %s\n%s", filepath.Base(f), b)
		}
	})
	ckpt := filepath.Join(work, ".loom", fmt.Sprintf("job-%d", id), "checkpoint")
	cluster.WaitFor(t, "the first checkpoint", 90*time.Second, func() bool {
		entries, _ := os.ReadDir(ckpt)
		return len(entries) > 0
	})
	j := get()
	victim := j.Allocation.Nodes[1]
	pids := ranksOn(t, id, victim)
	t.Logf("killing %s and its ranks %v after the first checkpoint", victim, pids)
	agents[victim].Kill()
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}

	cluster.WaitFor(t, "training to finish after the requeue", 300*time.Second, func() bool {
		j = get()
		return j != nil && j.State.Terminal() && !j.HoldsResources()
	})
	if j.State != api.JobState_COMPLETED || j.RestartCount != 1 {
		t.Fatalf("job %s with %d restarts (%s), want COMPLETED after 1", j.State, j.RestartCount, j.Reason)
	}
	resumed := regexp.MustCompile(`resumed from checkpoint step (\d+)`)
	step := 0
	outs, _ := filepath.Glob(filepath.Join(work, fmt.Sprintf("mnist-%d-*.out", id)))
	for _, f := range outs {
		b, _ := os.ReadFile(f)
		if m := resumed.FindSubmatch(b); m != nil {
			step, _ = strconv.Atoi(string(m[1]))
		}
	}
	if step <= 0 {
		t.Fatalf("no rank logged resuming from a checkpoint step > 0 (outputs %v)", outs)
	}
	b, err := os.ReadFile(filepath.Join(work, ".loom", fmt.Sprintf("job-%d", id), "result", "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	acc, _ := m["test_accuracy"].(float64)
	t.Logf("resumed from step %d; final test accuracy %.4f", step, acc)
	if acc < 0.97 {
		t.Fatalf("test accuracy %.4f after the resume, want at least 0.97 (metrics %s)", acc, b)
	}
}
