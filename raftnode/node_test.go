package raftnode

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/state"
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
	res, err := n.Apply(ctx, state.CmdSubmitJob, &api.SubmitJobCommand{Request: &api.SubmitRequest{Spec: &api.JobSpec{Script: "x"}, IdempotencyToken: "a"}})
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
	if j := n.Store().View().JobByToken("a"); j == nil || j.Id != 1 {
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

// TestSnapshotCompactsAndRestores: after a snapshot the log is truncated,
// and a restarted server rebuilds exactly the same state from snapshot
// plus remaining log, applying no entry twice.
func TestSnapshotCompactsAndRestores(t *testing.T) {
	dir := t.TempDir()
	open := func() *Node {
		n, err := Open(Config{NodeID: "s1", DataDir: dir, BindAddr: "127.0.0.1:0", Bootstrap: true, Fast: true,
			SnapshotThreshold: 1 << 20, TrailingLogs: 5})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := open()
	waitLeader(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	submitN := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := n.Apply(ctx, state.CmdSubmitJob, &api.SubmitJobCommand{Request: &api.SubmitRequest{
				Spec: &api.JobSpec{Script: "x"}, IdempotencyToken: fmt.Sprint("tok", i)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	submitN(0, 40)
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	submitN(40, 50) // entries after the snapshot, replayed from the log
	first, _ := n.logs.FirstIndex()
	if first <= 1 {
		t.Fatalf("log first index after snapshot = %d, want it compacted", first)
	}
	wantHash, _ := n.Store().View().Hash()
	n.Close()

	n = open()
	defer n.Close()
	waitLeader(t, n)
	if err := n.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	snap := n.Store().View()
	if got := snap.NumJobs(); got != 50 {
		t.Fatalf("after restart %d jobs, want 50", got)
	}
	if got, _ := snap.Hash(); got != wantHash {
		t.Fatalf("state after snapshot+log replay differs from before the restart")
	}
	if j := snap.JobByToken("tok49"); j == nil || j.Id != 50 {
		t.Fatalf("job of token tok49 = %v, want id 50", j)
	}
}

// TestLeadershipSignalsEveryChange: a relay that the reader does not keep
// up with still counts every transition Raft sends, in order, and a
// single-server node reports leading once it is elected.
func TestLeadershipSignalsEveryChange(t *testing.T) {
	w := newLeaderWatch()
	notify := make(chan bool)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		w.relay(notify, done)
	}()
	_, changed := w.get()
	for i := range 1000 {
		notify <- i%2 == 0 // as Raft does: blocks until relayed
	}
	close(done)
	<-exited
	select {
	case <-changed:
	default:
		t.Fatal("the channel from before the changes was not closed")
	}
	if got, _ := w.get(); got != (Leadership{Leader: false, Changes: 1000}) {
		t.Fatalf("after 1000 transitions ending in a loss: %+v, want Leader false, Changes 1000", got)
	}

	n, err := Open(Config{NodeID: "s1", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", Bootstrap: true, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	deadline := time.After(10 * time.Second)
	for {
		now, changed := n.Leadership()
		if now.Leader && now.Changes >= 1 {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no leadership signal after 10s; now %+v, stats %v", now, n.Stats())
		}
	}
}
