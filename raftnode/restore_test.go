package raftnode

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/state"
)

// TestRestoreReplacesStateAndSurvivesRestart: a user restore puts back
// exactly the saved state (jobs submitted since are gone, the next job id
// is the saved one), and a restarted server comes back with it.
func TestRestoreReplacesStateAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() *Node {
		n, err := Open(Config{NodeID: "s1", DataDir: dir, BindAddr: "127.0.0.1:0", Bootstrap: true, Fast: true})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := open()
	waitLeader(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	submit := func(tok string) uint64 {
		t.Helper()
		res, err := n.Apply(ctx, state.CmdSubmitJob, &api.SubmitJobCommand{Request: &api.SubmitRequest{
			Spec: &api.JobSpec{Script: "x"}, IdempotencyToken: tok}})
		if err != nil {
			t.Fatal(err)
		}
		return res.JobID
	}
	for i := range 5 {
		submit(fmt.Sprint("saved", i))
	}
	saved := n.Store().View()
	b, err := saved.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	wantHash, _ := saved.Hash()
	for i := range 5 {
		submit(fmt.Sprint("later", i))
	}

	at, err := n.Restore(ctx, b)
	if err != nil {
		t.Fatalf("Restore = %v", err)
	}
	if at <= saved.Index() {
		t.Fatalf("Restore took Raft index %d, want one past the log's end (> %d)", at, saved.Index())
	}
	v := n.Store().View()
	if got, _ := v.Hash(); got != wantHash || v.NumJobs() != 5 {
		t.Fatalf("after Restore: %d jobs, hash %s; want 5 jobs and the saved hash %s", v.NumJobs(), got, wantHash)
	}
	if v.JobByToken("later0") != nil {
		t.Fatal("a job submitted after the save survived the restore")
	}
	if id := submit("after"); id != 6 {
		t.Fatalf("first job after the restore got id %d, want 6 (the saved next id)", id)
	}
	wantHash, _ = n.Store().View().Hash()
	n.Close()

	n = open()
	defer n.Close()
	waitLeader(t, n)
	if err := n.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := n.Store().View().Hash(); got != wantHash {
		t.Fatalf("after a restart the state differs from the restored one plus the entry after it")
	}
}
