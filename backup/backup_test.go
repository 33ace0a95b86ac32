package backup

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/state"
)

// testState returns a state of two nodes and three jobs, encoded, with
// its hash.
func testState(t *testing.T) (b []byte, index uint64, hash string) {
	t.Helper()
	f := state.NewTestFSM()
	for _, n := range []string{"node1", "node2"} {
		f.Apply(state.CmdRegisterNode, &api.RegisterNodeCommand{Node: state.TestNode(n, 8, 64)})
	}
	for i := range 3 {
		res := f.Apply(state.CmdSubmitJob, &api.SubmitJobCommand{Request: &api.SubmitRequest{
			Spec: &api.JobSpec{Script: "#!/bin/sh\ntrue\n"}, Uid: 1000, Gid: 1000, User: "alice",
			IdempotencyToken: "tok" + string(rune('a'+i))}, NowUnixMs: 1_700_000_000_000})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	v := f.Store.View()
	b, err := v.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	hash, err = v.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return b, v.Index(), hash
}

func TestRoundTrip(t *testing.T) {
	st, index, hash := testState(t)
	file, err := Encode(&api.SnapshotMeta{Index: index, Term: 3, LeaderId: "ctl1"}, st)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Read(bytes.NewReader(file))
	if err != nil {
		t.Fatalf("Read(Encode(...)) = %v", err)
	}
	if f.Meta.Term != 3 || f.Meta.LeaderId != "ctl1" || f.Meta.Size != uint64(len(st)) || !bytes.Equal(f.State, st) {
		t.Fatalf("Read(Encode(...)) = %v, want term 3, leader ctl1, %d bytes of the same state", f.Meta, len(st))
	}
	info, err := f.Inspect()
	if err != nil {
		t.Fatal(err)
	}
	if info.Jobs != 3 || info.Nodes != 2 || info.StateHash != hash {
		t.Fatalf("Inspect() = %d jobs, %d nodes, hash %s; want 3, 2, %s", info.Jobs, info.Nodes, info.StateHash, hash)
	}
}

func TestReadRefusesDamage(t *testing.T) {
	st, index, _ := testState(t)
	good, err := Encode(&api.SnapshotMeta{Index: index, Term: 1}, st)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(at int) []byte {
		b := bytes.Clone(good)
		b[at] ^= 0x40
		return b
	}
	wrongIndex, err := Encode(&api.SnapshotMeta{Index: index + 1, Term: 1}, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"flipped state byte", flip(len(good) - 10), "checksum: the header says sha256"},
		{"truncated", good[:len(good)-5], "size: the header says"},
		{"extra bytes", append(bytes.Clone(good), 'x'), "or more"},
		{"not a snapshot", []byte("hello, world, this is a text file"), "does not start with"},
		{"empty", nil, "too short"},
		{"header index differs", wrongIndex, "index: the header says"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Read(bytes.NewReader(tc.file))
			if err == nil {
				_, err = f.Inspect()
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read+Inspect = %v, want ErrCorrupt containing %q", err, tc.want)
			}
		})
	}
}

// BenchmarkReadAndInspect measures what inspect and a restore's check
// cost for a state of 20,000 jobs with 1 KiB scripts (reported: the
// file's size in MiB).
func BenchmarkReadAndInspect(b *testing.B) {
	f := state.NewTestFSM()
	script := "#!/bin/sh\n" + strings.Repeat("echo some training step\n", 42)
	for i := range 20000 {
		f.Apply(state.CmdSubmitJob, &api.SubmitJobCommand{Request: &api.SubmitRequest{
			Spec: &api.JobSpec{Script: script, Name: "train", GpusPerNode: 8}, Uid: 1000, Gid: 1000, User: "alice",
			IdempotencyToken: strconv.Itoa(i)}, NowUnixMs: 1_700_000_000_000})
	}
	v := f.Store.View()
	st, err := v.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	file, err := Encode(&api.SnapshotMeta{Index: v.Index()}, st)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		sf, err := Read(bytes.NewReader(file))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sf.Inspect(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(file))/(1<<20), "MiB")
}
