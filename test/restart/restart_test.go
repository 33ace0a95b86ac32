//go:build e2e

// Package restart checks that a loom server killed with SIGKILL and started
// again on the same data dir has lost nothing: every job is there with its
// state, and pending jobs still run.
package restart

import (
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/test/cluster"
)

func TestServerKill9KeepsEveryJob(t *testing.T) {
	dir := t.TempDir()
	srv := cluster.StartServer(t, dir, "server")
	agent := cluster.StartAgent(t, dir, "node1", "dgx-h100", 29500, srv)
	jobs, nodes := cluster.Client(t, srv.Client())
	cluster.WaitFor(t, "the agent to register", 20*time.Second, func() bool {
		r, err := nodes.ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == 1
	})
	submit := func(script string, gpus uint32) uint64 {
		r, err := jobs.Submit(cluster.Ctx(t), &api.SubmitRequest{
			Spec: &api.JobSpec{GpusPerNode: gpus, Script: script, WorkingDir: dir},
		})
		if err != nil {
			t.Fatalf("submit: %v\n%s", err, srv.Tail())
		}
		return r.JobId
	}
	done := submit("#!/bin/sh\ntrue\n", 1)
	running := submit("#!/bin/sh\nsleep 3\n", 8) // holds the whole node
	pending := submit("#!/bin/sh\ntrue\n", 8)    // waits behind it
	cancelled := submit("#!/bin/sh\ntrue\n", 8)  // cancelled while pending
	get := func(id uint64) *api.Job {
		r, err := jobs.GetJob(cluster.Ctx(t), &api.GetJobRequest{JobId: id})
		if err != nil {
			return nil
		}
		return r.Job
	}
	cluster.WaitFor(t, "the 8-GPU job to run", 20*time.Second, func() bool {
		j := get(running)
		return j != nil && j.State == api.JobState_RUNNING
	})
	if _, err := jobs.Cancel(cluster.Ctx(t), &api.CancelRequest{JobIds: []uint64{cancelled}}); err != nil {
		t.Fatal(err)
	}
	before := map[uint64]api.JobState{}
	for _, id := range []uint64{done, running, pending, cancelled} {
		before[id] = get(id).State
	}
	if before[pending] != api.JobState_PENDING || before[cancelled] != api.JobState_CANCELLED {
		t.Fatalf("before the kill: %v", before)
	}

	srv.Kill()
	srv.Restart(t)
	cluster.WaitFor(t, "the restarted server to answer", 20*time.Second, func() bool { return get(done) != nil })
	for id, st := range before {
		j := get(id)
		if j == nil {
			t.Fatalf("job %d lost across the restart\n%s", id, srv.Tail())
		}
		if id != running && id != pending && j.State != st {
			t.Errorf("job %d: state %s after restart, was %s", id, j.State, st)
		}
	}
	for _, id := range []uint64{running, pending} {
		cluster.WaitFor(t, "jobs to finish after the restart", 30*time.Second, func() bool {
			j := get(id)
			return j != nil && j.State.Terminal()
		})
		if j := get(id); j.State != api.JobState_COMPLETED {
			t.Fatalf("job %d ended %s (%s) after the restart, want COMPLETED\n%s\n%s", id, j.State, j.Reason, srv.Tail(), agent.Tail())
		}
	}
	if j := get(cancelled); j.State != api.JobState_CANCELLED {
		t.Fatalf("cancelled job is %s after the restart", j.State)
	}
}
