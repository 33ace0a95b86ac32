package server

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/scheduler"
	"github.com/loomhpc/loom/state"
	"github.com/loomhpc/loom/state/acct"
)

// TestHistoryReadsArchivedJobs: gittins learns the sizes of jobs that
// have left the live state, and only when the policy is gittins.
func TestHistoryReadsArchivedJobs(t *testing.T) {
	st, err := acct.Open(filepath.Join(t.TempDir(), "acct.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	ran := &api.Job{Id: 1, User: "alice", State: api.JobState_COMPLETED, Spec: &api.JobSpec{Account: "physics", Gpus: 2},
		SubmitUnixMs: now.Add(-2 * time.Hour).UnixMilli(), StartUnixMs: now.Add(-2 * time.Hour).UnixMilli(), EndUnixMs: now.Add(-time.Hour).UnixMilli(),
		Allocation: &api.Allocation{Ranks: []*api.Rank{{GpuUuids: []string{"GPU-0", "GPU-1"}}}}}
	if err := st.Archive(5, []*api.Job{ran}); err != nil {
		t.Fatal(err)
	}
	hc := historyCache{archive: st}
	view := state.NewStore().View()
	if h := hc.at(view, now, &scheduler.Config{Order: scheduler.OrderLeastAttained}); h != nil {
		t.Fatalf("las: history = %v, want none", h)
	}
	h := hc.at(view, now, &scheduler.Config{Order: scheduler.OrderGittins})
	// Two GPUs for an hour: the one size learned, so a new job of the
	// class has index 1/7200.
	if h.Len() != 1 {
		t.Fatalf("history holds %d jobs, want 1", h.Len())
	}
	if got, want := h.Index("physics", 2, 0), 1.0/7200; got != want {
		t.Errorf("Index(physics, 2 GPUs, 0) = %g, want %g", got, want)
	}
}
