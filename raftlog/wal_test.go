package raftlog

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
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
	checkEntries(t, w, from, to, termOf)
	for _, i := range []uint64{from - 1, to + 1} {
		var got raft.Log
		if err := w.GetLog(i, &got); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(%d) outside %d..%d: err = %v, want ErrLogNotFound", i, from, to, err)
		}
	}
}

// checkEntries asserts entries from..to read back with the data
// walEntries gave them at the term termOf returns, whatever else the log
// holds.
func checkEntries(t *testing.T, w *WAL, from, to uint64, termOf func(uint64) uint64) {
	t.Helper()
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
	w, err := OpenWAL(filepath.Join(b.TempDir(), "wal"), nil)
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

// logTo returns a logger that writes text records to buf.
func logTo(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// writeWAL fills a fresh log in dir with entries from..to at term 1 and
// closes it, returning its segment files.
func writeWAL(t *testing.T, dir string, maxSeg int64, from, to uint64) []string {
	t.Helper()
	w, err := openWAL(dir, maxSeg)
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i <= to; i += 5 {
		if err := w.StoreLogs(walEntries(i, min(i+4, to), 1)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	return walFiles(dir)
}

// recordOffsets lists where each record of a segment file starts.
func recordOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := 0; off < len(b); {
		_, n, err := parseRecord(b[off:], MaxRecordBytes)
		if err != nil {
			t.Fatalf("%s at %d: %v", path, off, err)
		}
		offs = append(offs, int64(off))
		off += n
	}
	return offs
}

// TestWALTornTailIsLogged: the cut of a torn tail — a short last record,
// or zeros a crash left after the last whole record — is logged with the
// file, the offset and the bytes dropped.
func TestWALTornTailIsLogged(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tear  func(b []byte) []byte
		keeps uint64
	}{
		{"short last record", func(b []byte) []byte { return b[:len(b)-7] }, 9},
		{"zeros after the end", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := writeWAL(t, dir, defaultMaxSeg, 1, 10)
			path := files[0]
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			offs := recordOffsets(t, path)
			torn := tc.tear(b)
			if err := os.WriteFile(path, torn, 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			w, err := openWALWith(dir, walOptions{log: logTo(&logs)})
			if err != nil {
				t.Fatalf("open with a torn tail: %v", err)
			}
			defer w.Close()
			checkWAL(t, w, 1, tc.keeps, term(1))
			cutAt := int64(len(b))
			if tc.keeps < 10 {
				cutAt = offs[tc.keeps]
			}
			for _, want := range []string{"torn tail", "file=" + path, fmt.Sprintf("offset=%d", cutAt),
				fmt.Sprintf("bytes_dropped=%d", int64(len(torn))-cutAt)} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log %q does not contain %q", logs.String(), want)
				}
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() != cutAt {
				t.Fatalf("segment after the cut: %v, %v; want %d bytes", fi, err, cutAt)
			}
		})
	}
}

// TestWALCorruptRecordBeforeValidOnes: a damaged record in the last
// segment that valid records follow was acknowledged once; the open fails
// with a CorruptError naming the file and the record's offset, whatever
// part of the record is damaged, and the file is left as it was.
func TestWALCorruptRecordBeforeValidOnes(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   int64 // offset into the record of the flipped byte
	}{
		{"length", 1},
		{"checksum", 5},
		{"index", walHeaderLen + 7},
		{"data", walHeaderLen + 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := writeWAL(t, dir, defaultMaxSeg, 1, 10)
			path := files[0]
			offs := recordOffsets(t, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[offs[4]+tc.at] ^= 0x40
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			w, err := openWALWith(dir, walOptions{log: logTo(&logs)})
			if err == nil {
				w.Close()
				t.Fatal("open with a corrupt fifth record of ten succeeded")
			}
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Path != path || ce.Offset != offs[4] {
				t.Fatalf("open: err = %v, want a CorruptError at %s offset %d", err, path, offs[4])
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("offset %d", offs[4])) {
				t.Fatalf("open: err = %q, want the file and offset in the message", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, b) {
				t.Fatalf("the refused open changed the file (%d bytes, was %d)", len(after), len(b))
			}
			if logs.Len() != 0 {
				t.Fatalf("a refused open logged a cut: %s", logs.String())
			}
		})
	}
}

// TestWALRefusesOversizeRecord: an entry whose record is over the limit is
// refused with an error naming the limit, before anything is written or
// truncated; smaller entries go on being appended.
func TestWALRefusesOversizeRecord(t *testing.T) {
	dir := t.TempDir()
	const limit = 200
	w, err := openWALWith(dir, walOptions{maxRecord: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.StoreLogs(walEntries(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		fi, err := os.Stat(walFiles(dir)[0])
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	for _, tc := range []struct {
		name  string
		batch []*raft.Log
	}{
		{"append", []*raft.Log{{Index: 11, Term: 1, Data: make([]byte, limit)}}},
		{"overlap", append(walEntries(5, 6, 2), &raft.Log{Index: 7, Term: 2, Extensions: make([]byte, limit)})},
	} {
		err := w.StoreLogs(tc.batch)
		if !errors.Is(err, ErrRecordTooLarge) || !strings.Contains(err.Error(), fmt.Sprint(limit)) {
			t.Fatalf("%s: StoreLogs with a record over %d bytes: err = %v, want ErrRecordTooLarge naming the limit", tc.name, limit, err)
		}
		checkWAL(t, w, 1, 10, term(1))
		if after := size(); after != before {
			t.Fatalf("%s: the refused batch changed the segment from %d to %d bytes", tc.name, before, after)
		}
	}
	// Exactly at the limit is fine.
	at := &raft.Log{Index: 11, Term: 1}
	at.Data = make([]byte, limit-recordPayloadLen(at)-1)
	if n := recordPayloadLen(at); n != limit {
		t.Fatalf("test entry is %d bytes, want %d", n, limit)
	}
	if err := w.StoreLog(at); err != nil {
		t.Fatalf("StoreLog of a record of exactly %d bytes: %v", limit, err)
	}
	if l, _ := w.LastIndex(); l != 11 {
		t.Fatalf("LastIndex = %d, want 11", l)
	}
}

// failingSync is a directory sync that fails while fail is set.
type failingSync struct {
	fail  bool
	calls int
}

func (f *failingSync) sync(dir string) error {
	f.calls++
	if f.fail {
		return fmt.Errorf("raft: wal: sync %s: %w", dir, syscall.EIO)
	}
	return syncDir(dir)
}

// TestWALDirSyncFailureLeavesLogAppendable: when syncing the directory
// fails — after a new segment, a suffix truncation, or emptying the log —
// the write fails, the log keeps serving what it held, and the same write
// succeeds once the directory can be synced again; a reopen then finds
// exactly what was acknowledged.
func TestWALDirSyncFailureLeavesLogAppendable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch []*raft.Log
		want  func(t *testing.T, w *WAL)
	}{
		{"new segment", walEntries(31, 35, 1), func(t *testing.T, w *WAL) { checkWAL(t, w, 1, 35, term(1)) }},
		// 1..15 and 16..30 are the two segments; 16..30 goes.
		{"suffix truncation", walEntries(14, 18, 2), func(t *testing.T, w *WAL) {
			checkWAL(t, w, 1, 18, func(i uint64) uint64 {
				if i > 13 {
					return 2
				}
				return 1
			})
		}},
		{"gap", walEntries(100, 104, 3), func(t *testing.T, w *WAL) { checkWAL(t, w, 100, 104, term(3)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			const maxSeg = 512 // a few entries per segment
			writeWAL(t, dir, maxSeg, 1, 30)
			fs := &failingSync{}
			w, err := openWALWith(dir, walOptions{maxSeg: maxSeg, syncDir: fs.sync})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { w.Close() }()
			fs.fail = true
			for range 2 { // a second failure must leave it as usable as the first
				if err := w.StoreLogs(tc.batch); !errors.Is(err, syscall.EIO) {
					t.Fatalf("StoreLogs while the directory sync fails: err = %v, want EIO", err)
				}
			}
			if fs.calls == 0 {
				t.Fatal("the directory was never synced")
			}
			// Whatever the failed write removed is gone; what is left reads.
			first, _ := w.FirstIndex()
			last, _ := w.LastIndex()
			for i := first; i <= last && last != 0; i++ {
				var l raft.Log
				if err := w.GetLog(i, &l); err != nil || l.Index != i {
					t.Fatalf("GetLog(%d) after the failed write (log %d..%d): %+v, %v", i, first, last, l, err)
				}
			}
			fs.fail = false
			if err := w.StoreLogs(tc.batch); err != nil {
				t.Fatalf("StoreLogs once the directory syncs again: %v", err)
			}
			tc.want(t, w)
			w.Close()
			w, err = openWALWith(dir, walOptions{maxSeg: maxSeg})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			tc.want(t, w)
		})
	}
}
