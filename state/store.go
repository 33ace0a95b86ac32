package state

import (
	"context"
	"sync"
)

// Store publishes the current View and wakes waiters on each change.
type Store struct {
	mu      sync.Mutex
	cur     *View
	changed chan struct{}
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{cur: emptyView(), changed: make(chan struct{})}
}

// View returns the current state.
func (st *Store) View() *View {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cur
}

// Changed returns the current state and a channel closed at the next change.
func (st *Store) Changed() (*View, <-chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cur, st.changed
}

// WaitIndex blocks until the state includes index, or ctx ends.
func (st *Store) WaitIndex(ctx context.Context, index uint64) (*View, error) {
	for {
		snap, ch := st.Changed()
		if snap.index >= index {
			return snap, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return snap, ctx.Err()
		}
	}
}

func (st *Store) publish(s *View) {
	st.mu.Lock()
	st.cur = s
	close(st.changed)
	st.changed = make(chan struct{})
	st.mu.Unlock()
}
