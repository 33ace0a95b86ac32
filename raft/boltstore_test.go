package raft

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

func openTestStore(t *testing.T) *BoltStore {
	t.Helper()
	s, err := OpenBoltStore(filepath.Join(t.TempDir(), "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestBoltStoreLogs(t *testing.T) {
	s := openTestStore(t)
	if first, _ := s.FirstIndex(); first != 0 {
		t.Fatalf("FirstIndex of empty store = %d, want 0", first)
	}
	at := time.Unix(1700000000, 123)
	var logs []*hraft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &hraft.Log{Index: i, Term: i / 3, Type: hraft.LogCommand, Data: []byte{byte(i), 0, byte(i)}, Extensions: []byte("x"), AppendedAt: at})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	var got hraft.Log
	if err := s.GetLog(7, &got); err != nil {
		t.Fatal(err)
	}
	if got.Index != 7 || got.Term != 2 || !bytes.Equal(got.Data, []byte{7, 0, 7}) || string(got.Extensions) != "x" || !got.AppendedAt.Equal(at) || got.Type != hraft.LogCommand {
		t.Fatalf("GetLog(7) = %+v, want term 2 data [7 0 7]", got)
	}
	if err := s.DeleteRange(1, 4); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.FirstIndex(); first != 5 {
		t.Fatalf("FirstIndex after DeleteRange(1,4) = %d, want 5", first)
	}
	if last, _ := s.LastIndex(); last != 10 {
		t.Fatalf("LastIndex = %d, want 10", last)
	}
	if err := s.GetLog(3, &got); !errors.Is(err, hraft.ErrLogNotFound) {
		t.Fatalf("GetLog(3) after delete: err = %v, want ErrLogNotFound", err)
	}
}

func TestBoltStoreStable(t *testing.T) {
	s := openTestStore(t)
	if _, err := s.Get([]byte("k")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get(absent) err = %v, want \"not found\" (raft compares the text)", err)
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
}

func TestBoltStoreSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLog(&hraft.Log{Index: 1, Term: 1, Data: []byte("job")}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got hraft.Log
	if err := s.GetLog(1, &got); err != nil || string(got.Data) != "job" {
		t.Fatalf("after reopen GetLog(1) = %q, %v; want \"job\"", got.Data, err)
	}
}
