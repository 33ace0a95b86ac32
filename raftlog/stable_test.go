package raftlog

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func openTestStore(t *testing.T, path string) *StableStore {
	t.Helper()
	s, err := OpenStableStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStableStore(t *testing.T) {
	s := openTestStore(t, filepath.Join(t.TempDir(), "raft.db"))
	if _, err := s.Get([]byte("k")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get(absent) err = %v, want \"not found\" (raft compares the text)", err)
	}
	if _, err := s.GetUint64([]byte("term")); err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64(absent) err = %v, want \"not found\"", err)
	}
	if err := s.SetUint64([]byte("term"), 42); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetUint64([]byte("term")); err != nil || v != 42 {
		t.Fatalf("GetUint64(term) = %d, %v; want 42", v, err)
	}
	if err := s.Set([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get([]byte("k")); string(v) != "v" {
		t.Fatalf("Get(k) = %q, want %q", v, "v")
	}
	if _, err := s.GetUint64([]byte("k")); err == nil {
		t.Fatal("GetUint64 of a 1-byte value succeeded")
	}
}

func TestStableStoreSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s, err := OpenStableStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("s2")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTestStore(t, path)
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
		t.Fatalf("after reopen GetUint64(CurrentTerm) = %d, %v; want 7", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "s2" {
		t.Fatalf("after reopen Get(LastVoteCand) = %q, %v; want \"s2\"", v, err)
	}
}

// TestStableStoreOpensOlderFile: a raft.db written by an older Loom, with
// its "logs" bucket beside "conf", opens and keeps its term and vote.
func TestStableStoreOpensOlderFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket([]byte("logs")); err != nil {
			return err
		}
		conf, err := tx.CreateBucket([]byte("conf"))
		if err != nil {
			return err
		}
		if err := conf.Put([]byte("CurrentTerm"), binary.BigEndian.AppendUint64(nil, 3)); err != nil {
			return err
		}
		return conf.Put([]byte("LastVoteTerm"), binary.BigEndian.AppendUint64(nil, 3))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := openTestStore(t, path)
	for _, k := range []string{"CurrentTerm", "LastVoteTerm"} {
		if v, err := s.GetUint64([]byte(k)); err != nil || v != 3 {
			t.Fatalf("GetUint64(%s) = %d, %v; want 3", k, v, err)
		}
	}
}
