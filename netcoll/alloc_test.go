package netcoll

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestZeroAllocs checks that steady-state collectives do not allocate, on
// both the inline (small) and the worker (large) paths and with a
// cancellable context.
func TestZeroAllocs(t *testing.T) {
	for _, tc := range []struct {
		transport string
		n         int
	}{{"tcp", 2}, {"tcp", 3}, {"tcp", 4}, {"shm", 3}} {
		n := tc.n
		comms := startRanks(t, n, func(c *Config) { c.ChunkBytes = 16 << 10; c.Transport = tc.transport })
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for _, count := range []int{5, 300000} {
			type call struct {
				name string
				f    func(c *Comm, a, b, g []float32) error
			}
			calls := []call{
				{"allreduce", func(c *Comm, a, b, _ []float32) error { return AllReduce(ctx, c, a, b, Sum) }},
				{"allreduce-avg-inplace", func(c *Comm, a, _, _ []float32) error { return AllReduce(ctx, c, a, a, Avg) }},
				{"reducescatter", func(c *Comm, _, b, g []float32) error { return ReduceScatter(ctx, c, g, b, Max) }},
				{"allgather", func(c *Comm, a, _, g []float32) error { return AllGather(ctx, c, a, g) }},
				{"broadcast", func(c *Comm, a, _, _ []float32) error { return Broadcast(ctx, c, a, 1) }},
				{"reduce", func(c *Comm, a, b, _ []float32) error { return Reduce(ctx, c, a, b, Sum, 0) }},
				{"barrier", func(c *Comm, _, _, _ []float32) error { return c.Barrier(ctx) }},
			}
			for _, cl := range calls {
				t.Run(fmt.Sprintf("%s/n=%d/%s/%d", tc.transport, n, cl.name, count), func(t *testing.T) {
					allocs := make([]float64, n)
					var wg sync.WaitGroup
					for i, c := range comms {
						wg.Add(1)
						go func() {
							defer wg.Done()
							a, b := make([]float32, count), make([]float32, count)
							g := make([]float32, count*n)
							allocs[i] = testing.AllocsPerRun(20, func() {
								if err := cl.f(c, a, b, g); err != nil {
									t.Error(err)
								}
							})
						}()
					}
					wg.Wait()
					for r, a := range allocs {
						if a != 0 {
							t.Errorf("rank %d: %v allocations per call, want 0", r, a)
						}
					}
				})
			}
		}
	}
}
