package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
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
// then the payload: the entry's index and appendEncodedLog's bytes. On open every
// record is checked; a torn or corrupt tail of the last segment (a crash
// mid-write) is cut off, since it was never acknowledged, and damage
// anywhere else is an error.
type WAL struct {
	dir    string
	maxSeg int64

	mu          sync.RWMutex
	segs        []*segment // index order; the last takes appends
	first, last uint64     // 0, 0 when empty
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

const (
	walSuffix     = ".wal"
	walHeaderLen  = 8
	walMaxRecord  = 1 << 30
	defaultMaxSeg = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// OpenWAL opens (creating if needed) the log in dir.
func OpenWAL(dir string) (*WAL, error) {
	return openWAL(dir, defaultMaxSeg)
}

func openWAL(dir string, maxSeg int64) (*WAL, error) {
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
	w := &WAL{dir: dir, maxSeg: maxSeg}
	for i, n := range found {
		s, err := openSegment(n.path, n.first, i == len(found)-1)
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

// openSegment reads a segment's records. In the last segment a bad record
// ends the log there; in any other it is corruption.
func openSegment(path string, first uint64, last bool) (*segment, error) {
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
		payload, n, perr := parseRecord(data[off:])
		if perr == nil {
			if idx := binary.BigEndian.Uint64(payload); idx != first+s.count() {
				perr = fmt.Errorf("record holds index %d, want %d", idx, first+s.count())
			}
		}
		if perr != nil {
			if !last {
				f.Close()
				return nil, fmt.Errorf("raft: wal: %s at offset %d: %v", path, off, perr)
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
			break
		}
		s.offs = append(s.offs, off)
		off += int64(n)
	}
	s.size = off
	return s, nil
}

var errTornRecord = errors.New("truncated record")

// parseRecord checks the record at the start of b and returns its payload
// and its length on disk.
func parseRecord(b []byte) (payload []byte, n int, err error) {
	if len(b) < walHeaderLen {
		return nil, 0, errTornRecord
	}
	size := binary.LittleEndian.Uint32(b[0:4])
	if size < 8 || size > walMaxRecord {
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
	payload, _, err := parseRecord(buf)
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
// snapshot far ahead of its log) start the log afresh.
func (w *WAL) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	for i := 1; i < len(logs); i++ {
		if logs[i].Index != logs[i-1].Index+1 {
			return fmt.Errorf("raft: wal: entries %d and %d are not consecutive", logs[i-1].Index, logs[i].Index)
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
	var buf []byte
	offs := make([]int64, 0, len(logs))
	for _, l := range logs {
		offs = append(offs, tail.size+int64(len(buf)))
		buf = appendRecord(buf, l)
	}
	if _, err := tail.f.WriteAt(buf, tail.size); err != nil {
		_ = tail.f.Truncate(tail.size)
		return fmt.Errorf("raft: wal: write: %w", err)
	}
	if err := fdatasync(tail.f); err != nil {
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

// tailFor returns the segment the entry at idx (the next one) goes to,
// starting a new segment when there is none or the last one is full.
func (w *WAL) tailFor(idx uint64) (*segment, error) {
	if n := len(w.segs); n > 0 && w.segs[n-1].size < w.maxSeg {
		return w.segs[n-1], nil
	}
	path := filepath.Join(w.dir, fmt.Sprintf("%020d%s", idx, walSuffix))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("raft: wal: new segment: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		f.Close()
		return nil, err
	}
	s := &segment{first: idx, path: path, f: f}
	w.segs = append(w.segs, s)
	return s, nil
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
			s := w.segs[0]
			s.f.Close()
			if err := os.Remove(s.path); err != nil {
				return fmt.Errorf("raft: wal: %w", err)
			}
			w.segs = w.segs[1:]
		}
		w.first = hi + 1
		return syncDir(w.dir)
	case hi >= w.last:
		return w.truncateFrom(lo)
	default:
		return fmt.Errorf("raft: wal: cannot delete %d..%d from the middle of %d..%d", lo, hi, w.first, w.last)
	}
}

// truncateFrom drops idx and everything after it. Later segments go first,
// newest first, so that a crash part-way leaves a contiguous log; the
// directory is synced before anything new is written.
func (w *WAL) truncateFrom(idx uint64) error {
	for len(w.segs) > 0 {
		s := w.segs[len(w.segs)-1]
		if s.first < idx || (s.first == idx && len(w.segs) == 1) {
			break
		}
		s.f.Close()
		if err := os.Remove(s.path); err != nil {
			return fmt.Errorf("raft: wal: %w", err)
		}
		w.segs = w.segs[:len(w.segs)-1]
	}
	if err := syncDir(w.dir); err != nil {
		return err
	}
	if n := len(w.segs); n > 0 {
		s := w.segs[n-1]
		if r := idx - s.first; r < s.count() {
			if err := s.f.Truncate(s.offs[r]); err != nil {
				return fmt.Errorf("raft: wal: truncate %s: %w", s.path, err)
			}
			if err := fdatasync(s.f); err != nil {
				return fmt.Errorf("raft: wal: sync: %w", err)
			}
			s.size = s.offs[r]
			s.offs = s.offs[:r]
		}
	}
	w.resetBounds()
	return nil
}

// removeAll empties the log, oldest segment first so that a crash
// part-way leaves a contiguous suffix.
func (w *WAL) removeAll() error {
	for len(w.segs) > 0 {
		s := w.segs[0]
		s.f.Close()
		if err := os.Remove(s.path); err != nil {
			return fmt.Errorf("raft: wal: %w", err)
		}
		w.segs = w.segs[1:]
	}
	w.first, w.last = 0, 0
	return syncDir(w.dir)
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
