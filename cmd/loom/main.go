// Command loom is Loom's one binary. Invoked as sbatch, squeue, scancel,
// sinfo, sacct or scontrol (by a link or by `loom slurm <cmd>`) it is the
// Slurm-compatible CLI; otherwise its first argument picks a daemon or a
// tool: server, agent, dev, logs, gpu, bench.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/loomhpc/loom/agent/driver/containerd"
	"github.com/loomhpc/loom/cli"
	"github.com/loomhpc/loom/examples/mnist/trainbench"
	"github.com/loomhpc/loom/gossip"
	"github.com/loomhpc/loom/gpu/topocmd"
	"github.com/loomhpc/loom/internal/bench/failover"
	"github.com/loomhpc/loom/internal/bench/submit"
	"github.com/loomhpc/loom/netcoll/ncbench"
	"github.com/loomhpc/loom/scheduler/explain"
	"github.com/loomhpc/loom/scheduler/schedbench"
	"github.com/loomhpc/loom/scheduler/sim"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `loom: a gang scheduler for GPU clusters

Usage:
  loom server [flags]          run a control-plane server
  loom agent [flags]           run a node agent
  loom dev [flags]             run a server and simulated agents in one process
  loom config check [FILE]     validate a configuration file (default /etc/loom/loom.toml)
  loom slurm <cmd> [args]      sbatch, squeue, scancel, sinfo, sacct, scontrol
  loom logs [-f] JOB [RANK]    stream a job's output
  loom node drain|resume|list  take nodes out of service and back
  loom operator raft list-peers|remove-peer ID   the control plane's membership
  loom operator gossip keygen  a new gossip encryption key
  loom image import FILE.tar    load an OCI archive for the agents' containerd driver
  loom gpu topo [flags]        print a node's GPU topology like nvidia-smi topo -m
  loom bench allreduce [flags] netcoll collectives benchmark (nccl-tests style)
  loom bench sched [flags]     time one scheduling cycle on a large synthetic cluster
  loom sim [flags]             replay a job trace through the scheduler (virtual clock)
  loom priority [JOBID...]     pending jobs' priority factors (like sprio)
  loom why JOBID               why a job is pending, and when it should start
  loom bench submit [flags]    control-plane submit throughput and leader failover
  loom bench failover [flags]  node failure detection and gang requeue times
  loom version

The Slurm commands also run as themselves when loom is linked or copied
under their names (make build creates bin/sbatch etc.). Servers are found
through LOOM_ADDR (default 127.0.0.1:7070, comma-separated for several).
Run "loom <command> --help" for a command's flags.
`

func main() {
	os.Exit(run(os.Args))
}

func run(argv []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prog := filepath.Base(argv[0])
	if slices.Contains(cli.Commands(), prog) {
		return cli.Run(ctx, prog, argv[1:], os.Stdin, os.Stdout, os.Stderr)
	}
	if len(argv) < 2 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	cmd, args := argv[1], argv[2:]
	switch cmd {
	case "server":
		return runServer(ctx, args)
	case "agent":
		return runAgent(ctx, args)
	case "dev":
		return runDev(ctx, args)
	case "config":
		if len(args) > 0 && args[0] == "check" {
			return configCheckMain(ctx, args[1:])
		}
		fmt.Fprintln(os.Stderr, "loom config: the only subcommand is check")
		return 2
	case "slurm":
		if len(args) == 0 || !slices.Contains(cli.Commands(), args[0]) {
			fmt.Fprintf(os.Stderr, "loom slurm: name one of %v\n", cli.Commands())
			return 2
		}
		return cli.Run(ctx, args[0], args[1:], os.Stdin, os.Stdout, os.Stderr)
	case "operator":
		if len(args) == 2 && args[0] == "gossip" && args[1] == "keygen" {
			k, err := gossip.GenerateKey()
			if err != nil {
				fmt.Fprintln(os.Stderr, "loom operator gossip keygen:", err)
				return 1
			}
			fmt.Println(k)
			return 0
		}
		return cli.Run(ctx, cmd, args, os.Stdin, os.Stdout, os.Stderr)
	case "logs", "node":
		return cli.Run(ctx, cmd, args, os.Stdin, os.Stdout, os.Stderr)
	case "gpu":
		if len(args) > 0 && args[0] == "topo" {
			return topocmd.TopoMain(args[1:], os.Stdout, os.Stderr)
		}
		fmt.Fprintln(os.Stderr, "loom gpu: the only subcommand is topo")
		return 2
	case "bench":
		return runBench(ctx, args, os.Stdout, os.Stderr)
	case "image":
		return containerd.ImportMain(args, os.Stdout, os.Stderr)
	case "containerd-logger": // started by containerd's shim for each rank container
		return containerd.LoggerMain(args, os.Stderr)
	case "sim":
		return sim.Main(args, os.Stdout, os.Stderr)
	case "priority":
		return explain.PriorityMain(ctx, args, os.Stdout, os.Stderr)
	case "why":
		return explain.WhyMain(ctx, args, os.Stdout, os.Stderr)
	case "netcoll-worker":
		return ncbench.WorkerMain(args)
	case "version", "--version":
		fmt.Println("loom", version)
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "loom: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func runBench(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "allreduce":
			return ncbench.Main(args[1:], stdout, stderr)
		case "submit":
			return submit.Main(args[1:], stdout, stderr)
		case "failover":
			return failover.Main(args[1:], stdout, stderr)
		case "sched":
			return schedbench.Main(args[1:], stdout, stderr)
		case "train":
			return trainbench.Main(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintln(stderr, "loom bench: known benchmarks: allreduce, submit, failover, sched")
	return 2
}
