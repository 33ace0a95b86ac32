package state

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/loomhpc/loom/api"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// SnapshotArchive is an Archive whose records travel in Raft snapshots
// (api.StateSnapshot's archived field), so that a server that installs a
// snapshot, having never applied the entries that archived those jobs,
// answers sacct for them as the others do. The accounting store
// (state/acct) is one.
type SnapshotArchive interface {
	Archive
	// Records yields the records of every archived job, each array's
	// shared spec before the first task that needs it. Records are only
	// ever added, so it need not read them all at one instant.
	Records(yield func(*api.AccountingRecord) error) error
	// Load stores the records next returns until it returns io.EOF.
	Load(next func() (*api.AccountingRecord, error)) (int, error)
}

// snapshotArchived is api.StateSnapshot's field number of archived.
const snapshotArchived = 20

// maxArchivedRecord bounds one accounting record in a snapshot: a job
// with its spec, whose script the submit limits keep far smaller.
const maxArchivedRecord = 64 << 20

// WriteSnapshot writes v to w as a Raft snapshot, with the records of
// the FSM's archive (see WriteSnapshot).
func (f *FSM) WriteSnapshot(w io.Writer, v *View) error { return WriteSnapshot(w, v, f.archive) }

// WriteSnapshot writes v to w as a snapshot: View.Marshal's encoding,
// then, when a is a SnapshotArchive, its records one at a time as more
// api.StateSnapshot fields (protobuf lets a message's fields come in any
// order), so that the accounting history is never held whole in memory.
// Otherwise it writes View.Marshal alone. FSM.Restore reads either.
func WriteSnapshot(w io.Writer, v *View, a Archive) error {
	b, err := v.Marshal()
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if _, err := bw.Write(b); err != nil {
		return fmt.Errorf("state: write snapshot: %w", err)
	}
	if a, ok := a.(SnapshotArchive); ok {
		var buf []byte
		err := a.Records(func(rec *api.AccountingRecord) error {
			rb, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
			if err != nil {
				return fmt.Errorf("state: encode accounting record of job %d: %w", rec.JobId, err)
			}
			buf = protowire.AppendTag(buf[:0], snapshotArchived, protowire.BytesType)
			buf = protowire.AppendBytes(buf, rb)
			_, err = bw.Write(buf)
			return err
		})
		if err != nil {
			return fmt.Errorf("state: write snapshot's accounting records: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("state: write snapshot: %w", err)
	}
	return nil
}

// snapshotReader reads a snapshot field by field: it hands out the
// archived records one at a time and keeps the other fields' bytes,
// which decode as the api.StateSnapshot without them.
type snapshotReader struct {
	r    *bufio.Reader
	rest bytes.Buffer
	recs int // archived records read
}

// next returns the next archived record, keeping the fields before it in
// rest, or io.EOF after the last field.
func (sr *snapshotReader) next() (*api.AccountingRecord, error) {
	for {
		tag, err := readUvarint(sr.r)
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if err != nil {
			return nil, err
		}
		num, typ := protowire.DecodeTag(tag)
		if num == snapshotArchived && typ == protowire.BytesType {
			n, err := readUvarint(sr.r)
			if err != nil {
				return nil, err
			}
			if n > maxArchivedRecord {
				return nil, fmt.Errorf("state: decode snapshot: an accounting record of %d bytes, over the %d-byte limit", n, maxArchivedRecord)
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(sr.r, b); err != nil {
				return nil, fmt.Errorf("state: read snapshot: %w", err)
			}
			rec := &api.AccountingRecord{}
			if err := proto.Unmarshal(b, rec); err != nil {
				return nil, fmt.Errorf("state: decode snapshot's accounting record %d: %w", sr.recs+1, err)
			}
			sr.recs++
			return rec, nil
		}
		if err := sr.keep(tag, typ); err != nil {
			return nil, err
		}
	}
}

// keep copies the field of tag, whose tag has been read, to rest.
func (sr *snapshotReader) keep(tag uint64, typ protowire.Type) error {
	sr.rest.Write(protowire.AppendVarint(nil, tag))
	var err error
	switch typ {
	case protowire.VarintType:
		var v uint64
		if v, err = readUvarint(sr.r); err == nil {
			sr.rest.Write(protowire.AppendVarint(nil, v))
		}
	case protowire.Fixed64Type:
		_, err = io.CopyN(&sr.rest, sr.r, 8)
	case protowire.Fixed32Type:
		_, err = io.CopyN(&sr.rest, sr.r, 4)
	case protowire.BytesType:
		var n uint64
		if n, err = readUvarint(sr.r); err == nil {
			sr.rest.Write(protowire.AppendVarint(nil, n))
			_, err = io.CopyN(&sr.rest, sr.r, int64(n))
		}
	default:
		return fmt.Errorf("state: decode snapshot: field of wire type %d, which a snapshot never holds", typ)
	}
	if err != nil {
		return fmt.Errorf("state: read snapshot: %w", err)
	}
	return nil
}

// readUvarint reads a varint, with io.EOF only when r ended before its
// first byte.
func readUvarint(r *bufio.Reader) (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		c, err := r.ReadByte()
		if err != nil {
			if shift > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, fmt.Errorf("state: read snapshot: %w", err)
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("state: decode snapshot: a varint over 64 bits")
}

// readSnapshot reads a snapshot from r, storing its archived records in
// the archive as they come (dropping them without a SnapshotArchive), and
// returns the rest of it.
func (f *FSM) readSnapshot(r io.Reader) (*api.StateSnapshot, error) {
	sr := &snapshotReader{r: bufio.NewReaderSize(r, 1<<20)}
	loaded := 0
	if a, ok := f.archive.(SnapshotArchive); ok {
		n, err := a.Load(sr.next)
		if err != nil {
			return nil, fmt.Errorf("state: restore accounting records: %w", err)
		}
		loaded = n
	}
	for {
		if _, err := sr.next(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, err
		}
	}
	var ss api.StateSnapshot
	if err := proto.Unmarshal(sr.rest.Bytes(), &ss); err != nil {
		return nil, fmt.Errorf("state: decode snapshot: %w", err)
	}
	if sr.recs > 0 {
		f.log.Info("restored accounting records from snapshot", "index", ss.Index, "records", sr.recs, "jobs_stored", loaded)
	}
	return &ss, nil
}
