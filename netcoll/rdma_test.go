package netcoll

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRDMAFailsCleanly: the build machines have no RDMA device (and a
// default build has no verbs at all), so asking for rdma must fail Init on
// every rank with an error that says so, never hang.
func TestRDMAFailsCleanly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := Config{Rank: r, WorldSize: 2, MasterAddr: "127.0.0.1", MasterPort: port, Secret: testSecret,
				Transport: "rdma", ConnectTimeout: 20 * time.Second}
			if r == 0 {
				cfg.StoreListener = ln
			}
			c, err := Init(context.Background(), cfg)
			if c != nil {
				c.Close()
			}
			errs[r] = err
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err == nil {
			t.Errorf("rank %d: Init(transport=rdma) succeeded without an RDMA device", r)
		} else if !strings.HasPrefix(err.Error(), "netcoll: ") {
			t.Errorf("rank %d: error %q lacks the package prefix", r, err)
		}
	}
	if errs[0] != nil && !strings.Contains(errs[0].Error(), "rdma") {
		t.Errorf("rank 0: %v, want an error about rdma", errs[0])
	}
}
