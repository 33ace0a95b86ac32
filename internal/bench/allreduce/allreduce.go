package allreduce

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/netcoll"
	"github.com/loomhpc/loom/rankenv"
)

// WorkerArg is the first argument of a worker process; the loom binary
// dispatches `loom netcoll-worker ...` to WorkerMain.
const WorkerArg = "netcoll-worker"

// WorkerEnv, when set, overrides the worker command (split on spaces), for
// binaries other than loom.
const WorkerEnv = "NETCOLL_BENCH_WORKER"

type options struct {
	np            int
	minB, maxB    int
	factor        int
	op            string
	transport     string
	iters, warmup int
	dtype         string
	redop         string
	worker        string
	nsocks, chunk int
	algo          string
}

func (o *options) flags(fs *flag.FlagSet) {
	fs.IntVar(&o.np, "np", 2, "number of ranks")
	fs.Func("b", "smallest message size in bytes (K/M/G suffixes; default 1K)", sizeFlag(&o.minB))
	fs.Func("e", "largest message size in bytes (default 256M)", sizeFlag(&o.maxB))
	fs.IntVar(&o.factor, "f", 4, "multiplication factor between sizes")
	fs.StringVar(&o.op, "op", "allreduce", "collective: allreduce, allgather, reducescatter or broadcast")
	fs.StringVar(&o.transport, "transport", "tcp", "transport: tcp or shm (or auto, rdma)")
	fs.IntVar(&o.iters, "iters", 20, "timed iterations per size")
	fs.IntVar(&o.warmup, "warmup", 5, "untimed iterations per size")
	fs.StringVar(&o.dtype, "d", "float", "element type: float, double, int32, int64, bfloat16, half")
	fs.StringVar(&o.redop, "o", "sum", "reduction: sum, prod, min, max, avg")
	fs.StringVar(&o.worker, "worker", "", "worker command (default: this executable with first argument "+WorkerArg+")")
	fs.IntVar(&o.nsocks, "nsocks", 0, "TCP streams per peer (default: NETCOLL_NSOCKS or netcoll's default)")
	fs.Func("chunk", "pipelining chunk in bytes (default: NETCOLL_CHUNK or netcoll's default)", sizeFlag(&o.chunk))
	fs.StringVar(&o.algo, "algo", "", "force an algorithm: ring or rd (default: NETCOLL_ALGO or auto)")
}

func sizeFlag(dst *int) func(string) error {
	return func(s string) error {
		n, err := netcoll.ParseSize(s)
		*dst = n
		return err
	}
}

func (o *options) args() []string {
	return []string{
		"-b", strconv.Itoa(o.minB), "-e", strconv.Itoa(o.maxB), "-f", strconv.Itoa(o.factor),
		"-op", o.op, "-iters", strconv.Itoa(o.iters), "-warmup", strconv.Itoa(o.warmup),
		"-d", o.dtype, "-o", o.redop,
	}
}

func (o *options) validate() error {
	switch {
	case o.np < 1:
		return fmt.Errorf("ncbench: -np %d: want at least 1 rank", o.np)
	case o.minB < 1 || o.maxB < o.minB:
		return fmt.Errorf("ncbench: -b %d -e %d: want 1 <= b <= e", o.minB, o.maxB)
	case o.factor < 2:
		return fmt.Errorf("ncbench: -f %d: want a factor of at least 2", o.factor)
	case o.iters < 1 || o.warmup < 0:
		return fmt.Errorf("ncbench: -iters %d -warmup %d: want iters >= 1 and warmup >= 0", o.iters, o.warmup)
	}
	switch o.op {
	case "allreduce", "allgather", "reducescatter", "broadcast":
	default:
		return fmt.Errorf("ncbench: -op %q: want allreduce, allgather, reducescatter or broadcast", o.op)
	}
	if _, err := netcoll.ParseOp(o.redop); err != nil {
		return err
	}
	if _, ok := dtypes[o.dtype]; !ok {
		return fmt.Errorf("ncbench: -d %q: want float, double, int32, int64, bfloat16 or half", o.dtype)
	}
	return nil
}

var dtypes = map[string]netcoll.DType{
	"float": netcoll.Float32, "double": netcoll.Float64, "int32": netcoll.Int32,
	"int64": netcoll.Int64, "bfloat16": netcoll.BF16, "half": netcoll.F16,
}

// Main runs the benchmark driver; args exclude "bench allreduce". It
// returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	o := options{minB: 1 << 10, maxB: 256 << 20}
	fs := flag.NewFlagSet("loom bench allreduce", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	cmdline, err := workerCommand(o.worker)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	port, err := harness.FreePort()
	if err != nil {
		fmt.Fprintln(stderr, "ncbench: no free port for the store:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Every rank's stderr is copied by its own goroutine; serialise them.
	stderr = &lockedWriter{w: stderr}
	cmds := make([]*exec.Cmd, o.np)
	secret := rankenv.NewJobSecret() // the job's, as a launcher hands it to every rank
	for r := range o.np {
		cmd := exec.CommandContext(ctx, cmdline[0], append(slices.Clone(cmdline[1:]), o.args()...)...)
		cmd.Env = append(os.Environ(), rankenv.LoomJobSecret+"="+secret,
			rankenv.Rank+"="+strconv.Itoa(r), rankenv.WorldSize+"="+strconv.Itoa(o.np),
			rankenv.LocalRank+"="+strconv.Itoa(r), rankenv.LocalWorldSize+"="+strconv.Itoa(o.np),
			rankenv.MasterAddr+"=127.0.0.1", rankenv.MasterPort+"="+strconv.Itoa(port),
			"NETCOLL_TRANSPORT="+o.transport)
		if o.nsocks > 0 {
			cmd.Env = append(cmd.Env, "NETCOLL_NSOCKS="+strconv.Itoa(o.nsocks))
		}
		if o.chunk > 0 {
			cmd.Env = append(cmd.Env, "NETCOLL_CHUNK="+strconv.Itoa(o.chunk))
		}
		if o.algo != "" {
			cmd.Env = append(cmd.Env, "NETCOLL_ALGO="+o.algo)
		}
		if r == 0 {
			cmd.Stdout = stdout // rank 0 prints the table; Wait waits for the copy
		}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(stderr, "ncbench: starting rank %d (%s): %v\n", r, strings.Join(cmdline, " "), err)
			return 1
		}
		cmds[r] = cmd
	}
	code := 0
	for r, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				fmt.Fprintf(stderr, "ncbench: rank %d: %v\n", r, err)
				code = 1
				cancel() // one rank failed: the others would fail anyway
			}
		}
	}
	return code
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func workerCommand(flagVal string) ([]string, error) {
	if flagVal == "" {
		flagVal = os.Getenv(WorkerEnv)
	}
	if flagVal != "" {
		return strings.Fields(flagVal), nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("ncbench: finding this executable for the workers: %w", err)
	}
	return []string{exe, WorkerArg}, nil
}

// WorkerMain runs one rank of the benchmark; args are those after
// "netcoll-worker". The rank reads its place from the environment that
// Main sets (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, NETCOLL_*).
func WorkerMain(args []string) int {
	o := options{minB: 1 << 10, maxB: 256 << 20}
	fs := flag.NewFlagSet(WorkerArg, flag.ContinueOnError)
	o.flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := netcoll.FromEnv(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	var runErr error
	switch dtypes[o.dtype] {
	case netcoll.Float32:
		runErr = run[float32](c, &o, out)
	case netcoll.Float64:
		runErr = run[float64](c, &o, out)
	case netcoll.Int32:
		runErr = run[int32](c, &o, out)
	case netcoll.Int64:
		runErr = run[int64](c, &o, out)
	case netcoll.BF16:
		runErr = run[netcoll.BFloat16](c, &o, out)
	case netcoll.F16:
		runErr = run[netcoll.Float16](c, &o, out)
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "ncbench: rank %d: %v\n", c.Rank(), runErr)
		return 1
	}
	return 0
}

// busFactor is nccl-tests' bus bandwidth factor for the collective.
func busFactor(op string, n int) float64 {
	switch op {
	case "allreduce":
		return 2 * float64(n-1) / float64(n)
	case "allgather", "reducescatter":
		return float64(n-1) / float64(n)
	}
	return 1
}

func sizeOf[T netcoll.Elem]() int {
	var z T
	switch any(z).(type) {
	case float64, int64:
		return 8
	case netcoll.BFloat16, netcoll.Float16:
		return 2
	}
	return 4
}

func run[T netcoll.Elem](c *netcoll.Comm, o *options, out io.Writer) error {
	ctx := context.Background()
	n, es := c.Size(), sizeOf[T]()
	redop, _ := netcoll.ParseOp(o.redop)
	unit := es
	if o.op == "allgather" || o.op == "reducescatter" {
		unit = es * n // the total must split into equal per-rank blocks
	}
	var sizes []int
	for s := o.minB; s <= o.maxB; s *= o.factor {
		sizes = append(sizes, max(unit, s/unit*unit))
	}
	maxCount := sizes[len(sizes)-1] / es
	send := make([]T, maxCount)
	recv := make([]T, maxCount)
	for i := range send {
		send[i] = T(1)
	}
	one := func(size int) error {
		count := size / es
		switch o.op {
		case "allreduce":
			return netcoll.AllReduce(ctx, c, send[:count], recv[:count], redop)
		case "allgather":
			return netcoll.AllGather(ctx, c, send[:count/n], recv[:count])
		case "reducescatter":
			return netcoll.ReduceScatter(ctx, c, send[:count], recv[:count/n], redop)
		default:
			return netcoll.Broadcast(ctx, c, send[:count], 0)
		}
	}
	rawSend, rawRecv := asBytes(send), asBytes(recv)
	raw := func(size int) error { return c.RawRing(ctx, rawSend[:size], rawRecv[:size]) }
	// timeIt returns the slowest rank's median time of one call.
	samples := make([]float64, o.iters)
	timeIt := func(f func(int) error, size int) (float64, error) {
		for range o.warmup {
			if err := f(size); err != nil {
				return 0, err
			}
		}
		if err := c.Barrier(ctx); err != nil {
			return 0, err
		}
		for i := range samples {
			t0 := time.Now()
			if err := f(size); err != nil {
				return 0, err
			}
			samples[i] = time.Since(t0).Seconds()
		}
		return slowest(ctx, c, median(samples))
	}

	if c.Rank() == 0 {
		fmt.Fprintf(out, "# netcoll bench: op=%s np=%d transport=%s nsocks=%s chunk=%s algo=%s iters=%d warmup=%d\n",
			o.op, n, c.Transport((c.Rank()+1)%n), envOr("NETCOLL_NSOCKS", "default"), envOr("NETCOLL_CHUNK", "default"),
			envOr("NETCOLL_ALGO", "auto"), o.iters, o.warmup)
		fmt.Fprintf(out, "# time_us is the median over iterations of the slowest rank; GB/s are 1e9 bytes/s\n#\n")
		fmt.Fprintf(out, "%12s %12s %8s %6s %5s %12s %10s %10s\n", "size", "count", "type", "redop", "root", "time_us", "algbw", "busbw")
	}
	var rtt, tcpRTT float64
	if n > 1 {
		// Ping-pong between ranks 0 and 1 over the communicator's own
		// links, and over a plain TCP connection: the latency yardstick
		// for small messages is the TCP round trip, whatever transport
		// the collective uses.
		var err error
		if rtt, err = pingPong(ctx, c, o.iters*5); err != nil {
			return err
		}
		if tcpRTT, err = plainTCPRTT(ctx, c, o.iters*5); err != nil {
			return err
		}
	}
	var lastT float64
	var worstSmall float64
	for i, size := range sizes {
		t, err := timeIt(one, size)
		if err != nil {
			return err
		}
		algbw := float64(size) / t / 1e9
		bus := algbw * busFactor(o.op, n)
		if i == len(sizes)-1 {
			lastT = t
		}
		if size <= 4096 && n > 1 {
			worstSmall = max(worstSmall, t/(tcpRTT*math.Max(1, math.Log2(float64(n)))))
		}
		if c.Rank() == 0 {
			redopName, root := redop.String(), "-1"
			switch o.op {
			case "allgather":
				redopName = "none"
			case "broadcast":
				redopName, root = "none", "0"
			}
			fmt.Fprintf(out, "%12d %12d %8s %6s %5s %12.1f %10.3f %10.3f\n",
				size, size/es, dtypeName[T](), redopName, root, t*1e6, algbw, bus)
		}
	}
	// The baseline: raw ring streaming at the largest size, in rounds
	// that alternate with the collective so that both see the same
	// machine; the ratio is the median of the per-round ratios.
	largest := sizes[len(sizes)-1]
	var ratios, opT []float64
	var rawGBps float64
	var rawT []float64
	for range rounds {
		tr, err := timeIt(raw, largest)
		if err != nil {
			return err
		}
		to, err := timeIt(one, largest)
		if err != nil {
			return err
		}
		rawT, opT = append(rawT, tr), append(opT, to)
		ratios = append(ratios, (float64(largest)/to*busFactor(o.op, n))/(float64(largest)/tr))
	}
	opT = append(opT, lastT)
	rawGBps = float64(largest) / median(rawT) / 1e9
	busMed := float64(largest) / median(opT) / 1e9 * busFactor(o.op, n)
	if c.Rank() == 0 {
		fmt.Fprintf(out, "size_max=%d\n", largest)
		fmt.Fprintf(out, "busbw_GBps=%.3f\n", busMed)
		if n > 1 {
			fmt.Fprintf(out, "rtt_us=%.1f\n", rtt*1e6)
			fmt.Fprintf(out, "tcp_rtt_us=%.1f\n", tcpRTT*1e6)
			if o.minB <= 4096 {
				fmt.Fprintf(out, "small_latency_over_rtt_log2n=%.2f\n", worstSmall)
			}
		}
		fmt.Fprintf(out, "raw_ring_GBps=%.3f\n", rawGBps)
		ratio := 0.0
		if n > 1 {
			ratio = median(ratios)
		}
		fmt.Fprintf(out, "busbw_ratio=%.3f\n", ratio)
	}
	return nil
}

// rounds is how many times the baseline and the collective alternate at
// the largest size.
const rounds = 5

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func dtypeName[T netcoll.Elem]() string {
	var z T
	switch any(z).(type) {
	case float32:
		return netcoll.Float32.String()
	case float64:
		return netcoll.Float64.String()
	case int32:
		return netcoll.Int32.String()
	case int64:
		return netcoll.Int64.String()
	case netcoll.BFloat16:
		return netcoll.BF16.String()
	}
	return netcoll.F16.String()
}

// pingPong measures the median round trip of a 4-byte message between
// ranks 0 and 1.
func pingPong(ctx context.Context, c *netcoll.Comm, iters int) (float64, error) {
	b := make([]int32, 1)
	s := make([]float64, 0, iters)
	if err := c.Barrier(ctx); err != nil {
		return 0, err
	}
	for range iters {
		t0 := time.Now()
		switch c.Rank() {
		case 0:
			if err := netcoll.Send(ctx, c, b, 1); err != nil {
				return 0, err
			}
			if err := netcoll.Recv(ctx, c, b, 1); err != nil {
				return 0, err
			}
		case 1:
			if err := netcoll.Recv(ctx, c, b, 0); err != nil {
				return 0, err
			}
			if err := netcoll.Send(ctx, c, b, 0); err != nil {
				return 0, err
			}
		}
		s = append(s, time.Since(t0).Seconds())
	}
	return rank0Median(ctx, c, s)
}

// rank0Median gives every rank the median of rank 0's samples.
func rank0Median(ctx context.Context, c *netcoll.Comm, samples []float64) (float64, error) {
	r := []float64{0}
	if c.Rank() == 0 {
		r[0] = median(samples)
	}
	if err := netcoll.Broadcast(ctx, c, r, 0); err != nil {
		return 0, err
	}
	return r[0], nil
}

// plainTCPRTT is the median round trip of 4 bytes between ranks 0 and 1
// over a fresh loopback TCP connection with Nagle off: the machine's TCP
// round-trip time, measured the same way whichever transport the
// communicator uses. The benchmark's ranks all run on this host.
func plainTCPRTT(ctx context.Context, c *netcoll.Comm, iters int) (float64, error) {
	var ln net.Listener
	port := []int32{0}
	if c.Rank() == 0 {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return 0, err
		}
		defer ln.Close()
		port[0] = int32(ln.Addr().(*net.TCPAddr).Port)
	}
	if err := netcoll.Broadcast(ctx, c, port, 0); err != nil {
		return 0, err
	}
	var conn net.Conn
	var err error
	switch c.Rank() {
	case 0:
		conn, err = ln.Accept()
	case 1:
		conn, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port[0]))
	}
	if err != nil {
		return 0, fmt.Errorf("tcp rtt: %w", err)
	}
	samples := make([]float64, 0, iters)
	if conn != nil {
		defer conn.Close()
		conn.(*net.TCPConn).SetNoDelay(true)
		conn.SetDeadline(time.Now().Add(time.Minute))
		buf := make([]byte, 4)
		for range iters {
			t0 := time.Now()
			if c.Rank() == 0 {
				if _, err := conn.Write(buf); err != nil {
					return 0, err
				}
			}
			if _, err := io.ReadFull(conn, buf); err != nil {
				return 0, err
			}
			if c.Rank() == 1 {
				if _, err := conn.Write(buf); err != nil {
					return 0, err
				}
			}
			samples = append(samples, time.Since(t0).Seconds())
		}
	}
	return rank0Median(ctx, c, samples)
}

// slowest returns the maximum of v over ranks.
func slowest(ctx context.Context, c *netcoll.Comm, v float64) (float64, error) {
	b := []float64{v}
	err := netcoll.AllReduce(ctx, c, b, b, netcoll.Max)
	return b[0], err
}

func median(s []float64) float64 {
	t := slices.Clone(s)
	slices.Sort(t)
	if len(t)%2 == 1 {
		return t[len(t)/2]
	}
	return (t[len(t)/2-1] + t[len(t)/2]) / 2
}
