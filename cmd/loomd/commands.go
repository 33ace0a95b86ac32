package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/loomhpc/loom/agent/driver/containerd"
	"github.com/loomhpc/loom/agent/driver/exec"
	"github.com/loomhpc/loom/cli"
	"github.com/loomhpc/loom/cmd/internal/loomcmd"
	"github.com/loomhpc/loom/gossip"
	"github.com/loomhpc/loom/internal/bench/allreduce"
	"github.com/loomhpc/loom/internal/bench/client"
	"github.com/loomhpc/loom/internal/bench/e2e"
	"github.com/loomhpc/loom/internal/bench/failover"
	"github.com/loomhpc/loom/internal/bench/sched"
	"github.com/loomhpc/loom/internal/bench/submit"
	"github.com/loomhpc/loom/internal/bench/train"
	"github.com/loomhpc/loom/internal/simcmd"
	"github.com/loomhpc/loom/internal/topocmd"
)

// daemonCommands are the commands of loom's table that loomd runs itself,
// by the words that name them (loomcmd.Table's d(...) entries).
var daemonCommands = map[string]loomcmd.RunFunc{
	"server":                 runServer,
	"agent":                  runAgent,
	"dev":                    runDev,
	"config check":           configCheckMain,
	"operator gossip keygen": gossipKeygen,
	"image import":           imageImport,
	"gpu topo":               withWriters(topocmd.TopoMain),
	"bench allreduce":        withWriters(allreduce.Main),
	"bench submit":           withWriters(submit.Main),
	"bench failover":         withWriters(failover.Main),
	"bench sched":            withWriters(sched.Main),
	"bench e2e":              loomcmd.WithContext(e2e.Main),
	"bench train":            benchTrain,
	"bench client":           withWriters(client.Main),
	"sim":                    withWriters(simcmd.Main),
	"containerd-logger":      containerdLogger,
	loomcmd.NetcollWorker:    netcollWorker,
	loomcmd.ExecShim:         execShim,
}

// runDaemon is loomd's loomcmd.Daemons: the command from daemonCommands.
// A path with none is a programming error that loomd's tests catch.
func runDaemon(path ...string) loomcmd.RunFunc {
	run, ok := daemonCommands[strings.Join(path, " ")]
	if !ok {
		panic(fmt.Sprintf("loomd: the command table names %q, which loomd does not run", strings.Join(path, " ")))
	}
	return run
}

func execShim(_ context.Context, args []string, sio loomcmd.Stdio) int {
	return exec.ShimMain(args, sio.Err)
}

// withWriters adapts a tool's Main to the table.
func withWriters(main func(args []string, stdout, stderr io.Writer) int) loomcmd.RunFunc {
	return func(_ context.Context, args []string, sio loomcmd.Stdio) int {
		return main(args, sio.Out, sio.Err)
	}
}

func gossipKeygen(ctx context.Context, args []string, sio loomcmd.Stdio) int {
	if len(args) > 0 {
		// cli's operator command reports the usage error, as it did
		// before keygen had its own entry.
		return cli.Run(ctx, "operator", append([]string{"gossip", "keygen"}, args...), sio.In, sio.Out, sio.Err)
	}
	k, err := gossip.GenerateKey()
	if err != nil {
		fmt.Fprintln(sio.Err, "loom operator gossip keygen:", err)
		return 1
	}
	fmt.Fprintln(sio.Out, k)
	return 0
}

func imageImport(_ context.Context, args []string, sio loomcmd.Stdio) int {
	return containerd.ImportMain(append([]string{"import"}, args...), sio.Out, sio.Err)
}

func benchTrain(ctx context.Context, args []string, sio loomcmd.Stdio) int {
	return train.Main(ctx, args, sio.Out, sio.Err)
}

func containerdLogger(_ context.Context, args []string, sio loomcmd.Stdio) int {
	return containerd.LoggerMain(args, sio.Err)
}

func netcollWorker(_ context.Context, args []string, _ loomcmd.Stdio) int {
	// The worker writes its rows to the process's own stdout, which the
	// benchmark reads.
	return allreduce.WorkerMain(args)
}
