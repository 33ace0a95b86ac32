package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/raftnode"
)

// fakeLeadership is a leadership source the test flips at will, with the
// semantics of raftnode.Node.Leadership.
type fakeLeadership struct {
	mu      sync.Mutex
	cur     raftnode.Leadership
	changed chan struct{}
}

func newFakeLeadership() *fakeLeadership { return &fakeLeadership{changed: make(chan struct{})} }

func (f *fakeLeadership) set(leader bool) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cur.Leader = leader
	f.cur.Changes++
	close(f.changed)
	f.changed = make(chan struct{})
	return f.cur.Changes
}

func (f *fakeLeadership) watch() (raftnode.Leadership, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur, f.changed
}

// duties stands for the scheduling and node-health loops: it counts how
// many sets run at once and which term of office each began in.
type duties struct {
	mu         sync.Mutex
	running    int
	maxRunning int
	starts     []uint64 // the Changes count each start saw
	// entered and gate, when set, hold the first start: it says it has
	// begun on entered and waits for gate to close.
	entered chan raftnode.Leadership
	gate    chan struct{}
}

func (d *duties) start(now raftnode.Leadership) context.CancelFunc {
	if d.gate != nil {
		d.entered <- now
		<-d.gate
		d.gate = nil
	}
	d.mu.Lock()
	d.running++
	d.maxRunning = max(d.maxRunning, d.running)
	d.starts = append(d.starts, now.Changes)
	d.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
	}()
	return func() {
		cancel()
		<-done
		d.mu.Lock()
		d.running--
		d.mu.Unlock()
	}
}

func (d *duties) state() (running, maxRunning, starts int, lastTerm uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.starts) > 0 {
		lastTerm = d.starts[len(d.starts)-1]
	}
	return d.running, d.maxRunning, len(d.starts), lastTerm
}

// runLoop runs runWhileLeading until the test ends and checks that it
// leaves no duties running.
func runLoop(t *testing.T, src *fakeLeadership, d *duties) {
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		runWhileLeading(ctx, src.watch, d.start)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
		if running, _, _, _ := d.state(); running != 0 {
			t.Errorf("%d sets of duties still running after the loop returned", running)
		}
	})
}

// TestLeaderLoopFlaps flips leadership thousands of times as fast as it
// can: never more than one set of duties runs, and once the flapping
// stops the duties match the final state — running for the latest term
// when it leads, stopped when it does not.
func TestLeaderLoopFlaps(t *testing.T) {
	src := newFakeLeadership()
	d := &duties{}
	runLoop(t, src, d)
	for i := range 5000 {
		src.set(i%2 == 0)
	}
	final := src.set(true)
	harness.WaitFor(t, "duties of the final term", 10*time.Second, func() bool {
		running, _, _, last := d.state()
		return running == 1 && last == final
	})
	src.set(false)
	harness.WaitFor(t, "duties stopped", 10*time.Second, func() bool {
		running, _, _, _ := d.state()
		return running == 0
	})
	if _, maxRunning, starts, _ := d.state(); maxRunning != 1 || starts < 1 {
		t.Fatalf("after flapping: at most %d sets of duties at once and %d starts, want 1 and at least 1", maxRunning, starts)
	}
}

// TestLeaderLoopLostAndRegainedWhileBusy: leadership lost and regained
// while the loop is busy starting the duties is a new term of office; the
// old term's duties stop and new ones start (Raft's LeaderCh shows this
// as a second "true" that a loop keeping its duties would ignore).
func TestLeaderLoopLostAndRegainedWhileBusy(t *testing.T) {
	src := newFakeLeadership()
	d := &duties{entered: make(chan raftnode.Leadership), gate: make(chan struct{})}
	runLoop(t, src, d)
	first := src.set(true)
	if got := <-d.entered; got.Changes != first {
		t.Fatalf("first start saw %+v, want Changes %d", got, first)
	}
	src.set(false)
	second := src.set(true)
	close(d.gate) // the loop, stuck in the first start, now sees both changes at once
	harness.WaitFor(t, "duties of the second term", 10*time.Second, func() bool {
		running, _, _, last := d.state()
		return running == 1 && last == second
	})
	running, maxRunning, starts, _ := d.state()
	if starts != 2 || maxRunning != 1 || running != 1 {
		t.Fatalf("after terms %d and %d: %d starts, at most %d at once, %d running; want 2, 1, 1", first, second, starts, maxRunning, running)
	}
}

func TestCycleDelay(t *testing.T) {
	end := time.Unix(1000, 0)
	for _, tc := range []struct {
		name      string
		now       time.Time
		lastEnd   time.Time
		lastCycle time.Duration
		want      time.Duration
	}{
		{"first change ever", end, time.Time{}, 0, 0},
		{"after a quiet spell", end.Add(time.Second), end, time.Millisecond, 0},
		{"right after a short cycle", end.Add(time.Millisecond), end, time.Millisecond, minCycleGap - time.Millisecond},
		{"right after a long cycle", end, end, 40 * time.Millisecond, 80 * time.Millisecond},
		{"part way through the gap", end.Add(30 * time.Millisecond), end, 40 * time.Millisecond, 50 * time.Millisecond},
		{"just past the gap", end.Add(81 * time.Millisecond), end, 40 * time.Millisecond, 0},
	} {
		if got := cycleDelay(tc.now, tc.lastEnd, tc.lastCycle); got != tc.want {
			t.Errorf("%s: cycleDelay = %v, want %v", tc.name, got, tc.want)
		}
	}
}
