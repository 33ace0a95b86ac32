package raftnode

import "sync"

// Leadership is what this server last heard from Raft about its own
// leadership.
type Leadership struct {
	Leader bool // this server leads
	// Changes counts the transitions since the node opened. Two values with
	// the same Leader and different Changes are different terms of office:
	// leadership was lost and regained in between, and whatever ran for
	// the first must not go on as if it were the second.
	Changes uint64
}

// leaderWatch turns Raft's NotifyCh, which Raft blocks on and which must
// therefore be drained at once, into the latest Leadership and a channel
// closed at the next change. A reader that is slow misses no change: it
// sees Changes move on. (Raft's own LeaderCh overwrites a pending value
// instead, so a loss and regain while the reader is busy reads as one
// "true".)
type leaderWatch struct {
	mu      sync.Mutex
	cur     Leadership
	changed chan struct{}
}

func newLeaderWatch() *leaderWatch {
	return &leaderWatch{changed: make(chan struct{})}
}

// set records a transition.
func (w *leaderWatch) set(leader bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cur.Leader = leader
	w.cur.Changes++
	close(w.changed)
	w.changed = make(chan struct{})
}

// get returns the latest value and a channel closed when it changes.
func (w *leaderWatch) get() (Leadership, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur, w.changed
}

// relay records every value Raft sends on notify until done is closed.
func (w *leaderWatch) relay(notify <-chan bool, done <-chan struct{}) {
	for {
		select {
		case v := <-notify:
			w.set(v)
		case <-done:
			return
		}
	}
}
