package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/raft"
)

// WAL is hashicorp/raft's LogStore as an append-only write-ahead log: a
// directory of segment files, each named by the index of its first entry.
// StoreLogs is one write and one fdatasync, where a bbolt transaction is
// two fsyncs (pages, then the meta page) and rewrites whole B+tree pages;
// on the submit path every entry is fsynced by the leader and then by a
// follower before it commits, so this halved the disk waits of a commit
// against the bbolt log Loom had before (docs/design-notes.md has the
// measurements).
//
// A record is a 4-byte payload length, a 4-byte CRC-32C of the payload,
// then the payload: the entry's index and appendEncodedLog's bytes. On
// open every record is checked. A bad record at the end of the last
// segment, with nothing valid after it, is a write that a crash cut short
// (never acknowledged) and is cut off and logged; a bad record anywhere
// else, or one followed by valid records, is corruption and fails the
// open with a *CorruptError (docs/operations.md says what an admin does).
type WAL struct {
	dir       string
	maxSeg    int64
	maxRecord int
	syncDir   func(dir string) error
	log       *slog.Logger

	mu          sync.RWMutex
	segs        []*segment // index order; the last takes appends
	first, last uint64     // 0, 0 when empty
	// dirDirty is set while a segment created or removed may not yet be
	// durable in the directory; nothing is appended until a sync of the
	// directory succeeds, so a failed sync is retried by the next write.
	dirDirty bool
	// tailDirty is set when a failed write may have left bytes past the
	// last segment's end; they are cut before the next write.
	tailDirty bool
}

type segment struct {
	first uint64 // index of its first record
	path  string
	f     *os.File
	offs  []int64 // offs[i] is where record first+i starts
	size  int64   // end of the last record
}

func (s *segment) count() uint64 { return uint64(len(s.offs)) }

// end is the offset just past record i.
func (s *segment) end(i int) int64 {
	if i+1 < len(s.offs) {
		return s.offs[i+1]
	}
	return s.size
}

// MaxRecordBytes is the largest record payload the WAL writes or reads:
// the entry's index, term, time and type, its data and its extensions
// with their lengths (about 30 bytes besides the data). StoreLogs refuses
// an entry over it with ErrRecordTooLarge; a Raft entry must stay below it.
const MaxRecordBytes = 1 << 30

const (
	walSuffix    = ".wal"
	walHeaderLen = 8
	// walMinPayload is the smallest payload appendRecord writes: the index,
	// term, time and type, and two empty lengths.
	walMinPayload = 8 + 17 + 2
	defaultMaxSeg = 64 << 20
)

// ErrRecordTooLarge is returned (wrapped, with the entry's index and size)
// for an entry whose record would exceed the WAL's record limit.
var ErrRecordTooLarge = errors.New("raft: wal: record over the size limit")

// CorruptError is a damaged record that is not a torn tail: the log holds
// acknowledged entries that can no longer be read, so the WAL refuses to
// open rather than drop them.
type CorruptError struct {
	Path   string // the segment file
	Offset int64  // where the bad record starts
	Reason string // what is wrong with it
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("raft: wal: %s at offset %d: %s", e.Path, e.Offset, e.Reason)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// OpenWAL opens (creating if needed) the log in dir. Truncations of the
// log are logged to log (slog.Default() when nil).
func OpenWAL(dir string, log *slog.Logger) (*WAL, error) {
	return openWALWith(dir, walOptions{log: log})
}

// walOptions are OpenWAL's settings; tests shrink the limits and replace
// the directory sync to inject its failure.
type walOptions struct {
	maxSeg    int64
	maxRecord int
	syncDir   func(dir string) error
	log       *slog.Logger
}

func openWAL(dir string, maxSeg int64) (*WAL, error) {
	return openWALWith(dir, walOptions{maxSeg: maxSeg})
}

func openWALWith(dir string, o walOptions) (*WAL, error) {
	if o.maxSeg <= 0 {
		o.maxSeg = defaultMaxSeg
	}
	if o.maxRecord <= 0 || o.maxRecord > MaxRecordBytes {
		o.maxRecord = MaxRecordBytes
	}
	if o.syncDir == nil {
		o.syncDir = syncDir
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft: wal dir: %w", err)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*"+walSuffix))
	if err != nil {
		return nil, err
	}
	type named struct {
		first uint64
		path  string
	}
	var found []named
	for _, p := range names {
		first, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(p), walSuffix), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("raft: wal: unexpected file %s", p)
		}
		found = append(found, named{first, p})
	}
	sort.Slice(found, func(i, j int) bool { return found[i].first < found[j].first })
	w := &WAL{dir: dir, maxSeg: o.maxSeg, maxRecord: o.maxRecord, syncDir: o.syncDir, log: o.log}
	for i, n := range found {
		s, err := w.openSegment(n.path, n.first, i == len(found)-1)
		if err != nil {
			w.Close()
			return nil, err
		}
		if len(w.segs) > 0 {
			prev := w.segs[len(w.segs)-1]
			if want := prev.first + prev.count(); s.first != want {
				s.f.Close()
				w.Close()
				return nil, fmt.Errorf("raft: wal: segment %s starts at index %d, want %d after %s", n.path, s.first, want, prev.path)
			}
		}
		w.segs = append(w.segs, s)
	}
	w.resetBounds()
	return w, nil
}

// openSegment reads a segment's records. A bad record is a torn tail only
// in the last segment and only when no valid record follows it; then it
// and everything after it are cut off. Anything else is corruption.
func (w *WAL) openSegment(path string, first uint64, last bool) (*segment, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("raft: wal: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raft: wal: read %s: %w", path, err)
	}
	s := &segment{first: first, path: path, f: f}
	var off int64
	for off < int64(len(data)) {
		want := first + s.count()
		payload, n, perr := parseRecord(data[off:], w.maxRecord)
		if perr == nil {
			if idx := binary.BigEndian.Uint64(payload); idx != want {
				// A whole, checksummed record in the wrong place was
				// written so: no crash produces it.
				f.Close()
				return nil, &CorruptError{path, off, fmt.Sprintf("record holds index %d, want %d", idx, want)}
			}
			s.offs = append(s.offs, off)
			off += int64(n)
			continue
		}
		if !last {
			f.Close()
			return nil, &CorruptError{path, off, perr.Error()}
		}
		if at, ok := validRecordAfter(data, off, w.maxRecord); ok {
			f.Close()
			return nil, &CorruptError{path, off, fmt.Sprintf("%v, and a valid record follows at offset %d, so it is not a torn write", perr, at)}
		}
		// A write the crash cut short: never acknowledged.
		if err := f.Truncate(off); err != nil {
			f.Close()
			return nil, fmt.Errorf("raft: wal: cut the torn tail of %s: %w", path, err)
		}
		if err := fdatasync(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("raft: wal: %w", err)
		}
		w.log.Warn("wal: cut a torn tail", "file", path, "offset", off,
			"bytes_dropped", int64(len(data))-off, "index", want, "reason", perr.Error())
		break
	}
	s.size = off
	return s, nil
}

// validRecordAfter looks past the bad record at off for any whole,
// checksummed record, and returns where it starts. A crash mid-write
// leaves no such thing after the point it cut; anything else does. Only
// a candidate whose length fits is checksummed, so on the garbage a torn
// write leaves the scan is about linear.
func validRecordAfter(data []byte, off int64, maxRecord int) (int64, bool) {
	n := int64(len(data))
	for p := off + 1; p+walHeaderLen+walMinPayload <= n; p++ {
		size := int64(binary.LittleEndian.Uint32(data[p:]))
		if size < walMinPayload || size > int64(maxRecord) || p+walHeaderLen+size > n {
			continue
		}
		if _, _, err := parseRecord(data[p:], maxRecord); err == nil {
			return p, true
		}
	}
	return 0, false
}

var errTornRecord = errors.New("truncated record")

// parseRecord checks the record at the start of b and returns its payload
// and its length on disk.
func parseRecord(b []byte, maxRecord int) (payload []byte, n int, err error) {
	if len(b) < walHeaderLen {
		return nil, 0, errTornRecord
	}
	size := binary.LittleEndian.Uint32(b[0:4])
	if size < walMinPayload || int64(size) > int64(maxRecord) {
		return nil, 0, fmt.Errorf("record length %d out of range", size)
	}
	if len(b) < walHeaderLen+int(size) {
		return nil, 0, errTornRecord
	}
	payload = b[walHeaderLen : walHeaderLen+int(size)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:8]) {
		return nil, 0, errors.New("checksum mismatch")
	}
	return payload, walHeaderLen + int(size), nil
}

// recordPayloadLen is the length of l's payload as appendRecord writes it.
func recordPayloadLen(l *raft.Log) int {
	return 8 + encodedLogLen(l)
}

func appendRecord(buf []byte, l *raft.Log) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, walHeaderLen)...)
	buf = binary.BigEndian.AppendUint64(buf, l.Index)
	buf = appendEncodedLog(buf, l)
	payload := buf[start+walHeaderLen:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(payload, castagnoli))
	return buf
}

func (w *WAL) resetBounds() {
	w.first, w.last = 0, 0
	for _, s := range w.segs {
		if s.count() == 0 {
			continue
		}
		if w.first == 0 {
			w.first = s.first
		}
		w.last = s.first + s.count() - 1
	}
}

// Close closes the segment files.
func (w *WAL) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first error
	for _, s := range w.segs {
		if err := s.f.Close(); err != nil && first == nil {
			first = err
		}
	}
	w.segs = nil
	return first
}

// FirstIndex returns the first index held, or 0 for none.
func (w *WAL) FirstIndex() (uint64, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.first, nil
}

// LastIndex returns the last index held, or 0 for none.
func (w *WAL) LastIndex() (uint64, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.last, nil
}

// GetLog reads the entry at index into out.
func (w *WAL) GetLog(index uint64, out *raft.Log) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.last == 0 || index < w.first || index > w.last {
		return raft.ErrLogNotFound
	}
	i := sort.Search(len(w.segs), func(i int) bool { return w.segs[i].first > index }) - 1
	s := w.segs[i]
	r := int(index - s.first)
	buf := make([]byte, s.end(r)-s.offs[r])
	if _, err := s.f.ReadAt(buf, s.offs[r]); err != nil {
		return fmt.Errorf("raft: wal: read index %d: %w", index, err)
	}
	payload, _, err := parseRecord(buf, w.maxRecord)
	if err != nil {
		return fmt.Errorf("raft: wal: index %d in %s: %v", index, s.path, err)
	}
	out.Index = binary.BigEndian.Uint64(payload)
	return decodeLog(payload[8:], out)
}

// StoreLog writes one entry.
func (w *WAL) StoreLog(l *raft.Log) error { return w.StoreLogs([]*raft.Log{l}) }

// StoreLogs appends consecutive entries with one write and one fdatasync.
// Entries that overlap the end of the log replace it from their first
// index on; entries that leave a gap (a follower that installed a
// snapshot far ahead of its log) start the log afresh. A batch with an
// entry over the record limit is refused whole, before anything changes.
func (w *WAL) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	for i, l := range logs {
		if i > 0 && l.Index != logs[i-1].Index+1 {
			return fmt.Errorf("raft: wal: entries %d and %d are not consecutive", logs[i-1].Index, l.Index)
		}
		if n := recordPayloadLen(l); n > w.maxRecord {
			return fmt.Errorf("%w: entry %d is %d bytes, the limit is %d bytes", ErrRecordTooLarge, l.Index, n, w.maxRecord)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	idx := logs[0].Index
	switch {
	case w.last != 0 && idx == w.last+1:
	case w.last != 0 && idx >= w.first && idx <= w.last:
		if err := w.truncateFrom(idx); err != nil {
			return err
		}
	default:
		if err := w.removeAll(); err != nil {
			return err
		}
	}
	tail, err := w.tailFor(idx)
	if err != nil {
		return err
	}
	// The segments this write depends on must be in the directory, and
	// the directory must no longer list any removed one, before it is
	// acknowledged.
	if err := w.flushDir(); err != nil {
		return err
	}
	if w.tailDirty {
		if err := tail.f.Truncate(tail.size); err != nil {
			return fmt.Errorf("raft: wal: cut a failed write from %s: %w", tail.path, err)
		}
		w.tailDirty = false
	}
	var buf []byte
	offs := make([]int64, 0, len(logs))
	for _, l := range logs {
		offs = append(offs, tail.size+int64(len(buf)))
		buf = appendRecord(buf, l)
	}
	if _, err := tail.f.WriteAt(buf, tail.size); err != nil {
		w.discardFailedWrite(tail)
		return fmt.Errorf("raft: wal: write: %w", err)
	}
	if err := fdatasync(tail.f); err != nil {
		w.discardFailedWrite(tail)
		return fmt.Errorf("raft: wal: sync: %w", err)
	}
	tail.offs = append(tail.offs, offs...)
	tail.size += int64(len(buf))
	if w.first == 0 {
		w.first = idx
	}
	w.last = logs[len(logs)-1].Index
	return nil
}

// discardFailedWrite cuts what a failed write may have left past the
// tail's end, so that stale records never follow the next, shorter one;
// if even that fails the next write tries again first.
func (w *WAL) discardFailedWrite(tail *segment) {
	if err := tail.f.Truncate(tail.size); err != nil {
		w.tailDirty = true
	}
}

// flushDir syncs the directory if a segment was created or removed since
// it was last synced.
func (w *WAL) flushDir() error {
	if !w.dirDirty {
		return nil
	}
	if err := w.syncDir(w.dir); err != nil {
		return err
	}
	w.dirDirty = false
	return nil
}

// tailFor returns the segment the entry at idx (the next one) goes to,
// starting a new segment when there is none or the last one is full. A new
// segment is kept even when the directory sync that follows fails: the
// sync is retried before anything is written to it.
func (w *WAL) tailFor(idx uint64) (*segment, error) {
	if n := len(w.segs); n > 0 && w.segs[n-1].size < w.maxSeg {
		return w.segs[n-1], nil
	}
	path := filepath.Join(w.dir, fmt.Sprintf("%020d%s", idx, walSuffix))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("raft: wal: new segment: %w", err)
	}
	w.dirDirty = true
	s := &segment{first: idx, path: path, f: f}
	w.segs = append(w.segs, s)
	return s, nil
}

// removeSegment deletes a segment's file; the caller drops it from segs.
// The file is removed before it is closed, so that a failed removal
// leaves the segment as it was.
func (w *WAL) removeSegment(s *segment) error {
	if err := os.Remove(s.path); err != nil {
		return fmt.Errorf("raft: wal: %w", err)
	}
	w.dirDirty = true
	s.f.Close()
	return nil
}

// DeleteRange removes entries lo..hi inclusive: a prefix (log compaction
// after a snapshot) or a suffix (a follower dropping entries that conflict
// with the leader's). Raft asks for nothing else.
func (w *WAL) DeleteRange(lo, hi uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == 0 || hi < w.first || lo > w.last || lo > hi {
		return nil
	}
	switch {
	case lo <= w.first && hi >= w.last:
		return w.removeAll()
	case lo <= w.first:
		// Whole segments go; the one holding hi stays, its earlier
		// entries hidden (they reappear after a restart, which raft
		// tolerates: they are older than its snapshot).
		for len(w.segs) > 1 && w.segs[0].first+w.segs[0].count()-1 <= hi {
			if err := w.removeSegment(w.segs[0]); err != nil {
				w.resetBounds()
				return err
			}
			w.segs = w.segs[1:]
		}
		w.first = hi + 1
		return w.flushDir()
	case hi >= w.last:
		return w.truncateFrom(lo)
	default:
		return fmt.Errorf("raft: wal: cannot delete %d..%d from the middle of %d..%d", lo, hi, w.first, w.last)
	}
}

// truncateFrom drops idx and everything after it. Later segments go first,
// newest first, so that a crash part-way leaves a contiguous log; the
// directory is synced before the segment holding idx is cut and before
// anything new is written. Every cut is logged.
func (w *WAL) truncateFrom(idx uint64) error {
	defer w.resetBounds()
	for len(w.segs) > 0 {
		s := w.segs[len(w.segs)-1]
		if s.first < idx || (s.first == idx && len(w.segs) == 1) {
			break
		}
		if err := w.removeSegment(s); err != nil {
			return err
		}
		w.segs = w.segs[:len(w.segs)-1]
		w.log.Info("wal: dropped entries from the end", "file", s.path, "offset", 0,
			"bytes_dropped", s.size, "from_index", s.first, "entries", s.count())
	}
	if err := w.flushDir(); err != nil {
		return err
	}
	if n := len(w.segs); n > 0 {
		s := w.segs[n-1]
		if r := idx - s.first; r < s.count() {
			if err := s.f.Truncate(s.offs[r]); err != nil {
				return fmt.Errorf("raft: wal: truncate %s: %w", s.path, err)
			}
			w.log.Info("wal: dropped entries from the end", "file", s.path, "offset", s.offs[r],
				"bytes_dropped", s.size-s.offs[r], "from_index", idx, "entries", s.count()-r)
			s.size = s.offs[r]
			s.offs = s.offs[:r]
			if err := fdatasync(s.f); err != nil {
				return fmt.Errorf("raft: wal: sync: %w", err)
			}
		}
	}
	return nil
}

// removeAll empties the log, oldest segment first so that a crash
// part-way leaves a contiguous suffix.
func (w *WAL) removeAll() error {
	if w.last != 0 {
		w.log.Info("wal: dropped every entry", "dir", w.dir, "first_index", w.first, "last_index", w.last, "files", len(w.segs))
	}
	for len(w.segs) > 0 {
		if err := w.removeSegment(w.segs[0]); err != nil {
			w.resetBounds()
			return err
		}
		w.segs = w.segs[1:]
	}
	w.first, w.last = 0, 0
	return w.flushDir()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("raft: wal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("raft: wal: sync %s: %w", dir, err)
	}
	return nil
}
