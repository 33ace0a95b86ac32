package learner

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/loomhpc/loom/netcoll"
	"github.com/loomhpc/loom/rankenv"
)

// Main is the learner's command line: it parses args, reads the launcher's
// environment through getenv, joins the job's communicator when
// WORLD_SIZE is set, trains, and prints progress to stdout.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("mnist", flag.ContinueOnError)
	fs.SetOutput(stdout)
	dataDir := fs.String("data", "", "directory of the four MNIST .gz files (default: the GoMNIST module in the Go module cache, or $MNIST_DATA)")
	fs.IntVar(&cfg.Hidden, "hidden", cfg.Hidden, "hidden units")
	fs.IntVar(&cfg.BatchPerRank, "batch", cfg.BatchPerRank, "examples per rank per step (the global batch is this times WORLD_SIZE)")
	fs.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "passes over the training set")
	fs.IntVar(&cfg.Steps, "steps", 0, "total optimizer steps (overrides --epochs when > 0)")
	fs.Float64Var(&cfg.LR, "lr", cfg.LR, "learning rate")
	fs.Float64Var(&cfg.Momentum, "momentum", cfg.Momentum, "momentum")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the initial weights and the data order")
	fs.IntVar(&cfg.CheckpointEvery, "checkpoint-every", cfg.CheckpointEvery, "steps between checkpoints to $"+rankenv.LoomCheckpointDir)
	fs.IntVar(&cfg.LogEvery, "log-every", cfg.LogEvery, "steps between progress lines")
	fs.StringVar(&cfg.CheckpointDir, "checkpoint-dir", getenv(rankenv.LoomCheckpointDir), "checkpoint directory (empty: no checkpoints)")
	fs.StringVar(&cfg.ResultDir, "result-dir", getenv(rankenv.LoomResultDir), "directory for the final model and metrics.json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.Log = stdout
	// SIGUSR1 (sbatch --signal=USR1@SECS, before the time limit or a
	// preemption) asks for a checkpoint now; the run goes on until the
	// SIGTERM that follows.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	now := make(chan struct{}, 1)
	cfg.CheckpointNow = now
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-usr1:
				select {
				case now <- struct{}{}:
				default: // one pending request will do
				}
			case <-done:
				return
			}
		}
	}()

	dir := *dataDir
	if dir == "" {
		var err error
		if dir, err = FindDataDir(); err != nil {
			return err
		}
	}
	t0 := time.Now()
	data, err := Load(dir)
	if err != nil {
		return err
	}
	var comm *netcoll.Comm
	rank := 0
	if getenv(rankenv.WorldSize) != "" {
		comm, err = netcoll.FromEnv(ctx)
		if err != nil {
			return err
		}
		defer comm.Close()
		rank = comm.Rank()
	}
	if rank == 0 {
		fmt.Fprintf(stdout, "loaded MNIST from %s: %d training and %d test images in %.1fs\n", dir, data.Train.Len(), data.Test.Len(), time.Since(t0).Seconds())
	}
	_, err = Train(ctx, comm, data, cfg)
	return err
}
