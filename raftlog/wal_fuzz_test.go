package raftlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzWALOpen opens a segment of whole records followed by arbitrary
// bytes, as a crash or a bad disk may leave it. Properties: the open
// either fails with a CorruptError at or after the whole records, or
// keeps every whole record and cuts only bytes where no valid record of a
// later index starts (a true torn tail); what it keeps reads back, takes
// the next append, and reopens the same.
func FuzzWALOpen(f *testing.F) {
	whole := walEntries(1, 3, 1)
	var prefix []byte
	for _, l := range whole {
		prefix = appendRecord(prefix, l)
	}
	next := appendRecord(nil, walEntries(4, 4, 1)[0])
	f.Add([]byte{})
	f.Add(next[:len(next)-3])               // torn last record
	f.Add(append([]byte{0, 0, 0}, next...)) // garbage, then a valid record
	f.Add(make([]byte, 512))                // zeros a crash left
	flipped := bytes.Clone(next)
	flipped[12] ^= 1
	f.Add(append(flipped, appendRecord(nil, walEntries(5, 5, 1)[0])...)) // bad record before a good one
	f.Add(appendRecord(nil, walEntries(9, 9, 1)[0]))                     // a whole record with the wrong index
	f.Add(appendRecord(bytes.Clone(next), walEntries(5, 5, 1)[0]))       // two more whole records: kept

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "00000000000000000001"+walSuffix)
		data := append(bytes.Clone(prefix), tail...)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		w, err := openWALWith(dir, walOptions{log: quiet})
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Path != path || ce.Offset < int64(len(prefix)) || ce.Offset >= int64(len(data)) {
				t.Fatalf("open: %v, want a CorruptError in %s at or after offset %d", err, path, len(prefix))
			}
			return
		}
		defer func() { w.Close() }()
		last, _ := w.LastIndex()
		if first, _ := w.FirstIndex(); first != 1 || last < 3 {
			t.Fatalf("open kept %d..%d, want at least the whole records 1..3", first, last)
		}
		checkEntries(t, w, 1, 3, term(1))
		kept := w.segs[0].size
		for i := uint64(4); i <= last; i++ { // whole records in the fuzzed bytes
			var l raft.Log
			if err := w.GetLog(i, &l); err != nil || l.Index != i {
				t.Fatalf("GetLog(%d) of %d kept: %+v, %v", i, last, l, err)
			}
		}
		// No record that a brute-force scan finds whole and checksummed
		// starts in the bytes cut off.
		for p := kept; p < int64(len(data)); p++ {
			if payload, _, err := parseRecord(data[p:], MaxRecordBytes); err == nil {
				t.Fatalf("open cut %d bytes at %d, but a valid record of index %d starts at %d", int64(len(data))-kept, kept, binary.BigEndian.Uint64(payload), p)
			}
		}
		if err := w.StoreLogs(walEntries(last+1, last+1, 7)); err != nil {
			t.Fatalf("append after the open: %v", err)
		}
		w.Close()
		w, err = openWALWith(dir, walOptions{log: quiet})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if l, _ := w.LastIndex(); l != last+1 {
			t.Fatalf("after reopen LastIndex = %d, want %d", l, last+1)
		}
	})
}
