package acct

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/proto"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "acct.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestArchiveRoundTrip(t *testing.T) {
	s, path := openTemp(t)
	j := &api.Job{Id: 7, User: "alice", State: api.JobState_COMPLETED, EndUnixMs: 1000, Secret: "s3cr3t",
		Spec: &api.JobSpec{Name: "train", Script: "#!/bin/sh\n"}}
	if err := s.Archive(10, []*api.Job{j}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Job(7)
	if err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(j).(*api.Job)
	want.Secret = ""
	if !proto.Equal(got, want) {
		t.Errorf("Job(7) = %v, want %v (the secret dropped)", got, want)
	}
	if j.Secret != "s3cr3t" {
		t.Errorf("Archive changed the caller's job: secret %q", j.Secret)
	}
	if got, err := s.Job(8); got != nil || err != nil {
		t.Errorf("Job(8) = %v, %v; want nil, nil", got, err)
	}
	// The records survive a reopen.
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, err := s2.Job(7); err != nil || !proto.Equal(got, want) {
		t.Errorf("after reopen Job(7) = %v, %v; want %v", got, err, want)
	}
}

// TestArchiveIdempotent: an entry applied again (a restart replays the
// log from the last snapshot) neither duplicates nor changes a record,
// and an older entry never overwrites a newer one.
func TestArchiveIdempotent(t *testing.T) {
	s, _ := openTemp(t)
	j := &api.Job{Id: 3, State: api.JobState_FAILED, Reason: "first", Spec: &api.JobSpec{Script: "x"}}
	for range 3 {
		if err := s.Archive(20, []*api.Job{j}); err != nil {
			t.Fatal(err)
		}
	}
	older := proto.Clone(j).(*api.Job)
	older.Reason = "older"
	if err := s.Archive(19, []*api.Job{older}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Len(); n != 1 {
		t.Errorf("Len() = %d after archiving one job four times, want 1", n)
	}
	if got, _ := s.Job(3); got.Reason != "first" {
		t.Errorf("Job(3).Reason = %q, want %q (index 19 must not overwrite index 20)", got.Reason, "first")
	}
}

// TestArchiveArraySharesSpec: the tasks of an array store their spec
// once, so a large script does not multiply on disk.
func TestArchiveArraySharesSpec(t *testing.T) {
	s, path := openTemp(t)
	spec := &api.JobSpec{Script: strings.Repeat("#", 1<<20), Array: "0-99"}
	var jobs []*api.Job
	for i := range 100 {
		jobs = append(jobs, &api.Job{Id: 100 + uint64(i), ArrayJobId: 100, ArrayTaskId: uint32(i), Spec: spec, State: api.JobState_COMPLETED})
	}
	// Archived in two entries, as tasks ending at different times are.
	if err := s.Archive(5, jobs[:50]); err != nil {
		t.Fatal(err)
	}
	if err := s.Archive(6, jobs[50:]); err != nil {
		t.Fatal(err)
	}
	// A task whose spec changed (held) keeps its own.
	held := proto.Clone(spec).(*api.JobSpec)
	held.Hold = true
	if err := s.Archive(7, []*api.Job{{Id: 200, ArrayJobId: 100, ArrayTaskId: 100, Spec: held}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	for j, err := range s.Recent() {
		if err != nil {
			t.Fatal(err)
		}
		n++
		want := spec
		if j.Id == 200 {
			want = held
		}
		if !proto.Equal(j.Spec, want) {
			t.Fatalf("job %d: spec differs from the one archived", j.Id)
		}
	}
	if n != 101 {
		t.Errorf("Recent yielded %d jobs, want 101", n)
	}
	if size := fileSize(t, path); size > 8<<20 {
		t.Errorf("store is %d bytes for 100 tasks of one 1 MiB spec (+1 own copy); want well under 8 MiB", size)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestUsages(t *testing.T) {
	s, _ := openTemp(t)
	ran := func(id uint64, submit int64, account string, gpus int) *api.Job {
		a := &api.Allocation{}
		for range gpus {
			a.Ranks = append(a.Ranks, &api.Rank{GpuUuids: []string{"GPU-x"}})
		}
		return &api.Job{Id: id, User: "alice", SubmitUnixMs: submit, StartUnixMs: submit + 10, EndUnixMs: submit + 1000,
			State: api.JobState_COMPLETED, Allocation: a, Spec: &api.JobSpec{Account: account}}
	}
	never := &api.Job{Id: 4, User: "bob", SubmitUnixMs: 5000, EndUnixMs: 5000, State: api.JobState_CANCELLED, Spec: &api.JobSpec{}}
	if err := s.Archive(1, []*api.Job{ran(1, 1000, "", 1), ran(2, 2000, "physics", 2), ran(3, 3000, "", 4), never}); err != nil {
		t.Fatal(err)
	}
	var got []Usage
	for u := range s.Usages(2000) {
		got = append(got, u)
	}
	want := []Usage{
		{JobID: 3, User: "alice", GPUs: 4, SubmitMs: 3000, StartMs: 3010, EndMs: 4000},
		{JobID: 2, User: "alice", Account: "physics", GPUs: 2, SubmitMs: 2000, StartMs: 2010, EndMs: 3000},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Usages(2000) = %+v, want %+v (newest first, none before 2000, none for a job that never ran)", got, want)
	}
}
