// Command loomd runs Loom's daemons and the tools that link their
// dependencies: loom server, agent and dev, the benchmarks, sim, gpu topo,
// image import, config check, gossip keygen and the commands loom starts
// itself (containerd-logger, netcoll-worker). Users type loom, which execs
// loomd for these commands with the same arguments (cmd/loom); loomd runs
// loom's whole command table, so `loomd server …` and `loomd squeue` work
// too, and self-executing daemons (an agent starting its rank logger, a
// benchmark starting servers) find every command in os.Executable().
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/loomhpc/loom/cmd/internal/loomcmd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := loomcmd.Run(ctx, os.Args, loomcmd.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, version, runDaemon)
	stop()
	os.Exit(code)
}
