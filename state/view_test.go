package state

import (
	"bytes"
	"slices"
	"testing"

	"github.com/loomhpc/loom/api"
)

// TestJobsAfter checks every index JobsAfter reads against a filter of
// all jobs, before and after a snapshot round trip.
func TestJobsAfter(t *testing.T) {
	f := NewTestFSM()
	// Users whose names are prefixes of each other must not mix.
	users := []string{"al", "alice", "bob", "al"}
	for i := range 12 {
		u := users[i%len(users)]
		f.Apply(CmdSubmitJob, &api.SubmitJobCommand{
			Request:   &api.SubmitRequest{Spec: &api.JobSpec{Script: "x"}, User: u, Uid: uint32(1000 + i%len(users))},
			NowUnixMs: 1000,
		})
	}
	f.Apply(CmdCancelJobs, &api.CancelJobsCommand{Request: &api.CancelRequest{JobIds: []uint64{2, 3, 5, 9}, Uid: 0}, NowUnixMs: 2000})

	check := func(t *testing.T, v *View) {
		t.Helper()
		if n := len(slices.Collect(v.ActiveJobs())); n != 8 {
			t.Fatalf("ActiveJobs yields %d jobs, want 8 (12 submitted, 4 cancelled)", n)
		}
		for _, fl := range []JobFilter{
			{}, {Active: true}, {User: "al"}, {User: "alice"}, {User: "alice", Active: true},
			{User: "al", Active: true, AfterID: 4}, {AfterID: 7}, {Active: true, AfterID: 2},
			{User: "nobody"}, {AfterID: 12}, {AfterID: ^uint64(0)},
		} {
			var want []uint64
			for j := range v.Jobs() {
				if (fl.User == "" || j.User == fl.User) && j.Id > fl.AfterID && (!fl.Active || !j.State.Terminal()) {
					want = append(want, j.Id)
				}
			}
			var got []uint64
			for j := range v.JobsAfter(fl) {
				got = append(got, j.Id)
			}
			if !slices.Equal(got, want) {
				t.Errorf("JobsAfter(%+v) = %v, want %v", fl, got, want)
			}
		}
	}
	t.Run("applied", func(t *testing.T) { check(t, f.Store.View()) })
	t.Run("restored", func(t *testing.T) {
		b, err := f.Store.View().Marshal()
		if err != nil {
			t.Fatal(err)
		}
		g := NewTestFSM()
		if err := g.Restore(bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		check(t, g.Store.View())
	})
}
