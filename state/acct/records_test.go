package acct

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// feed returns a next function for Load over recs.
func feed(recs []*api.AccountingRecord) func() (*api.AccountingRecord, error) {
	return func() (*api.AccountingRecord, error) {
		if len(recs) == 0 {
			return nil, io.EOF
		}
		r := recs[0]
		recs = recs[1:]
		return r, nil
	}
}

func records(t *testing.T, s *Store) []*api.AccountingRecord {
	t.Helper()
	var out []*api.AccountingRecord
	if err := s.Records(func(r *api.AccountingRecord) error {
		out = append(out, proto.Clone(r).(*api.AccountingRecord))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRecordsLoadRoundTrip: what Records gives of one store, loaded into
// an empty one, answers Job and Usages exactly as the first, array tasks
// sharing their spec included.
func TestRecordsLoadRoundTrip(t *testing.T) {
	src, _ := openTemp(t)
	spec := &api.JobSpec{Name: "sweep", Account: "ml", Script: "#!/bin/sh\n"}
	var tasks []*api.Job
	for i := range 3 {
		tasks = append(tasks, &api.Job{Id: uint64(10 + i), ArrayJobId: 10, ArrayTaskId: uint32(i), User: "alice",
			State: api.JobState_COMPLETED, SubmitUnixMs: 100, StartUnixMs: 200, EndUnixMs: 300, Spec: spec})
	}
	single := &api.Job{Id: 5, User: "bob", State: api.JobState_CANCELLED, SubmitUnixMs: 50, EndUnixMs: 60,
		Spec: &api.JobSpec{Name: "one", Script: "#!/bin/sh\n"}}
	late := &api.Job{Id: 20, User: "bob", State: api.JobState_COMPLETED, EndUnixMs: 900, Spec: &api.JobSpec{Name: "late"}}
	for i, batch := range [][]*api.Job{{single}, tasks, {late}} {
		if err := src.Archive(uint64(10*(i+1)), batch); err != nil {
			t.Fatal(err)
		}
	}
	recs := records(t, src)
	dst, _ := openTemp(t)
	n, err := dst.Load(feed(recs))
	if err != nil || n != 5 {
		t.Fatalf("Load = %d, %v; want 5 jobs, nil", n, err)
	}
	for _, id := range []uint64{5, 10, 11, 12, 20} {
		want, _ := src.Job(id)
		if got, err := dst.Job(id); err != nil || !proto.Equal(got, want) {
			t.Errorf("after Load Job(%d) = %v, %v; want %v", id, got, err, want)
		}
	}
	var srcU, dstU []Usage
	for u := range src.Usages(0) {
		srcU = append(srcU, u)
	}
	for u := range dst.Usages(0) {
		dstU = append(dstU, u)
	}
	if len(dstU) != 3 || len(srcU) != len(dstU) {
		t.Fatalf("Usages after Load = %v, want the three tasks' %v", dstU, srcU)
	}
	for i := range srcU {
		if srcU[i] != dstU[i] {
			t.Errorf("Usage %d = %+v, want %+v", i, dstU[i], srcU[i])
		}
	}
	// Loading again changes nothing.
	if n, err := dst.Load(feed(recs)); err != nil || n != 0 {
		t.Errorf("second Load = %d, %v; want 0, nil", n, err)
	}
}

// TestLoadKeepsNewerAndInlinesDifferentSpec: a record this store holds
// from a later entry stays; a task whose array spec here differs from
// the snapshot's gets the snapshot's spec as its own.
func TestLoadKeepsNewerAndInlinesDifferentSpec(t *testing.T) {
	dst, _ := openTemp(t)
	mine := &api.JobSpec{Name: "mine"}
	if err := dst.Archive(50, []*api.Job{
		{Id: 7, User: "a", State: api.JobState_FAILED, Spec: &api.JobSpec{Name: "newer"}},
		{Id: 30, ArrayJobId: 30, User: "a", State: api.JobState_COMPLETED, Spec: mine},
	}); err != nil {
		t.Fatal(err)
	}
	theirs := &api.JobSpec{Name: "theirs"}
	specB, _ := proto.Marshal(theirs)
	job := func(j *api.Job) []byte { b, _ := proto.Marshal(j); return b }
	recs := []*api.AccountingRecord{
		{ArrayJobId: 30, Spec: specB},
		{JobId: 7, Index: 40, Job: job(&api.Job{Id: 7, User: "a", State: api.JobState_COMPLETED, Spec: &api.JobSpec{Name: "older"}})},
		{JobId: 31, Index: 40, SharedSpec: true, Job: job(&api.Job{Id: 31, ArrayJobId: 30, ArrayTaskId: 1, User: "a"})},
	}
	if n, err := dst.Load(feed(recs)); err != nil || n != 1 {
		t.Fatalf("Load = %d, %v; want 1 job (31), nil", n, err)
	}
	if j, _ := dst.Job(7); j.GetSpec().GetName() != "newer" {
		t.Errorf("Job(7) has spec %q after Load, want the newer record's %q", j.GetSpec().GetName(), "newer")
	}
	if j, _ := dst.Job(31); j.GetSpec().GetName() != "theirs" {
		t.Errorf("Job(31) has spec %q, want the snapshot's %q", j.GetSpec().GetName(), "theirs")
	}
	if j, _ := dst.Job(30); j.GetSpec().GetName() != "mine" {
		t.Errorf("Job(30) has spec %q, want its own %q", j.GetSpec().GetName(), "mine")
	}
}

func TestLoadRefusesBadRecords(t *testing.T) {
	tests := []struct {
		name string
		rec  *api.AccountingRecord
	}{
		{"neither job nor spec", &api.AccountingRecord{Index: 3}},
		{"job that does not decode", &api.AccountingRecord{JobId: 1, Index: 3, Job: []byte{0xff}}},
		{"job with another id", &api.AccountingRecord{JobId: 1, Index: 3, Job: []byte{0x08, 0x02}}},
		{"shared spec without array", &api.AccountingRecord{JobId: 2, Index: 3, SharedSpec: true, Job: []byte{0x08, 0x02}}},
		{"spec that does not decode", &api.AccountingRecord{ArrayJobId: 4, Spec: []byte{0xff}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			if _, err := s.Load(feed([]*api.AccountingRecord{tt.rec})); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Load(%v) = %v, want ErrCorrupt", tt.rec, err)
			}
		})
	}
	s, _ := openTemp(t)
	b, _ := proto.Marshal(&api.Job{Id: 9, ArrayJobId: 8})
	if _, err := s.Load(feed([]*api.AccountingRecord{{JobId: 9, Index: 1, SharedSpec: true, Job: b}})); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Load of a task whose array spec is nowhere = %v, want ErrCorrupt", err)
	}
}

// TestRecordsPages: Records reads in pages; a job archived while it
// walks, with an id past the page read, comes too, and an array's spec
// comes once, before the first of its tasks.
func TestRecordsPages(t *testing.T) {
	src, _ := openTemp(t)
	big := strings.Repeat("x", 256<<10)
	var jobs []*api.Job
	for i := range 40 { // 10 MiB: three pages
		jobs = append(jobs, &api.Job{Id: uint64(i + 1), User: "a", State: api.JobState_COMPLETED, Spec: &api.JobSpec{Script: big}})
	}
	spec := &api.JobSpec{Name: "sweep"}
	for i := range 3 {
		jobs = append(jobs, &api.Job{Id: uint64(100 + i), ArrayJobId: 100, ArrayTaskId: uint32(i), User: "a", State: api.JobState_COMPLETED, Spec: spec})
	}
	if err := src.Archive(5, jobs); err != nil {
		t.Fatal(err)
	}
	var got []*api.AccountingRecord
	err := src.Records(func(r *api.AccountingRecord) error {
		if len(got) == 0 {
			if err := src.Archive(6, []*api.Job{{Id: 200, User: "a", State: api.JobState_FAILED}}); err != nil {
				return err
			}
		}
		got = append(got, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	specs := 0
	for _, r := range got {
		if r.JobId == 0 {
			specs++
			if len(ids) != 40 {
				t.Errorf("the spec of array %d came after %d jobs, want right before its first task (after 40)", r.ArrayJobId, len(ids))
			}
			continue
		}
		ids = append(ids, r.JobId)
	}
	if len(ids) != 44 || ids[len(ids)-1] != 200 || specs != 1 {
		t.Fatalf("Records gave %d jobs ending with %d and %d specs; want 44 ending with 200 (archived during the walk) and 1", len(ids), ids[len(ids)-1], specs)
	}
	dst, _ := openTemp(t)
	if n, err := dst.Load(feed(got)); err != nil || n != 44 {
		t.Fatalf("Load = %d, %v; want 44, nil", n, err)
	}
	for _, id := range []uint64{1, 40, 101, 200} {
		want, _ := src.Job(id)
		if j, err := dst.Job(id); err != nil || !proto.Equal(j, want) {
			t.Errorf("after Load Job(%d) = %v, %v; want it as in the source", id, j, err)
		}
	}
}

// TestLoadOfWhatIsThereWritesNothing: loading the records a store
// already holds (a restart from its own snapshot) leaves the file as it
// was.
func TestLoadOfWhatIsThereWritesNothing(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Archive(3, []*api.Job{{Id: 1, User: "a", State: api.JobState_COMPLETED}}); err != nil {
		t.Fatal(err)
	}
	recs := records(t, s)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var txs int
	_ = s.db.View(func(tx *bolt.Tx) error { txs = int(tx.ID()); return nil })
	if n, err := s.Load(feed(recs)); err != nil || n != 0 {
		t.Fatalf("Load of the store's own records = %d, %v; want 0, nil", n, err)
	}
	var after int
	_ = s.db.View(func(tx *bolt.Tx) error { after = int(tx.ID()); return nil })
	if after != txs {
		t.Errorf("Load of the store's own records committed %d transactions, want none", after-txs)
	}
	if st, _ := os.Stat(path); st.Size() != before.Size() {
		t.Errorf("the file grew from %d to %d bytes", before.Size(), st.Size())
	}
}
