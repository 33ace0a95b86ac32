package netcoll

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestStoreBoundsWhatRanksSet: a rank that stores more than
// maxStoreBytes is declared failed instead of growing rank 0's memory;
// replacing a key's value does not count twice.
func TestStoreBoundsWhatRanksSet(t *testing.T) {
	s, addr := startStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc, err := dialStore(ctx, addr, testSecret, 0, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.c.Close()
	val := make([]byte, maxFrame-64)
	for range 3 * maxStoreBytes / len(val) {
		if err := sc.set(ctx, "same", val); err != nil {
			t.Fatalf("replacing one key's value: %v", err)
		}
	}
	var err2 error
	for i := 0; i <= maxStoreBytes/len(val)+1 && err2 == nil; i++ {
		err2 = sc.set(ctx, fmt.Sprint("k", i), val)
	}
	if err2 == nil {
		t.Fatalf("setting %d bytes of distinct keys succeeded, want the rank refused", maxStoreBytes+2*len(val))
	}
	s.mu.Lock()
	verdict, held := s.verdict, s.kvBytes
	s.mu.Unlock()
	if !verdict || held > maxStoreBytes {
		t.Errorf("after the overflow: verdict %v, %d bytes held; want a verdict and at most %d", verdict, held, maxStoreBytes)
	}
}
