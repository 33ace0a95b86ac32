package agent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loomhpc/loom/agent/driver"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/internal/harness"
)

// fakeDriver re-attaches to the handles it was given and starts nothing.
type fakeDriver struct {
	handles map[string]*fakeHandle
	known   []string // what Recover was asked about
}

func (d *fakeDriver) Name() string { return "fake" }
func (d *fakeDriver) Start(context.Context, driver.TaskSpec) (driver.Handle, error) {
	return nil, driver.ErrStart
}
func (d *fakeDriver) Recover(_ context.Context, known []string) (map[string]driver.Handle, error) {
	d.known = known
	out := map[string]driver.Handle{}
	for _, k := range known {
		if h, ok := d.handles[k]; ok {
			out[k] = h
		}
	}
	return out, nil
}

// fakeHandle is a running rank that ends on any signal.
type fakeHandle struct {
	mu      sync.Mutex
	signals []syscall.Signal
	done    chan struct{}
	once    sync.Once
}

func (h *fakeHandle) Wait(ctx context.Context) (driver.Exit, error) {
	select {
	case <-h.done:
		return driver.Exit{Signal: int(syscall.SIGTERM)}, nil
	case <-ctx.Done():
		return driver.Exit{}, ctx.Err()
	}
}

func (h *fakeHandle) Signal(sig syscall.Signal) error {
	h.mu.Lock()
	h.signals = append(h.signals, sig)
	h.mu.Unlock()
	h.once.Do(func() { close(h.done) })
	return nil
}

func (h *fakeHandle) PID() int                      { return 1 }
func (h *fakeHandle) Cleanup(context.Context) error { return nil }

func (h *fakeHandle) signalled() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.signals)
}

// TestRecoverTasks starts an agent on a data dir that records two ranks,
// one of which the driver still has: that one is supervised again, the
// other's record is dropped. Closing with DetachOnClose leaves the rank
// running and recorded; closing without stops it.
func TestRecoverTasks(t *testing.T) {
	for _, detach := range []bool{true, false} {
		dir := t.TempDir()
		st, err := openBoltStore(filepath.Join(dir, "agent.db"))
		if err != nil {
			t.Fatal(err)
		}
		job := &api.Job{Id: 3, Uid: 1000, Spec: &api.JobSpec{Argv: []string{"true"}}, Allocation: &api.Allocation{Generation: 1}}
		alive, gone := taskKey{3, 1, 0, 0}, taskKey{3, 1, 1, 0}
		for _, k := range []taskKey{alive, gone} {
			if err := st.putTask(k, &taskRecord{Job: job, Rank: &api.Rank{Rank: k.rank, Node: "n1"}, StartedUnixMs: time.Now().UnixMilli()}); err != nil {
				t.Fatal(err)
			}
		}
		st.Close()

		h := &fakeHandle{done: make(chan struct{})}
		d := &fakeDriver{handles: map[string]*fakeHandle{taskID(alive): h}}
		a, err := New(Config{Name: "n1", Servers: []string{"127.0.0.1:1"}, DataDir: dir, ListenAddr: "127.0.0.1:0",
			MetricsAddr: "-", UseNVML: false, KillGrace: time.Second, DetachOnClose: detach, Driver: d})
		if err != nil {
			t.Fatal(err)
		}
		if len(d.known) != 2 {
			t.Errorf("Recover asked about %v, want both recorded ranks", d.known)
		}
		a.mu.Lock()
		_, supervised := a.tasks[alive]
		_, ghost := a.tasks[gone]
		a.mu.Unlock()
		if !supervised || ghost {
			t.Errorf("detach=%v: after recovery the agent supervises %v=%v %v=%v, want only the one the driver has", detach, alive, supervised, gone, ghost)
		}
		a.Close()
		if got := h.signalled(); (got == 0) != detach {
			t.Errorf("detach=%v: the recovered rank got %d signals on Close", detach, got)
		}
		st, err = openBoltStore(filepath.Join(dir, "agent.db"))
		if err != nil {
			t.Fatal(err)
		}
		recs, _ := st.allTasks()
		st.Close()
		if _, ok := recs[gone]; ok {
			t.Errorf("detach=%v: the record of a rank the driver lost is kept", detach)
		}
		if _, ok := recs[alive]; !ok {
			// Detached: still running. Stopped: its end could not be
			// reported (no servers), so it is kept for the next agent too.
			t.Errorf("detach=%v: the recovered rank's record is gone after Close", detach)
		}
	}
}

// TestReconcileRecoveredRanks feeds a restarted agent the servers' view: a
// recovered rank the servers list as running is kept (not reported lost,
// not started again), and one of a generation they no longer list is
// stopped.
func TestReconcileRecoveredRanks(t *testing.T) {
	dir := t.TempDir()
	st, err := openBoltStore(filepath.Join(dir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	current, stale := taskKey{4, 2, 0, 0}, taskKey{4, 1, 0, 0}
	jobAt := func(gen uint64) *api.Job {
		return &api.Job{Id: 4, Uid: 1000, State: api.JobState_RUNNING, Spec: &api.JobSpec{Argv: []string{"true"}}, Allocation: &api.Allocation{
			Generation: gen, Ranks: []*api.Rank{{Rank: 0, Node: "n1"}},
			Tasks: []*api.TaskStatus{{Rank: 0, State: api.TaskState_TASK_RUNNING}}}}
	}
	for _, k := range []taskKey{current, stale} {
		if err := st.putTask(k, &taskRecord{Job: jobAt(k.gen), Rank: &api.Rank{Rank: 0, Node: "n1"}, StartedUnixMs: time.Now().UnixMilli()}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	hCur, hStale := &fakeHandle{done: make(chan struct{})}, &fakeHandle{done: make(chan struct{})}
	d := &fakeDriver{handles: map[string]*fakeHandle{taskID(current): hCur, taskID(stale): hStale}}
	a, err := New(Config{Name: "n1", Servers: []string{"127.0.0.1:1"}, DataDir: dir, ListenAddr: "127.0.0.1:0",
		MetricsAddr: "-", KillGrace: time.Second, DetachOnClose: true, Driver: d})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.reconcile(&api.AllocationUpdate{Allocations: []*api.AssignedAllocation{{Job: jobAt(2)}}})
	select {
	case <-hStale.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stale generation's rank was not stopped")
	}
	if n := hCur.signalled(); n != 0 {
		t.Errorf("the current rank got %d signals, want it left running", n)
	}
	a.mu.Lock()
	_, running := a.tasks[current]
	a.mu.Unlock()
	if !running {
		t.Errorf("the current rank is no longer supervised")
	}
}

// countingDriver counts Start calls and starts nothing.
type countingDriver struct {
	fakeDriver
	mu     sync.Mutex
	starts []string
}

func (d *countingDriver) Start(_ context.Context, s driver.TaskSpec) (driver.Handle, error) {
	d.mu.Lock()
	d.starts = append(d.starts, s.ID)
	d.mu.Unlock()
	return nil, driver.ErrStart
}

// TestStaleUpdateDoesNotRestartAnEndedRank: an agent lagging behind the
// allocation stream may read, after a rank has ended and been forgotten,
// an update taken before the servers heard of its start. The rank must not
// start a second time (it once did, and truncated the first run's output).
func TestStaleUpdateDoesNotRestartAnEndedRank(t *testing.T) {
	d := &countingDriver{}
	a, err := New(Config{Name: "n1", Servers: []string{"127.0.0.1:1"}, DataDir: t.TempDir(), ListenAddr: "127.0.0.1:0",
		MetricsAddr: "-", KillGrace: time.Second, DetachOnClose: true, Driver: d, AllowRoot: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	work := t.TempDir()
	job := func(gen uint64) *api.Job {
		// Its user is the test's own, with a working directory it can use:
		// the agent checks both before it asks the driver.
		return &api.Job{Id: 5, Uid: uint32(os.Getuid()), State: api.JobState_RUNNING, Spec: &api.JobSpec{Argv: []string{"true"}, WorkingDir: work}, Allocation: &api.Allocation{
			Generation: gen, Ranks: []*api.Rank{{Rank: 0, Node: "n1"}},
			Tasks: []*api.TaskStatus{{Rank: 0, State: api.TaskState_TASK_PENDING}}}}
	}
	// The rank ran here and its end was reported.
	j := job(1)
	a.mu.Lock()
	tk := a.newTask(taskKey{5, 1, 0, 0}, j, j.Allocation.Ranks[0])
	a.mu.Unlock()
	a.forgetTask(tk)

	a.reconcile(&api.AllocationUpdate{Allocations: []*api.AssignedAllocation{{Job: job(1)}}})
	// A requeued job's next generation does start.
	a.reconcile(&api.AllocationUpdate{Allocations: []*api.AssignedAllocation{{Job: job(2)}}})
	// reconcile registers what it starts before it returns, and with no
	// server to take the end report a started rank stays registered.
	a.mu.Lock()
	_, again := a.tasks[taskKey{5, 1, 0, 0}]
	_, next := a.tasks[taskKey{5, 2, 0, 0}]
	a.mu.Unlock()
	if again || !next {
		t.Fatalf("after the updates the agent runs generation 1: %v, generation 2: %v; want only generation 2", again, next)
	}
	harness.WaitFor(t, "the driver to be asked for generation 2", 10*time.Second, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return slices.Contains(d.starts, "5.2.0")
	})
}

// TestRecoverTakesUpUsage restarts an agent on a data dir that records a
// running rank holding a simulated GPU and where its GPU usage count stood
// 5 s ago: the new agent goes on from that count and credits the 5 s since
// (the simulator's held GPUs read 90% ± 6), instead of counting from zero.
func TestRecoverTakesUpUsage(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Name: "n1", Servers: []string{"127.0.0.1:1"}, DataDir: dir, ListenAddr: "127.0.0.1:0",
		MetricsAddr: "-", GPUs: 2, KillGrace: time.Second, DetachOnClose: true}
	// A first agent on the dir, for the simulated GPUs' UUIDs.
	cfg.Driver = &fakeDriver{}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	uuid := a.Node().GetTopology().GetGpus()[0].GetUuid()
	a.Close()

	st, err := openBoltStore(filepath.Join(dir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	k := taskKey{5, 1, 0, 0}
	job := &api.Job{Id: 5, Uid: 1000, Spec: &api.JobSpec{Argv: []string{"true"}}, Allocation: &api.Allocation{Generation: 1}}
	markAt := time.Now().Add(-5 * time.Second)
	if err := st.putTask(k, &taskRecord{Job: job, Rank: &api.Rank{Node: "n1", GpuUuids: []string{uuid}}, StartedUnixMs: markAt.UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	if err := st.putUsage(map[taskKey]usageMark{k: {UsedMs: 12_345, AtUnixMs: markAt.UnixMilli()}}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	cfg.Driver = &fakeDriver{handles: map[string]*fakeHandle{taskID(k): {done: make(chan struct{})}}}
	a, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var got uint64
	harness.WaitFor(t, "the recovered rank's usage count to go on from the stored one", 10*time.Second, func() bool {
		got = a.usage.peek(k)
		return got > 12_345
	})
	// At least 84% of the 5 s since the mark; at most 96% of the time
	// since then, plus a second's slack for the clocks' milliseconds.
	lo, hi := 12_345+0.84*5_000, 12_345+0.96*float64(time.Since(markAt).Milliseconds())+1_000
	if float64(got) < lo || float64(got) > hi {
		t.Errorf("recovered rank's count = %d GPU-ms, want %.0f to %.0f (12345 stored + 84-96%% of the time since)", got, lo, hi)
	}
}
