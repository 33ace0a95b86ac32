package server

import (
	"slices"
	"testing"

	"github.com/loomhpc/loom/api"
)

// TestMergeByIDKeepsIDOrder: archived jobs interleave with live ones by
// id (a short job expires while an older one still runs), and a page cut
// by id must see both in one order, each job once.
func TestMergeByIDKeepsIDOrder(t *testing.T) {
	jobs := func(ids ...uint64) []*api.Job {
		var out []*api.Job
		for _, id := range ids {
			out = append(out, &api.Job{Id: id})
		}
		return out
	}
	for _, tt := range []struct {
		live, old, want []uint64
	}{
		{[]uint64{2, 5, 9}, []uint64{1, 3, 4, 10}, []uint64{1, 2, 3, 4, 5, 9, 10}},
		{nil, []uint64{1, 2}, []uint64{1, 2}},
		{[]uint64{1, 2}, nil, []uint64{1, 2}},
		// Archived as the view was taken: in both, listed once.
		{[]uint64{3, 4}, []uint64{3, 7}, []uint64{3, 4, 7}},
	} {
		var got []uint64
		for j := range mergeByID(slices.Values(jobs(tt.live...)), jobs(tt.old...)) {
			got = append(got, j.Id)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("merge(%v, %v) = %v, want %v", tt.live, tt.old, got, tt.want)
		}
	}
	// A consumer that stops early stops the merge.
	n := 0
	for range mergeByID(slices.Values(jobs(2, 4)), jobs(1, 3)) {
		if n++; n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("merge yielded %d jobs after the consumer stopped at 2", n)
	}
}
