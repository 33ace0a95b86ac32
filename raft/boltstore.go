package raft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	hraft "github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// BoltStore is hashicorp/raft's LogStore and StableStore on one bbolt file.
//
// We write our own rather than use raft-boltdb/v2 because that module pins
// older raft, memberlist and go-metrics releases (docs/decisions.md); the
// two interfaces are small and the tests below hold this one to them.
type BoltStore struct {
	db *bolt.DB
}

var (
	bucketLogs = []byte("logs")
	bucketConf = []byte("conf")
)

// ErrKeyNotFound is what StableStore.Get returns for an absent key.
// hashicorp/raft compares the message, so it must read "not found".
var ErrKeyNotFound = errors.New("not found")

// OpenBoltStore opens (creating if needed) the store at path. Writes are
// fsynced: an acknowledged entry survives a crash.
func OpenBoltStore(path string) (*BoltStore, error) {
	// The freelist is rebuilt on open rather than written at every commit:
	// fewer pages per fsynced transaction on the Raft hot path.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("raft: open log store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLogs, bucketConf} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("raft: init log store %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

// Close closes the underlying file.
func (b *BoltStore) Close() error { return b.db.Close() }

func u64key(v uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], v)
	return k[:]
}

// FirstIndex returns the first index written, or 0 for none.
func (b *BoltStore) FirstIndex() (uint64, error) {
	var idx uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().First(); k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// LastIndex returns the last index written, or 0 for none.
func (b *BoltStore) LastIndex() (uint64, error) {
	var idx uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().Last(); k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// GetLog reads the entry at index into out.
func (b *BoltStore) GetLog(index uint64, out *hraft.Log) error {
	return b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLogs).Get(u64key(index))
		if v == nil {
			return hraft.ErrLogNotFound
		}
		out.Index = index
		return decodeLog(v, out)
	})
}

// StoreLog writes one entry.
func (b *BoltStore) StoreLog(l *hraft.Log) error { return b.StoreLogs([]*hraft.Log{l}) }

// StoreLogs writes entries in one transaction (one fsync).
func (b *BoltStore) StoreLogs(logs []*hraft.Log) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketLogs)
		for _, l := range logs {
			if err := bk.Put(u64key(l.Index), encodeLog(l)); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteRange removes entries min..max inclusive.
func (b *BoltStore) DeleteRange(lo, hi uint64) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLogs).Cursor()
		for k, _ := c.Seek(u64key(lo)); k != nil; k, _ = c.Next() {
			if binary.BigEndian.Uint64(k) > hi {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// dropLogs empties the log bucket (after migrateBoltLogs copied it).
func (b *BoltStore) dropLogs() error {
	return b.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketLogs); err != nil {
			return err
		}
		_, err := tx.CreateBucket(bucketLogs)
		return err
	})
}

// Set stores a stable key.
func (b *BoltStore) Set(key, val []byte) error {
	return b.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketConf).Put(key, val) })
}

// Get reads a stable key; ErrKeyNotFound when absent.
func (b *BoltStore) Get(key []byte) ([]byte, error) {
	var out []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketConf).Get(key)
		if v == nil {
			return ErrKeyNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// SetUint64 stores a stable integer.
func (b *BoltStore) SetUint64(key []byte, val uint64) error { return b.Set(key, u64key(val)) }

// GetUint64 reads a stable integer; ErrKeyNotFound when absent.
func (b *BoltStore) GetUint64(key []byte) (uint64, error) {
	v, err := b.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raft: stable key %q holds %d bytes, want 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// A log entry on disk: term, appended-at (unix ns), type, then the
// length-prefixed data and extensions.
func encodeLog(l *hraft.Log) []byte {
	return appendEncodedLog(make([]byte, 0, 8+8+1+2*binary.MaxVarintLen64+len(l.Data)+len(l.Extensions)), l)
}

func appendEncodedLog(buf []byte, l *hraft.Log) []byte {
	buf = binary.BigEndian.AppendUint64(buf, l.Term)
	buf = binary.BigEndian.AppendUint64(buf, uint64(l.AppendedAt.UnixNano()))
	buf = append(buf, byte(l.Type))
	buf = binary.AppendUvarint(buf, uint64(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = binary.AppendUvarint(buf, uint64(len(l.Extensions)))
	buf = append(buf, l.Extensions...)
	return buf
}

var errCorruptLog = errors.New("raft: corrupt log entry")

func decodeLog(v []byte, out *hraft.Log) error {
	if len(v) < 17 {
		return errCorruptLog
	}
	out.Term = binary.BigEndian.Uint64(v[0:8])
	out.AppendedAt = time.Unix(0, int64(binary.BigEndian.Uint64(v[8:16])))
	out.Type = hraft.LogType(v[16])
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
