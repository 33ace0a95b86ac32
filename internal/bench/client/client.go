package client

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/auth"
	"github.com/loomhpc/loom/devcluster"
)

// Client is the name of the client binary the benchmark runs, looked for
// next to this executable.
const Client = "loom"

type options struct {
	runs int
	loom string
	addr string
}

// Main runs the benchmark with args (without "bench client").
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom bench client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.runs, "runs", 200, "processes of each command, one at a time")
	fs.StringVar(&o.loom, "loom", "", "the client binary to time (default: loom next to this executable)")
	fs.StringVar(&o.addr, "addr", "", "LOOM_ADDR of a running cluster to submit to (default: start a dev cluster in this process)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.runs < 1 {
		fmt.Fprintf(stderr, "loom bench client: --runs=%d: want at least 1\n", o.runs)
		return 2
	}
	if err := run(o, stdout); err != nil {
		fmt.Fprintln(stderr, "loom bench client:", err)
		return 1
	}
	return 0
}

func run(o options, stdout io.Writer) error {
	if o.loom == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		o.loom = filepath.Join(filepath.Dir(self), Client)
		if _, err := os.Stat(o.loom); err != nil {
			return fmt.Errorf("--loom: the client binary %s: %w (build it with make build)", o.loom, err)
		}
	}
	if o.addr == "" {
		c, err := devcluster.Start(context.Background(), devcluster.Options{
			Agents:         1,
			RPCAddr:        "127.0.0.1:0",
			CommandsBinary: o.loom,
			Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			return err
		}
		defer c.Close()
		o.addr = c.Addr()
	}
	env := append(os.Environ(), "LOOM_ADDR="+o.addr)
	fmt.Fprintf(stdout, "runs=%d loom=%s\n", o.runs, o.loom)
	for _, m := range []struct {
		name string
		argv []string
	}{
		{"true", []string{"/bin/true"}},
		{"version", []string{o.loom, "version"}},
		{"sbatch", []string{o.loom, "slurm", "sbatch", "--wrap", "true"}},
		// Reads, after the submits above: the queue and one job's record.
		{"squeue", []string{o.loom, "slurm", "squeue"}},
		{"sacct", []string{o.loom, "slurm", "sacct", "-j", "1"}},
	} {
		wall, cpu, err := timeRuns(o.runs, m.argv, env)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		fmt.Fprintf(stdout, "%s_median_ms=%.2f %s_p90_ms=%.2f %s_cpu_median_ms=%.2f\n",
			m.name, ms(quantile(wall, 0.5)), m.name, ms(quantile(wall, 0.9)), m.name, ms(quantile(cpu, 0.5)))
	}
	if !strings.HasPrefix(o.addr, "unix://") {
		return nil // the in-process client below speaks only to a local socket
	}
	// The same submit from this process, without a process start: over one
	// connection kept open (the server's share of an sbatch), and over a
	// connection dialled and closed for each (the server's and gRPC's).
	for _, m := range []struct {
		name   string
		redial bool
	}{{"rpc_submit", false}, {"rpc_dial_submit", true}} {
		wall, err := timeSubmits(o.runs, o.addr, m.redial)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		fmt.Fprintf(stdout, "%s_median_ms=%.2f %s_p90_ms=%.2f\n", m.name, ms(quantile(wall, 0.5)), m.name, ms(quantile(wall, 0.9)))
	}
	return nil
}

// timeSubmits submits n jobs of `sbatch --wrap true`'s shape to the
// server at the local socket addr, one at a time, and returns each one's
// wall time; with redial each has a connection of its own, dialled and
// closed within its time.
func timeSubmits(n int, addr string, redial bool) ([]time.Duration, error) {
	dial := func() (*grpc.ClientConn, error) {
		return grpc.NewClient(addr, grpc.WithTransportCredentials(auth.PeerCredentials()), apirpc.ClientSizeOption())
	}
	var cc *grpc.ClientConn
	if !redial {
		var err error
		if cc, err = dial(); err != nil {
			return nil, err
		}
		defer cc.Close()
	}
	host, _ := os.Hostname()
	cwd, _ := os.Getwd()
	var wall []time.Duration
	for i := range n {
		start := time.Now()
		c := cc
		if redial {
			var err error
			if c, err = dial(); err != nil {
				return nil, err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := apirpc.NewJobServiceClient(c).Submit(ctx, &api.SubmitRequest{
			Spec: &api.JobSpec{
				Name: "wrap", WorkingDir: cwd,
				Script: "#!/bin/sh\ntrue\n",
			},
			SubmitHost:       host,
			IdempotencyToken: fmt.Sprintf("bench-client-%d-%d-%d", os.Getpid(), start.UnixNano(), i),
		})
		cancel()
		if redial {
			c.Close()
		}
		wall = append(wall, time.Since(start))
		if err != nil {
			return nil, err
		}
	}
	return wall, nil
}

// timeRuns runs argv n times, one process at a time, and returns each
// one's wall time from start to exit and the CPU time (user and system)
// it used. On a busy machine the CPU time is the steadier figure: the wall
// time adds the time the process waited for a core.
func timeRuns(n int, argv []string, env []string) (wall, cpu []time.Duration, err error) {
	for range n {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = env
		var out limitedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		err := cmd.Run()
		wall = append(wall, time.Since(start))
		if err != nil {
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				return nil, nil, fmt.Errorf("%q exited %d: %s", argv, exit.ExitCode(), out.b)
			}
			return nil, nil, err
		}
		cpu = append(cpu, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
	}
	return wall, cpu, nil
}

// quantile returns the q-quantile of ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// limitedBuffer keeps the first 4 KiB written, for an error message.
type limitedBuffer struct{ b []byte }

func (w *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
