package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/backup"
	"github.com/loomhpc/loom/state"
)

// fakeOperator serves a fixed snapshot file in small pieces and records
// the files it is asked to restore.
type fakeOperator struct {
	apirpc.UnimplementedOperatorServer
	file []byte

	mu       sync.Mutex
	restored [][]byte
}

func (f *fakeOperator) SnapshotSave(_ *api.SnapshotSaveRequest, stream grpc.ServerStreamingServer[api.SnapshotChunk]) error {
	for b := f.file; len(b) > 0; {
		n := min(len(b), 100)
		if err := stream.Send(&api.SnapshotChunk{Data: b[:n]}); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (f *fakeOperator) SnapshotRestore(stream grpc.ClientStreamingServer[api.SnapshotChunk, api.SnapshotRestoreResponse]) error {
	var got bytes.Buffer
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		got.Write(c.Data)
	}
	f.mu.Lock()
	f.restored = append(f.restored, got.Bytes())
	f.mu.Unlock()
	return stream.SendAndClose(&api.SnapshotRestoreResponse{Restored: &api.SnapshotInfo{Jobs: 2, StateHash: "abc"}, RaftIndex: 99})
}

func (f *fakeOperator) start(t *testing.T) string {
	t.Helper()
	return serveGRPC(t, func(srv *grpc.Server) {
		apirpc.RegisterOperatorServer(srv, f)
	})
}

// testSnapshotFile is a snapshot file of a state holding two jobs.
func testSnapshotFile(t *testing.T) []byte {
	t.Helper()
	f := state.NewTestFSM()
	for _, tok := range []string{"a", "b"} {
		f.Apply(state.CmdSubmitJob, &api.SubmitJobCommand{Request: &api.SubmitRequest{Spec: &api.JobSpec{Script: "x"}, IdempotencyToken: tok}})
	}
	v := f.Store.View()
	st, err := v.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b, err := backup.Encode(&api.SnapshotMeta{Index: v.Index(), Term: 4, LeaderId: "ctl2", CreatedUnixMs: testNow.UnixMilli()}, st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSnapshotSaveWritesTheFileAtomically(t *testing.T) {
	op := &fakeOperator{file: testSnapshotFile(t)}
	addr := op.start(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.snap")
	te := newTestEnv("operator", addr)
	if code := te.run(t, "snapshot", "save", path); code != 0 {
		t.Fatalf("snapshot save exited %d: %s", code, te.err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, op.file) {
		t.Fatalf("saved file = %d bytes (%v), want the %d the server sent", len(got), err, len(op.file))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved file mode = %v, want 0600", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("dir holds %d entries after the save, want only the file (no temporary left)", len(entries))
	}
	if out := te.out.String(); !strings.Contains(out, "index 2, term 4, from ctl2, 2 jobs") {
		t.Fatalf("snapshot save printed %q, want the index, term, leader and job count", out)
	}

	// A server that sends a damaged file leaves the old file in place.
	damaged := bytes.Clone(op.file)
	damaged[len(damaged)-3] ^= 1
	op.file = damaged
	te = newTestEnv("operator", addr)
	if code := te.run(t, "snapshot", "save", path); code == 0 || !strings.Contains(te.err.String(), "checksum") {
		t.Fatalf("snapshot save of a damaged stream exited %d, stderr %q; want a refusal naming the checksum", code, te.err)
	}
	if kept, _ := os.ReadFile(path); !bytes.Equal(kept, got) {
		t.Fatal("a refused save changed the existing file")
	}
}

func TestSnapshotInspectAndRestore(t *testing.T) {
	file := testSnapshotFile(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.snap")
	bad := filepath.Join(dir, "bad.snap")
	damaged := bytes.Clone(file)
	damaged[len(damaged)-1] ^= 1
	if err := os.WriteFile(good, file, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	op := &fakeOperator{}
	addr := op.start(t)

	te := newTestEnv("operator", addr)
	if code := te.run(t, "snapshot", "inspect", good); code != 0 {
		t.Fatalf("inspect exited %d: %s", code, te.err)
	}
	for _, want := range []string{"Index       2", "Term        4", "Saved by    ctl2", "(verified)", "Jobs        2", "State hash"} {
		if !strings.Contains(te.out.String(), want) {
			t.Fatalf("inspect printed:\n%s\nwant a line %q", te.stdout, want)
		}
	}

	te = newTestEnv("operator", addr)
	if code := te.run(t, "snapshot", "restore", bad); code == 0 || !strings.Contains(te.err.String(), "checksum") ||
		!strings.Contains(te.err.String(), "cluster is unchanged") {
		t.Fatalf("restore of a damaged file exited %d, stderr %q; want a refusal naming the checksum", code, te.err)
	}
	if len(op.restored) != 0 {
		t.Fatal("a damaged file was sent to the server")
	}

	te = newTestEnv("operator", addr)
	if code := te.run(t, "snapshot", "restore", good); code != 0 {
		t.Fatalf("restore exited %d: %s", code, te.err)
	}
	if len(op.restored) != 1 || !bytes.Equal(op.restored[0], file) {
		t.Fatalf("the server received %d restores, want 1 of the file's exact bytes", len(op.restored))
	}
	if out := te.out.String(); !strings.Contains(out, "Raft index is now 99") {
		t.Fatalf("restore printed %q, want the Raft index the server answered", out)
	}
}

func TestSnapshotUsage(t *testing.T) {
	for _, args := range [][]string{
		{"snapshot"},
		{"snapshot", "save"},
		{"snapshot", "frob", "x"},
		{"snapshot", "save", "a", "b"},
	} {
		te := newTestEnv("operator", deadAddr(t))
		if code := te.run(t, args...); code == 0 || !strings.Contains(te.err.String(), "snapshot") {
			t.Errorf("operator %v exited %d, stderr %q; want a usage error", args, code, te.err)
		}
	}
}
