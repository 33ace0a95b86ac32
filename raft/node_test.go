package raft

import (
	"context"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
)

func TestSingleServerCommitsAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() *Node {
		n, err := Open(Config{NodeID: "s1", DataDir: dir, BindAddr: "127.0.0.1:0", Bootstrap: true, Fast: true})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := open()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitLeader(t, n)
	res, err := n.Apply(ctx, CmdSubmitJob, &api.SubmitJobCommand{Request: &api.SubmitRequest{Spec: &api.JobSpec{Script: "x"}, IdempotencyToken: "a"}})
	if err != nil || res.JobID != 1 {
		t.Fatalf("Apply(SubmitJob) = %+v, %v; want job 1", res, err)
	}
	n.Close()
	n = open()
	defer n.Close()
	waitLeader(t, n)
	if err := n.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if j := n.Store().Snapshot().JobByToken("a"); j == nil || j.Id != 1 {
		t.Fatalf("after restart, job with token a = %v, want job 1", j)
	}
}

func waitLeader(t *testing.T, n *Node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !n.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatalf("no leader after 10s; stats %v", n.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
