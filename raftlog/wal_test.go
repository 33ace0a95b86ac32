package raftlog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func walEntries(from, to, term uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: term, Type: raft.LogCommand,
			Data: []byte(fmt.Sprintf("entry %d term %d", i, term)), Extensions: []byte{byte(i)},
			AppendedAt: time.Unix(1700000000, int64(i))})
	}
	return out
}

// checkWAL asserts the log holds exactly from..to, each entry with the
// data walEntries gave it at the term termOf returns.
func checkWAL(t *testing.T, w *WAL, from, to uint64, termOf func(uint64) uint64) {
	t.Helper()
	if f, _ := w.FirstIndex(); f != from {
		t.Fatalf("FirstIndex = %d, want %d", f, from)
	}
	if l, _ := w.LastIndex(); l != to {
		t.Fatalf("LastIndex = %d, want %d", l, to)
	}
	if from == 0 {
		return
	}
	for i := from; i <= to; i++ {
		var got raft.Log
		if err := w.GetLog(i, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		want := fmt.Sprintf("entry %d term %d", i, termOf(i))
		if got.Index != i || got.Term != termOf(i) || string(got.Data) != want || !bytes.Equal(got.Extensions, []byte{byte(i)}) ||
			!got.AppendedAt.Equal(time.Unix(1700000000, int64(i))) || got.Type != raft.LogCommand {
			t.Fatalf("GetLog(%d) = %+v, want %q at term %d", i, got, want, termOf(i))
		}
	}
	for _, i := range []uint64{from - 1, to + 1} {
		var got raft.Log
		if err := w.GetLog(i, &got); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(%d) outside %d..%d: err = %v, want ErrLogNotFound", i, from, to, err)
		}
	}
}

func term(t uint64) func(uint64) uint64 { return func(uint64) uint64 { return t } }

func openTestWAL(t *testing.T, dir string, maxSeg int64) *WAL {
	t.Helper()
	w, err := openWAL(dir, maxSeg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// TestWALAppendReopenCompactTruncate drives the log through what raft
// does to it — appends, compaction after a snapshot, a follower dropping a
// conflicting suffix — across several small segments, reopening it after
// each step.
func TestWALAppendReopenCompactTruncate(t *testing.T) {
	dir := t.TempDir()
	w := openTestWAL(t, dir, 512) // a few entries per segment
	checkWAL(t, w, 0, 0, nil)
	for from := uint64(1); from <= 100; from += 10 {
		if err := w.StoreLogs(walEntries(from, from+9, 1)); err != nil {
			t.Fatal(err)
		}
	}
	checkWAL(t, w, 1, 100, term(1))
	if n := len(walFiles(dir)); n < 3 {
		t.Fatalf("%d segment files, want several at 512 bytes each", n)
	}
	reopen := func() {
		t.Helper()
		w.Close()
		w = openTestWAL(t, dir, 512)
	}
	reopen()
	checkWAL(t, w, 1, 100, term(1))

	// Compaction: whole segments before 60 go.
	before := len(walFiles(dir))
	if err := w.DeleteRange(1, 60); err != nil {
		t.Fatal(err)
	}
	checkWAL(t, w, 61, 100, term(1))
	if after := len(walFiles(dir)); after >= before {
		t.Fatalf("compaction left %d of %d segment files", after, before)
	}
	reopen()
	if f, _ := w.FirstIndex(); f > 61 {
		t.Fatalf("after reopen FirstIndex = %d, want at most 61", f)
	}
	if l, _ := w.LastIndex(); l != 100 {
		t.Fatalf("after reopen LastIndex = %d, want 100", l)
	}

	// A follower drops 81..100 and takes the new leader's entries.
	if err := w.DeleteRange(81, 100); err != nil {
		t.Fatal(err)
	}
	if err := w.StoreLogs(walEntries(81, 90, 2)); err != nil {
		t.Fatal(err)
	}
	termOf := func(i uint64) uint64 {
		if i > 80 {
			return 2
		}
		return 1
	}
	checkWAL(t, w, 61, 90, termOf)
	reopen()
	if err := w.DeleteRange(0, 60); err != nil { // what reopening brought back
		t.Fatal(err)
	}
	checkWAL(t, w, 61, 90, termOf)

	// Entries overlapping the end replace it without a DeleteRange.
	if err := w.StoreLogs(walEntries(86, 95, 3)); err != nil {
		t.Fatal(err)
	}
	termOf3 := func(i uint64) uint64 {
		if i > 85 {
			return 3
		}
		return termOf(i)
	}
	checkWAL(t, w, 61, 95, termOf3)
	reopen()
	if err := w.DeleteRange(0, 60); err != nil {
		t.Fatal(err)
	}
	checkWAL(t, w, 61, 95, termOf3)

	// A gap (a snapshot installed far ahead) starts the log afresh.
	if err := w.StoreLogs(walEntries(500, 505, 4)); err != nil {
		t.Fatal(err)
	}
	checkWAL(t, w, 500, 505, term(4))
	reopen()
	checkWAL(t, w, 500, 505, term(4))

	if err := w.DeleteRange(400, 600); err != nil {
		t.Fatal(err)
	}
	checkWAL(t, w, 0, 0, nil)
	if err := w.StoreLogs(walEntries(506, 510, 5)); err != nil {
		t.Fatal(err)
	}
	checkWAL(t, w, 506, 510, term(5))
}

func TestWALRefusesNonConsecutiveBatchAndMiddleDelete(t *testing.T) {
	w := openTestWAL(t, t.TempDir(), defaultMaxSeg)
	bad := append(walEntries(1, 3, 1), walEntries(5, 5, 1)...)
	if err := w.StoreLogs(bad); err == nil || !strings.Contains(err.Error(), "not consecutive") {
		t.Fatalf("StoreLogs(1,2,3,5) err = %v, want a not-consecutive error", err)
	}
	checkWAL(t, w, 0, 0, nil)
	if err := w.StoreLogs(walEntries(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if err := w.DeleteRange(4, 6); err == nil {
		t.Fatal("DeleteRange(4,6) from the middle of 1..10 succeeded")
	}
	checkWAL(t, w, 1, 10, term(1))
}

// TestWALTornTail: a crash in the middle of a write leaves part of a
// record at the end of the last segment. Reopening drops it and keeps
// every whole record; the next append goes where it was.
func TestWALTornTail(t *testing.T) {
	for _, cut := range []int64{1, 5, 8, 20} {
		dir := t.TempDir()
		w, err := openWAL(dir, defaultMaxSeg)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.StoreLogs(walEntries(1, 20, 1)); err != nil {
			t.Fatal(err)
		}
		w.Close()
		files := walFiles(dir)
		path := files[len(files)-1]
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, fi.Size()-cut); err != nil {
			t.Fatal(err)
		}
		w = openTestWAL(t, dir, defaultMaxSeg)
		checkWAL(t, w, 1, 19, term(1))
		if after, err := os.Stat(path); err != nil || after.Size() >= fi.Size()-cut {
			t.Fatalf("cut %d: the torn record is still on disk (%v)", cut, err)
		}
		if err := w.StoreLogs(walEntries(20, 25, 2)); err != nil {
			t.Fatal(err)
		}
		w.Close()
		w = openTestWAL(t, dir, defaultMaxSeg)
		checkWAL(t, w, 1, 25, func(i uint64) uint64 {
			if i >= 20 {
				return 2
			}
			return 1
		})
	}
}

// TestWALCorruption: a flipped byte in the last record of the last
// segment is a torn write and is dropped; one in an earlier segment, which
// was whole when written, fails the open with the file and offset.
func TestWALCorruption(t *testing.T) {
	dir := t.TempDir()
	w, err := openWAL(dir, 512)
	if err != nil {
		t.Fatal(err)
	}
	for from := uint64(1); from <= 50; from += 5 {
		if err := w.StoreLogs(walEntries(from, from+4, 1)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	files := walFiles(dir)
	flip := func(path string, fromEnd int64) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[int64(len(b))-fromEnd] ^= 0xff
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	flip(files[len(files)-1], 3)
	w = openTestWAL(t, dir, 512)
	checkWAL(t, w, 1, 49, term(1))
	w.Close()

	flip(files[0], 3)
	if _, err := openWAL(dir, 512); err == nil || !strings.Contains(err.Error(), filepath.Base(files[0])) || !strings.Contains(err.Error(), "offset") {
		t.Fatalf("open with a corrupt first segment: err = %v, want one naming %s and the offset", err, filepath.Base(files[0]))
	}
}

// BenchmarkWALAppend appends 8-entry batches of 2 KiB entries, each batch
// fsynced, and prints appends per second (docs/design-notes.md compares
// it with the bbolt log Loom had before).
func BenchmarkWALAppend(b *testing.B) {
	entry := bytes.Repeat([]byte("j"), 2048)
	w, err := OpenWAL(filepath.Join(b.TempDir(), "wal"))
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	next := uint64(1)
	start := time.Now()
	for range b.N {
		var batch []*raft.Log
		for i := range uint64(8) {
			batch = append(batch, &raft.Log{Index: next + i, Term: 1, Type: raft.LogCommand, Data: entry})
		}
		if err := w.StoreLogs(batch); err != nil {
			b.Fatal(err)
		}
		next += 8
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "wal_appends/s")
}

// walFiles lists the segment files in dir.
func walFiles(dir string) []string {
	names, _ := filepath.Glob(filepath.Join(dir, "*"+walSuffix))
	slices.Sort(names)
	return names
}
