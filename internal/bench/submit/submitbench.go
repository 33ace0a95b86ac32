// Package submit is `loom bench submit`: it starts a local cluster of real
// server processes (this binary; Raft over loopback TCP, logs fsynced on
// disk), registers simulated nodes, drives concurrent clients submitting
// jobs through any server (followers forward to the leader), and then
// kills the leader process with SIGKILL several times to time failover.
// Figures are printed as key=value.
package submit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the benchmark's clients to this file (the servers are other processes)")
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

// cluster is the benchmark's servers with a connection to each.
type cluster struct {
	servers []*harness.Server
	ca      *harness.PKI
	conns   []*grpc.ClientConn
	ops     []apirpc.OperatorClient
}

// newCluster starts o.servers server processes of this very binary,
// wherever it was run from, with their data dirs and logs in o.dir.
func newCluster(o options) (*cluster, error) {
	bin, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ca, err := harness.NewPKI(filepath.Join(o.dir, "tls"))
	if err != nil {
		return nil, err
	}
	servers, err := harness.StartServers(bin, o.dir, o.servers, "", harness.ServerOptions{PKI: ca, Flags: []string{"--log-level", "warn"}})
	if err != nil {
		return nil, err
	}
	c := &cluster{servers: servers, ca: ca}
	for _, s := range servers {
		cc, err := harness.Dial(s.Client())
		if err != nil {
			c.close()
			return nil, err
		}
		c.conns = append(c.conns, cc)
		c.ops = append(c.ops, apirpc.NewOperatorClient(cc))
	}
	return c, nil
}

func (c *cluster) waitLeader(timeout time.Duration) (int, error) {
	return harness.WaitLeader(context.Background(), c.ops, timeout)
}

func (c *cluster) close() {
	for _, cc := range c.conns {
		cc.Close()
	}
	for _, s := range c.servers {
		s.Kill()
	}
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
	c, err := newCluster(o)
	if err != nil {
		return err
	}
	defer c.close()
	leader, err := c.waitLeader(20 * time.Second)
	if err != nil {
		return err
	}
	ctx := context.Background()
	// The simulated nodes have no agents: the benchmark registers them
	// itself, with a server's certificate, as a server forwarding agents'
	// registrations would.
	reg, err := c.ca.DialAs(c.servers[leader].RPC, pki.RoleServer, "bench")
	if err != nil {
		return err
	}
	defer reg.Close()
	if err := registerNodes(ctx, reg, o.nodes); err != nil {
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

// failover kills the leader process with SIGKILL (a crash: nothing is
// drained, leadership is not handed over), times until a client's submit
// is acknowledged again, then restarts the killed server on its data dir
// and waits until it has caught up.
func failover(ctx context.Context, c *cluster, k int) (time.Duration, error) {
	l, err := c.waitLeader(20 * time.Second)
	if err != nil {
		return 0, err
	}
	killed := c.servers[l]
	t0 := time.Now()
	killed.Kill()
	for {
		// A client that knows every server, starting with a live follower.
		if err := submit(ctx, c, l+1+k, 30*time.Second); err == nil {
			break
		} else if time.Since(t0) > 30*time.Second {
			return 0, fmt.Errorf("no submit acknowledged within 30s of killing the leader: %w", err)
		}
	}
	d := time.Since(t0)
	// Kill has waited for the process to exit, so its ports are free.
	if err := killed.Start(); err != nil {
		return 0, fmt.Errorf("restart %s: %w", killed.Name, err)
	}
	// Wait for it to be a member that has caught up before the next kill.
	err = harness.Wait(ctx, "restarted "+killed.Name+" to catch up", 30*time.Second, func() bool {
		ld, leader := harness.Leader(ctx, c.ops)
		if ld < 0 {
			return false
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		st, err := c.ops[l].ServerStatus(sctx, &api.ServerStatusRequest{})
		return err == nil && st.AppliedIndex >= leader.AppliedIndex
	})
	return d, err
}

// submit sends one job, starting at server `first` and going round the
// list on Unavailable with the same idempotency token, as the CLI does.
func submit(ctx context.Context, c *cluster, first int, budget time.Duration) error {
	tok := make([]byte, 16)
	rand.Read(tok)
	req := &api.SubmitRequest{
		Spec:             &api.JobSpec{Name: "bench", GpusPerNode: 1, Script: "#!/bin/sh\ntrue\n"},
		IdempotencyToken: hex.EncodeToString(tok),
	}
	deadline := time.Now().Add(budget)
	var last error
	for i := 0; time.Now().Before(deadline); i++ {
		idx := (first + i) % len(c.conns)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := apirpc.NewJobServiceClient(c.conns[idx]).Submit(cctx, req)
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

// registerNodes registers n simulated 8-GPU nodes through the leader's
// connection.
func registerNodes(ctx context.Context, leader *grpc.ClientConn, n int) error {
	agents := apirpc.NewAgentServiceClient(leader)
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
