package trainbench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/loomhpc/loom/examples/mnist/internal/learner"
	"github.com/loomhpc/loom/rankenv"
)

// workerCommand returns the program and leading arguments that start one
// rank: this binary, the mnist learner itself, whose flags follow. Tests
// replace it.
var workerCommand = func() (string, []string, error) {
	exe, err := os.Executable()
	return exe, nil, err
}

// Main runs `mnist bench` (`loom bench train`) with args, the arguments
// after "bench", and returns the exit status. The ranks stop when ctx is
// done.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom bench train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	npList := fs.String("np", "1,2,4", "comma-separated rank counts to measure")
	steps := fs.Int("steps", 300, "optimizer steps per configuration")
	batch := fs.Int("batch", 32, "examples per rank per step")
	hidden := fs.Int("hidden", learner.DefaultConfig().Hidden, "hidden units")
	transport := fs.String("transport", "", "NETCOLL_TRANSPORT for the ranks (default: netcoll's auto)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var nps []int
	for _, f := range strings.Split(*npList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(stderr, "loom bench train: -np %q: want rank counts such as 1,2,4\n", *npList)
			return 2
		}
		nps = append(nps, n)
	}
	tmp, err := os.MkdirTemp("", "loom-bench-train-")
	if err != nil {
		fmt.Fprintf(stderr, "loom bench train: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	fmt.Fprintf(stdout, "bench=train model=mlp-%d batch_per_rank=%d steps=%d cpus=%d\n", *hidden, *batch, *steps, runtime.NumCPU())
	var base float64
	for _, np := range nps {
		dir := filepath.Join(tmp, fmt.Sprintf("np-%d", np))
		learnerArgs := []string{
			"--steps", strconv.Itoa(*steps), "--batch", strconv.Itoa(*batch), "--hidden", strconv.Itoa(*hidden),
			"--log-every", "0", "--checkpoint-dir=", "--result-dir", dir,
		}
		m, err := runRanks(ctx, np, learnerArgs, dir, *transport)
		if err != nil {
			fmt.Fprintf(stderr, "loom bench train: np=%d: %v\n", np, err)
			return 1
		}
		line := fmt.Sprintf("np=%d samples_per_s=%.0f samples_per_s_per_rank=%.0f global_batch=%d test_accuracy=%.4f",
			np, m.SamplesPerSec, m.SamplesPerSec/float64(np), m.GlobalBatch, m.TestAccuracy)
		if np == 1 {
			base = m.SamplesPerSec
		}
		if base > 0 {
			line += fmt.Sprintf(" speedup=%.2f scaling_efficiency=%.2f", m.SamplesPerSec/base, m.SamplesPerSec/(base*float64(np)))
		}
		fmt.Fprintln(stdout, line)
	}
	return 0
}

// runRanks starts np ranks of the learner on this host, waits for them
// all, and returns the metrics rank 0 wrote to resultDir.
func runRanks(ctx context.Context, np int, args []string, resultDir, transport string) (*learner.Result, error) {
	exe, prefix, err := workerCommand()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	outs := make([]bytes.Buffer, np)
	errs := make([]error, np)
	var wg sync.WaitGroup
	secret := rankenv.NewJobSecret() // the job's, as a launcher hands it to every rank
	for r := range np {
		cmd := exec.CommandContext(ctx, exe, append(append([]string{}, prefix...), args...)...)
		cmd.Env = append(os.Environ(),
			rankenv.LoomJobSecret+"="+secret,
			rankenv.Rank+"="+strconv.Itoa(r),
			rankenv.WorldSize+"="+strconv.Itoa(np),
			rankenv.LocalRank+"="+strconv.Itoa(r),
			rankenv.LocalWorldSize+"="+strconv.Itoa(np),
			rankenv.MasterAddr+"=127.0.0.1",
			rankenv.MasterPort+"="+strconv.Itoa(port),
		)
		if transport != "" {
			cmd.Env = append(cmd.Env, "NETCOLL_TRANSPORT="+transport)
		}
		cmd.Stdout, cmd.Stderr = &outs[r], &outs[r]
		if err := cmd.Start(); err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		wg.Go(func() {
			if err := cmd.Wait(); err != nil {
				errs[r] = fmt.Errorf("rank %d: %w\n%s", r, err, outs[r].Bytes())
				cancel() // one rank failing fails the gang
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return learner.ReadMetrics(resultDir)
}

// freePort returns a loopback TCP port that was free a moment ago, for
// rank 0's rendezvous store. It is internal/harness.FreePort's twin: the
// learner binary must not link the harness, which brings gRPC with it.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
