package state

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/state/acct"
	"google.golang.org/protobuf/proto"
)

func openAcct(t *testing.T) *acct.Store {
	t.Helper()
	s, err := acct.Open(filepath.Join(t.TempDir(), "acct.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// expireAll cancels ids and expires them at once.
func expireAll(f *TestFSM, ids ...uint64) {
	f.Apply(CmdCancelJobs, &api.CancelJobsCommand{Request: &api.CancelRequest{JobIds: ids}, NowUnixMs: 2000})
	f.Apply(CmdExpireJobs, &api.ExpireJobsCommand{JobIds: ids, NowUnixMs: 3000, MinJobAgeMs: 1000})
}

// TestSnapshotCarriesArchivedJobs: a server that installs a snapshot
// gets the jobs archived up to the snapshot's index in its accounting
// store, array tasks sharing their spec included, and the same live
// state.
func TestSnapshotCarriesArchivedJobs(t *testing.T) {
	f := NewTestFSM()
	src := openAcct(t)
	f.SetArchive(src)
	single := submit(f, "a", &api.JobSpec{Script: "x"}).JobID
	res := f.Apply(CmdSubmitJobs, &api.SubmitJobsCommand{Requests: []*api.SubmitRequest{
		{Spec: &api.JobSpec{Script: "y", Array: "0-2"}, User: "alice", Uid: 1000, Gid: 1000}}, NowUnixMs: 1000})
	if len(res.JobIDs) != 1 {
		t.Fatalf("array submit = %v, %v", res.JobIDs, res.Errs)
	}
	var tasks []uint64
	for j := range f.Store.View().Jobs() {
		if j.ArrayJobId != 0 {
			tasks = append(tasks, j.Id)
		}
	}
	kept := submit(f, "k", &api.JobSpec{Script: "z"}).JobID
	expireAll(f, append(tasks, single)...)
	v := f.Store.View()
	late := submit(f, "l", &api.JobSpec{Script: "w"}).JobID
	expireAll(f, late)

	var snap bytes.Buffer
	if err := f.WriteSnapshot(&snap, v); err != nil {
		t.Fatal(err)
	}
	// An older server reads the snapshot as a plain StateSnapshot.
	var ss api.StateSnapshot
	if err := proto.Unmarshal(snap.Bytes(), &ss); err != nil {
		t.Fatalf("the snapshot does not decode as an api.StateSnapshot: %v", err)
	}
	if n := len(tasks) + 1; len(ss.Archived) < n {
		t.Fatalf("the snapshot carries %d accounting records, want at least %d (jobs and the array's spec)", len(ss.Archived), n)
	}

	g := NewTestFSM()
	dst := openAcct(t)
	g.SetArchive(dst)
	if err := g.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	want, _ := v.Marshal()
	if got, _ := g.Store.View().Marshal(); !bytes.Equal(got, want) {
		t.Fatal("the restored live state differs from the snapshot's")
	}
	if g.Store.View().Job(kept) == nil {
		t.Errorf("job %d, still live, is missing after restore", kept)
	}
	for _, id := range append(tasks, single) {
		w, _ := src.Job(id)
		got, err := dst.Job(id)
		if err != nil || w == nil || !proto.Equal(got, w) {
			t.Errorf("after restore the accounting store has job %d = %v, %v; want %v", id, got, err, w)
		}
	}
	// A job archived after the view was taken comes too, as the entry
	// that archived it (which the server applies next) would store it.
	if w, _ := src.Job(late); w == nil {
		t.Fatalf("job %d is not in the source's accounting store", late)
	} else if got, _ := dst.Job(late); !proto.Equal(got, w) {
		t.Errorf("job %d, archived after the view was taken, restored as %v, want %v", late, got, w)
	}
	if n, _ := dst.Len(); n != len(tasks)+2 {
		t.Errorf("the restored accounting store holds %d jobs, want %d", n, len(tasks)+2)
	}
}

// TestSnapshotWithoutArchive: a snapshot written by a server without an
// accounting store is View.Marshal's encoding, and one with records
// restores on a server without one, dropping them.
func TestSnapshotWithoutArchive(t *testing.T) {
	f := NewTestFSM()
	submit(f, "a", &api.JobSpec{Script: "x"})
	var plain bytes.Buffer
	if err := f.WriteSnapshot(&plain, f.Store.View()); err != nil {
		t.Fatal(err)
	}
	if want, _ := f.Store.View().Marshal(); !bytes.Equal(plain.Bytes(), want) {
		t.Error("WriteSnapshot without an archive differs from View.Marshal")
	}

	h := NewTestFSM()
	h.SetArchive(openAcct(t))
	id := submit(h, "b", &api.JobSpec{Script: "x"}).JobID
	expireAll(h, id)
	var withRecs bytes.Buffer
	if err := h.WriteSnapshot(&withRecs, h.Store.View()); err != nil {
		t.Fatal(err)
	}
	g := NewTestFSM()
	if err := g.Restore(bytes.NewReader(withRecs.Bytes())); err != nil {
		t.Fatal(err)
	}
	if g.Store.View().Index() != h.Store.View().Index() || g.Store.View().NextJobID() != 2 {
		t.Errorf("restored index %d, next id %d; want %d, 2", g.Store.View().Index(), g.Store.View().NextJobID(), h.Store.View().Index())
	}
}

// TestSnapshotTruncatedIsRefused: a snapshot cut short inside an
// accounting record is an error. (A cut between two fields cannot be
// told from a smaller snapshot: Raft's snapshot store checks the size
// and checksum of the whole file.)
func TestSnapshotTruncatedIsRefused(t *testing.T) {
	f := NewTestFSM()
	f.SetArchive(openAcct(t))
	id := submit(f, "a", &api.JobSpec{Script: "x"}).JobID
	submit(f, "b", &api.JobSpec{Script: "x"})
	expireAll(f, id)
	var snap bytes.Buffer
	if err := f.WriteSnapshot(&snap, f.Store.View()); err != nil {
		t.Fatal(err)
	}
	b := snap.Bytes()
	for _, cut := range []int{len(b) - 1, len(b) - 5} {
		g := NewTestFSM()
		g.SetArchive(openAcct(t))
		if err := g.Restore(bytes.NewReader(b[:cut])); err == nil {
			t.Errorf("Restore of the snapshot cut to %d of %d bytes = nil, want an error", cut, len(b))
		}
	}
}
