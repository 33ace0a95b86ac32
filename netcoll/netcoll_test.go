package netcoll

import (
	"context"
	"fmt"
	"math"
	"net"
	"sync"
	"testing"
	"time"
)

// testSecret is the job secret of the in-process test ranks.
var testSecret = []byte("netcoll test job secret 0123456")

// startRanks starts n in-process ranks over loopback and closes them when
// the test ends.
func startRanks(t testing.TB, n int, mod func(*Config)) []*Comm {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	comms := make([]*Comm, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := Config{
				Rank: r, WorldSize: n, MasterAddr: "127.0.0.1", MasterPort: port, Secret: testSecret,
				Transport: "tcp", ConnectTimeout: 30 * time.Second, Timeout: 30 * time.Second,
			}
			if r == 0 {
				cfg.StoreListener = ln
			}
			if mod != nil {
				mod(&cfg)
			}
			comms[r], errs[r] = Init(context.Background(), cfg)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			closeAll(comms)
			ln.Close()
			t.Fatalf("Init(rank %d of %d) = %v", r, n, err)
		}
	}
	t.Cleanup(func() { closeAll(comms) })
	return comms
}

func closeAll(comms []*Comm) {
	var wg sync.WaitGroup
	for _, c := range comms {
		if c != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.Close() }()
		}
	}
	wg.Wait()
}

// parallel runs f on every rank at once and returns the ranks' errors.
func parallel(comms []*Comm, f func(c *Comm) error) []error {
	errs := make([]error, len(comms))
	var wg sync.WaitGroup
	for i, c := range comms {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f(c) }()
	}
	wg.Wait()
	return errs
}

func fromInt[T Elem](v int) T {
	var z T
	switch any(z).(type) {
	case BFloat16:
		return T(BFloat16FromFloat32(float32(v)))
	case Float16:
		return T(Float16FromFloat32(float32(v)))
	}
	return T(v)
}

func toF64[T Elem](x T) float64 {
	switch v := any(x).(type) {
	case BFloat16:
		return float64(v.Float32())
	case Float16:
		return float64(v.Float32())
	case float32:
		return float64(v)
	case float64:
		return v
	case int32:
		return float64(v)
	case int64:
		return float64(v)
	}
	panic("unreachable")
}

// input is rank r's element i: small integers whose sums and products are
// exact in every element type, so the reference does not depend on the
// order of reduction.
func input(op Op, r, i int) int {
	if op == Prod {
		return []int{-2, -1, 1, 2}[(r*3+i*5)%4]
	}
	return (r*7+i*13)%9 - 4
}

// want is the reference reduction of element i over n ranks.
func want[T Elem](op Op, n, i int) T {
	acc := input(op, 0, i)
	for r := 1; r < n; r++ {
		v := input(op, r, i)
		switch op {
		case Sum, Avg:
			acc += v
		case Prod:
			acc *= v
		case Min:
			acc = min(acc, v)
		case Max:
			acc = max(acc, v)
		}
	}
	x := fromInt[T](acc)
	if op != Avg {
		return x
	}
	switch v := any(x).(type) {
	case BFloat16:
		return T(BFloat16FromFloat32(v.Float32() / float32(n)))
	case Float16:
		return T(Float16FromFloat32(v.Float32() / float32(n)))
	case float32:
		return any(v / float32(n)).(T)
	case float64:
		return any(v / float64(n)).(T)
	case int32:
		return any(v / int32(n)).(T)
	case int64:
		return any(v / int64(n)).(T)
	}
	panic("unreachable")
}

func check[T Elem](t *testing.T, what string, got []T, wantAt func(i int) T) {
	t.Helper()
	bad := 0
	for i := range got {
		if w := wantAt(i); got[i] != w && !(math.IsNaN(toF64(w)) && math.IsNaN(toF64(got[i]))) {
			if bad < 3 {
				t.Errorf("%s: element %d = %v, want %v", what, i, toF64(got[i]), toF64(w))
			}
			bad++
		}
	}
	if bad > 3 {
		t.Errorf("%s: %d wrong elements in all", what, bad)
	}
}

func noErrors(t *testing.T, what string, errs []error) bool {
	t.Helper()
	ok := true
	for r, err := range errs {
		if err != nil {
			t.Errorf("%s: rank %d: %v", what, r, err)
			ok = false
		}
	}
	return ok
}

var allOps = []Op{Sum, Prod, Min, Max, Avg}

func testSizes(short bool) []int {
	// 0, 1, primes, non-multiples of every N and of the test chunk size,
	// and sizes above the inline limit that take the worker path.
	s := []int{0, 1, 2, 3, 7, 13, 97, 1031, 4099}
	if !short {
		s = append(s, 65537)
	}
	return s
}

func runCollectives[T Elem](t *testing.T, comms []*Comm) {
	n := len(comms)
	ctx := context.Background()
	dt := dtypeOf[T]()
	for _, count := range testSizes(testing.Short() || raceEnabled) {
		for _, op := range allOps {
			// AllReduce, alternating in place and out of place.
			inPlace := count%2 == 1
			recvs := make([][]T, n)
			errs := parallel(comms, func(c *Comm) error {
				send := make([]T, count)
				for i := range send {
					send[i] = fromInt[T](input(op, c.Rank(), i))
				}
				recv := send
				if !inPlace {
					recv = make([]T, count)
				}
				recvs[c.Rank()] = recv
				return AllReduce(ctx, c, send, recv, op)
			})
			what := fmt.Sprintf("AllReduce(%v, %v, count=%d, inplace=%v)", dt, op, count, inPlace)
			if noErrors(t, what, errs) {
				for r := range n {
					check(t, fmt.Sprintf("%s rank %d", what, r), recvs[r], func(i int) T { return want[T](op, n, i) })
				}
			}

			// ReduceScatter: count elements per rank.
			errs = parallel(comms, func(c *Comm) error {
				send := make([]T, count*n)
				for i := range send {
					send[i] = fromInt[T](input(op, c.Rank(), i))
				}
				recvs[c.Rank()] = make([]T, count)
				return ReduceScatter(ctx, c, send, recvs[c.Rank()], op)
			})
			what = fmt.Sprintf("ReduceScatter(%v, %v, count=%d)", dt, op, count)
			if noErrors(t, what, errs) {
				for r := range n {
					check(t, fmt.Sprintf("%s rank %d", what, r), recvs[r], func(i int) T { return want[T](op, n, r*count+i) })
				}
			}

			// Reduce to a root that moves with the size.
			root := count % n
			errs = parallel(comms, func(c *Comm) error {
				send := make([]T, count)
				for i := range send {
					send[i] = fromInt[T](input(op, c.Rank(), i))
				}
				var recv []T
				if c.Rank() == root {
					recv = make([]T, count)
					recvs[root] = recv
				}
				return Reduce(ctx, c, send, recv, op, root)
			})
			what = fmt.Sprintf("Reduce(%v, %v, count=%d, root=%d)", dt, op, count, root)
			if noErrors(t, what, errs) {
				check(t, what, recvs[root], func(i int) T { return want[T](op, n, i) })
			}
		}

		// AllGather, in place for odd counts.
		recvs := make([][]T, n)
		errs := parallel(comms, func(c *Comm) error {
			recv := make([]T, count*n)
			send := make([]T, count)
			if count%2 == 1 {
				send = recv[c.Rank()*count : (c.Rank()+1)*count]
			}
			for i := range send {
				send[i] = fromInt[T](input(Sum, c.Rank(), i))
			}
			recvs[c.Rank()] = recv
			return AllGather(ctx, c, send, recv)
		})
		what := fmt.Sprintf("AllGather(%v, count=%d)", dt, count)
		if noErrors(t, what, errs) {
			for r := range n {
				check(t, fmt.Sprintf("%s rank %d", what, r), recvs[r], func(i int) T { return fromInt[T](input(Sum, i/max(count, 1), i%max(count, 1))) })
			}
		}

		// Broadcast from a root that moves with the size.
		root := (count + 1) % n
		errs = parallel(comms, func(c *Comm) error {
			buf := make([]T, count)
			for i := range buf {
				buf[i] = fromInt[T](input(Sum, c.Rank(), i))
			}
			recvs[c.Rank()] = buf
			return Broadcast(ctx, c, buf, root)
		})
		what = fmt.Sprintf("Broadcast(%v, count=%d, root=%d)", dt, count, root)
		if noErrors(t, what, errs) {
			for r := range n {
				check(t, fmt.Sprintf("%s rank %d", what, r), recvs[r], func(i int) T { return fromInt[T](input(Sum, root, i)) })
			}
		}
	}
	errs := parallel(comms, func(c *Comm) error { return c.Barrier(ctx) })
	noErrors(t, "Barrier", errs)
}

// transports lists what the correctness tests run over.
var transports = []string{"tcp", "shm"}

func TestCollectives(t *testing.T) {
	for _, tr := range transports {
		for _, n := range []int{1, 2, 3, 4, 5, 8} {
			for _, algo := range []string{"ring", "rd"} {
				t.Run(fmt.Sprintf("%s/n=%d/%s", tr, n, algo), func(t *testing.T) {
					comms := startRanks(t, n, func(c *Config) {
						c.Transport = tr
						c.Algo = algo
						c.ChunkBytes = 4 << 10 // many chunks even for small messages
						c.NSocks = 3
					})
					for _, c := range comms[1:] {
						if got := c.Transport(0); got != tr {
							t.Fatalf("rank %d reaches rank 0 over %q, want %q", c.Rank(), got, tr)
						}
					}
					t.Run("float32", func(t *testing.T) { runCollectives[float32](t, comms) })
					t.Run("float64", func(t *testing.T) { runCollectives[float64](t, comms) })
					t.Run("int32", func(t *testing.T) { runCollectives[int32](t, comms) })
					t.Run("int64", func(t *testing.T) { runCollectives[int64](t, comms) })
					t.Run("bfloat16", func(t *testing.T) { runCollectives[BFloat16](t, comms) })
					t.Run("float16", func(t *testing.T) { runCollectives[Float16](t, comms) })
				})
			}
		}
	}
}
