package exec

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/loomhpc/loom/agent/driver"
)

func spec(t *testing.T, id string, argv ...string) driver.TaskSpec {
	out := filepath.Join(t.TempDir(), "out")
	return driver.TaskSpec{ID: id, Argv: argv, Dir: t.TempDir(), UID: uint32(os.Geteuid()), GID: uint32(os.Getegid()),
		Stdout: out, Stderr: out, Env: []string{"PATH=/usr/bin:/bin"}}
}

// TestRecoverStopsRanksLeftRunning: a new driver on the same state dir
// (the agent restarted) kills the process group of a rank the old one
// started, and drops the record of one that already ended.
func TestRecoverStopsRanksLeftRunning(t *testing.T) {
	dir := t.TempDir()
	old := New(dir, nil)
	// The rank forks a child in its group: both must go.
	h, err := old.Start(context.Background(), spec(t, "7.1.0", "/bin/sh", "-c", "sleep 300 & wait"))
	if err != nil {
		t.Fatal(err)
	}
	done, err := old.Start(context.Background(), spec(t, "7.1.1", "/bin/true"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := done.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(files(t, dir)) != 2 {
		t.Fatalf("records %v, want one per started rank", files(t, dir))
	}

	handles, err := New(dir, nil).Recover(context.Background(), []string{"7.1.0", "7.1.1"})
	if err != nil || len(handles) != 0 {
		t.Fatalf("Recover = %v, %v; want no handles", handles, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ex, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("the rank left running was not stopped: %v", err)
	}
	if ex.Signal != int(syscall.SIGKILL) {
		t.Fatalf("the rank ended %+v, want killed by SIGKILL", ex)
	}
	// The forked sleep was killed with its group; once init has reaped
	// it the group is gone.
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(-h.PID(), 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still has members", h.PID())
		}
	}
	if left := files(t, dir); len(left) != 0 {
		t.Fatalf("records left after Recover: %v", left)
	}
}

// A record whose pid now belongs to another process (a different start
// time) must not get that process killed.
func TestRecoverSparesReusedPids(t *testing.T) {
	dir := t.TempDir()
	other, err := New("", nil).Start(context.Background(), spec(t, "x", "/bin/sleep", "300"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Signal(syscall.SIGKILL)
	pid := other.PID()
	if err := os.WriteFile(filepath.Join(dir, "9.1.0.pid"), []byte("0 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Right pid, wrong start time.
	if err := os.WriteFile(filepath.Join(dir, "9.1.1.pid"), []byte(fmt.Sprintf("%d %d\n", pid, processStart(pid)+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(dir, nil).Recover(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if other.(*handle).Ended() {
		t.Fatal("a process whose pid matched a stale record was killed")
	}
	if left := files(t, dir); len(left) != 0 {
		t.Fatalf("records left after Recover: %v", left)
	}
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+pidSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
