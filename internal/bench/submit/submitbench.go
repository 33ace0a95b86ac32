// Package submitbench is `loom bench submit`: it starts a local cluster of
// real servers (Raft over loopback TCP, bbolt logs fsynced on disk),
// registers simulated nodes, drives concurrent clients submitting jobs
// through any server (followers forward to the leader), and then kills the
// leader several times to time failover. Figures are printed as key=value.
package submit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

type options struct {
	servers, clients, jobs, nodes, failovers int
	dir                                      string
}

// Main runs the benchmark with args (without "bench submit").
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom bench submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.servers, "servers", 3, "servers in the local cluster (1, 3 or 5)")
	fs.IntVar(&o.clients, "clients", 16, "concurrent submitting clients")
	fs.IntVar(&o.jobs, "jobs", 5000, "jobs to submit")
	fs.IntVar(&o.nodes, "nodes", 64, "simulated 8-GPU nodes registered (jobs are placed, never run)")
	fs.IntVar(&o.failovers, "failovers", 3, "times to kill the leader after the throughput run")
	fs.StringVar(&o.dir, "dir", "", "data directory (default: a temporary one, removed afterwards)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(stderr, "loom bench submit:", err)
			return 1
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "loom bench submit:", err)
		return 1
	}
	return 0
}

type cluster struct {
	dir     string
	cfgs    []server.Config
	servers []*server.Server // nil while killed
	conns   []*grpc.ClientConn
}

func (c *cluster) start(i int) error {
	s, err := server.New(c.cfgs[i])
	if err != nil {
		return err
	}
	c.servers[i] = s
	return nil
}

func (c *cluster) leader() int {
	for i, s := range c.servers {
		if s != nil && s.IsLeader() {
			return i
		}
	}
	return -1
}

func (c *cluster) waitLeader(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l := c.leader(); l >= 0 {
			return l, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return -1, fmt.Errorf("no leader within %s", timeout)
}

func (c *cluster) close() {
	for _, cc := range c.conns {
		cc.Close()
	}
	for _, s := range c.servers {
		if s != nil {
			s.Close()
		}
	}
}

func newCluster(o options, log *slog.Logger) (*cluster, error) {
	c := &cluster{dir: o.dir, servers: make([]*server.Server, o.servers)}
	var rpcs []string
	for i := range o.servers {
		rpc, raftAddr := freeAddr(), freeAddr()
		rpcs = append(rpcs, rpc)
		c.cfgs = append(c.cfgs, server.Config{
			Name: fmt.Sprintf("bench%d", i), DataDir: filepath.Join(o.dir, fmt.Sprint(i)),
			RPCAddr: rpc, RaftAddr: raftAddr, MetricsAddr: "-", RaftLogLevel: "off", Logger: log,
		})
	}
	for i := range c.cfgs {
		if o.servers > 1 {
			c.cfgs[i].BootstrapExpect = o.servers
			c.cfgs[i].Join = rpcs
		} else {
			c.cfgs[i].Bootstrap = true
		}
	}
	for i := range c.cfgs {
		if err := c.start(i); err != nil {
			c.close()
			return nil, err
		}
	}
	for _, addr := range rpcs {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.close()
			return nil, err
		}
		c.conns = append(c.conns, cc)
	}
	return c, nil
}

func run(o options, stdout, stderr io.Writer) error {
	if o.dir == "" {
		dir, err := os.MkdirTemp("", "loom-bench-submit-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.dir = dir
	}
	log := slog.New(slog.DiscardHandler)
	c, err := newCluster(o, log)
	if err != nil {
		return err
	}
	defer c.close()
	if _, err := c.waitLeader(20 * time.Second); err != nil {
		return err
	}
	ctx := context.Background()
	if err := registerNodes(ctx, c, o.nodes); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "servers=%d clients=%d jobs=%d fsync=on\n", o.servers, o.clients, o.jobs)

	// Throughput: clients spread over all servers, as LOOM_ADDR would.
	var next atomic.Int64
	lat := make([][]time.Duration, o.clients)
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := time.Now()
	for w := range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(o.jobs) {
				t0 := time.Now()
				if err := submit(ctx, c, w, 20*time.Second); err != nil {
					failed.Add(1)
					fmt.Fprintln(stderr, "submit:", err)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	fmt.Fprintf(stdout, "submit_per_s=%.0f\n", float64(len(all))/elapsed.Seconds())
	fmt.Fprintf(stdout, "submit_p50_ms=%.2f\n", ms(pct(all, 0.50)))
	fmt.Fprintf(stdout, "submit_p99_ms=%.2f\n", ms(pct(all, 0.99)))
	fmt.Fprintf(stdout, "submit_failed=%d\n", failed.Load())

	if o.servers < 3 || o.failovers == 0 {
		return nil
	}
	var fo []time.Duration
	for k := range o.failovers {
		d, err := failover(ctx, c, k)
		if err != nil {
			return err
		}
		fo = append(fo, d)
		fmt.Fprintf(stdout, "failover_%d_ms=%.0f\n", k+1, ms(d))
	}
	slices.Sort(fo)
	fmt.Fprintf(stdout, "failover_ms=%.0f\n", ms(pct(fo, 0.5)))
	return nil
}

// failover crashes the leader (Raft and connections closed at once),
// times until a client's submit is acknowledged again, then restarts the
// killed server on its data dir and waits until it has caught up.
func failover(ctx context.Context, c *cluster, k int) (time.Duration, error) {
	l, err := c.waitLeader(20 * time.Second)
	if err != nil {
		return 0, err
	}
	killed := c.servers[l]
	c.servers[l] = nil
	t0 := time.Now()
	go killed.Crash()
	for {
		// A client that knows every server, starting with a live follower.
		if err := submit(ctx, c, l+1+k, 30*time.Second); err == nil {
			break
		} else if time.Since(t0) > 30*time.Second {
			return 0, fmt.Errorf("no submit acknowledged within 30s of killing the leader: %w", err)
		}
	}
	d := time.Since(t0)
	time.Sleep(200 * time.Millisecond) // let the killed server's listeners close
	if err := c.start(l); err != nil {
		return 0, fmt.Errorf("restart %s: %w", c.cfgs[l].Name, err)
	}
	// Wait for it to be a member that has caught up before the next kill.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ld := c.leader()
		if ld >= 0 && c.servers[l].State().Index() >= c.servers[ld].State().Index() {
			return d, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("restarted %s did not catch up", c.cfgs[l].Name)
}

// submit sends one job, starting at server `first` and going round the
// list on Unavailable with the same idempotency token, as the CLI does.
func submit(ctx context.Context, c *cluster, first int, budget time.Duration) error {
	tok := make([]byte, 16)
	rand.Read(tok)
	req := &api.SubmitRequest{
		Spec: &api.JobSpec{Name: "bench", GpusPerNode: 1, Script: "#!/bin/sh\ntrue\n"},
		User: "bench", Uid: 1000, Gid: 1000, IdempotencyToken: hex.EncodeToString(tok),
	}
	deadline := time.Now().Add(budget)
	var last error
	for i := 0; time.Now().Before(deadline); i++ {
		idx := (first + i) % len(c.conns)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := api.NewJobServiceClient(c.conns[idx]).Submit(cctx, req)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			return err
		}
		if (i+1)%len(c.conns) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return last
}

func registerNodes(ctx context.Context, c *cluster, n int) error {
	l := c.leader()
	agents := api.NewAgentServiceClient(c.conns[l])
	for i := range n {
		name := fmt.Sprintf("sim%04d", i)
		topo := &api.Topology{Profile: "bench"}
		for g := range 8 {
			topo.Gpus = append(topo.Gpus, &api.GPU{Index: uint32(g), Uuid: fmt.Sprintf("GPU-%s-%d", name, g), Healthy: true, Simulated: true})
		}
		node := &api.Node{Name: name, Address: "127.0.0.1:1", Cpus: 64, MemoryMb: 512 << 10, Topology: topo}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := agents.Register(cctx, &api.RegisterRequest{Node: node})
		cancel()
		if err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
	}
	return nil
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
