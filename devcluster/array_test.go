package devcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/internal/harness"
)

// TestArrayAndHold: an --array becomes one job per task with Slurm's array
// environment and %A_%a output names, at most %N of them at once; a held
// job waits until released.
func TestArrayAndHold(t *testing.T) {
	_, jobs := startCluster(t, 2)
	dir := t.TempDir()
	first := submit(t, jobs, &api.JobSpec{Array: "0-3%2", GpusPerNode: 1, WorkingDir: dir, Output: "arr-%A_%a.out",
		Script: "#!/bin/sh\necho \"$SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID\"\nsleep 1\n"})
	ids := []uint64{first, first + 1, first + 2, first + 3}
	harness.WaitFor(t, "every array task to end", 60*time.Second, func() bool {
		for _, id := range ids {
			if j := getJob(t, jobs, id); !j.State.Terminal() || j.HoldsResources() {
				return false
			}
		}
		return true
	})
	// At most 2 tasks ran at once: from the leader's own start and end
	// times, which a task placed after another ended cannot overlap
	// (polling each task's state in turn could see one end and the next
	// start between two reads).
	var runs [][2]int64
	for _, id := range ids {
		j := getJob(t, jobs, id)
		runs = append(runs, [2]int64{j.StartUnixMs, j.EndUnixMs})
	}
	for _, r := range runs {
		at := 0 // tasks running just after r started
		for _, o := range runs {
			if o[0] <= r[0] && r[0] < o[1] {
				at++
			}
		}
		if at > 2 {
			t.Errorf("%d array tasks ran at once at %d (runs %v), want at most 2 (%%2)", at, r[0], runs)
		}
	}
	for i, id := range ids {
		j := getJob(t, jobs, id)
		if j.State != api.JobState_COMPLETED || j.ArrayJobId != first || j.ArrayTaskId != uint32(i) {
			t.Fatalf("job %d: %s array %d_%d, want COMPLETED %d_%d", id, j.State, j.ArrayJobId, j.ArrayTaskId, first, i)
		}
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("arr-%d_%d.out", first, i)))
		if err != nil || strings.TrimSpace(string(b)) != fmt.Sprintf("%d %d", first, i) {
			t.Errorf("task %d printed %q (%v), want %q", i, b, err, fmt.Sprintf("%d %d", first, i))
		}
	}

	held := submit(t, jobs, &api.JobSpec{Hold: true, Script: "#!/bin/sh\ntrue\n"})
	time.Sleep(300 * time.Millisecond) // several scheduling cycles: a held job must not start
	if j := getJob(t, jobs, held); j.State != api.JobState_PENDING || j.Reason != "JobHeldUser" {
		t.Fatalf("held job: %s (%s), want PENDING JobHeldUser", j.State, j.Reason)
	}
	if _, err := jobs.Hold(context.Background(), &api.HoldRequest{JobIds: []uint64{held}, Release: true}); err != nil {
		t.Fatal(err)
	}
	if j := waitDone(t, jobs, held); j.State != api.JobState_COMPLETED {
		t.Fatalf("released job ended %s, want COMPLETED", j.State)
	}
}
