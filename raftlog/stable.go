package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// StableStore is hashicorp/raft's StableStore (the current term and the
// vote, written a few times per election) in a bbolt file.
//
// We write our own rather than use raft-boltdb/v2 because that module pins
// older raft, memberlist and go-metrics releases (docs/design-notes.md);
// the interface is small and the tests hold this one to it.
type StableStore struct {
	db *bolt.DB
}

// bucketConf holds the stable keys. The file of an older Loom also has a
// "logs" bucket, which nothing reads any more.
var bucketConf = []byte("conf")

// ErrKeyNotFound is what StableStore.Get returns for an absent key.
// hashicorp/raft compares the message, so it must read "not found".
var ErrKeyNotFound = errors.New("not found")

// OpenStableStore opens (creating if needed) the store at path. Writes are
// fsynced: a vote survives a crash.
func OpenStableStore(path string) (*StableStore, error) {
	// The freelist is rebuilt on open rather than written at every commit:
	// fewer pages per fsynced transaction.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("raft: open stable store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketConf)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("raft: init stable store %s: %w", path, err)
	}
	return &StableStore{db: db}, nil
}

// Close closes the underlying file.
func (s *StableStore) Close() error { return s.db.Close() }

// Set stores a stable key.
func (s *StableStore) Set(key, val []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketConf).Put(key, val) })
}

// Get reads a stable key; ErrKeyNotFound when absent.
func (s *StableStore) Get(key []byte) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketConf).Get(key)
		if v == nil {
			return ErrKeyNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// SetUint64 stores a stable integer, big-endian.
func (s *StableStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 reads a stable integer; ErrKeyNotFound when absent.
func (s *StableStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raft: stable key %q holds %d bytes, want 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
