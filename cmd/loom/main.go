// Command loom is the Loom command users and scripts type. Invoked as
// sbatch, squeue, scancel, sinfo, sacct, scontrol, srun or salloc (by a
// link or by `loom slurm <cmd>`) it is the Slurm-compatible CLI; otherwise
// its first argument picks a command from the table in cmd/internal/loomcmd,
// which also prints the usage text.
//
// loom is a lean client: it links the API, gRPC and the CLI, so that each
// sbatch in a shell loop starts in a few milliseconds. The daemons and the
// tools that link their dependencies (server, agent, dev, bench, sim, gpu
// topo, image import, config check, gossip keygen and the internal rank
// commands) live in loomd, built next to it; loom execs loomd for them with
// the same arguments, so `loom server …` runs as it always did.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/loomhpc/loom/cmd/internal/loomcmd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	leanRuntime()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := loomcmd.Run(ctx, os.Args, loomcmd.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, version, execLoomd)
	stop()
	os.Exit(code)
}

// leanRuntime sizes the Go runtime for a command that lives a few
// milliseconds and makes one or a few calls. One P, so that the scheduler
// does not start threads that spin looking for work on the other cores (on
// the 2-core build machine, at load 13, an sbatch's CPU time went from 32
// to 27 ms; docs/benchmarks.md). A heap goal of eight times the live heap rather than
// twice, so that the first collection comes at 32 MB instead of 4 MB:
// squeue over 10,000 jobs then never collects, and a long-running command
// (loom logs -f) still keeps its heap to a small multiple of what it uses.
// GOMAXPROCS and GOGC set by the user are kept.
func leanRuntime() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(800)
	}
}
