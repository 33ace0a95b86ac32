package raftlog

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// appendEncodedLog appends l as the WAL stores it: term, appended-at (unix
// ns), type, then the length-prefixed data and extensions. The index is
// the record's, not part of this encoding.
func appendEncodedLog(buf []byte, l *raft.Log) []byte {
	buf = binary.BigEndian.AppendUint64(buf, l.Term)
	buf = binary.BigEndian.AppendUint64(buf, uint64(l.AppendedAt.UnixNano()))
	buf = append(buf, byte(l.Type))
	buf = binary.AppendUvarint(buf, uint64(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = binary.AppendUvarint(buf, uint64(len(l.Extensions)))
	buf = append(buf, l.Extensions...)
	return buf
}

// encodedLogLen is the length of appendEncodedLog's encoding of l.
func encodedLogLen(l *raft.Log) int {
	return 17 + uvarintLen(uint64(len(l.Data))) + len(l.Data) + uvarintLen(uint64(len(l.Extensions))) + len(l.Extensions)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

var errCorruptLog = errors.New("raft: corrupt log entry")

// decodeLog reads what appendEncodedLog wrote into out, copying the data.
func decodeLog(v []byte, out *raft.Log) error {
	if len(v) < 17 {
		return errCorruptLog
	}
	out.Term = binary.BigEndian.Uint64(v[0:8])
	out.AppendedAt = time.Unix(0, int64(binary.BigEndian.Uint64(v[8:16])))
	out.Type = raft.LogType(v[16])
	rest := v[17:]
	chunk := func() ([]byte, error) {
		n, w := binary.Uvarint(rest)
		if w <= 0 || uint64(len(rest)-w) < n {
			return nil, errCorruptLog
		}
		b := append([]byte(nil), rest[w:w+int(n)]...)
		rest = rest[w+int(n):]
		return b, nil
	}
	var err error
	if out.Data, err = chunk(); err != nil {
		return err
	}
	if out.Extensions, err = chunk(); err != nil {
		return err
	}
	return nil
}
