// Command loom is Loom's one binary. Invoked as sbatch, squeue, scancel,
// sinfo, sacct, scontrol or srun (by a link or by `loom slurm <cmd>`) it is
// the Slurm-compatible CLI; otherwise its first argument picks a daemon or
// a tool from the command table (commands.go), which also prints the
// usage text.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/loomhpc/loom/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	stop()
	os.Exit(code)
}

// run runs the command argv names and returns the exit status.
func run(ctx context.Context, argv []string, sio stdio) int {
	table := commandTable()
	if prog := filepath.Base(argv[0]); slices.Contains(cli.Commands(), prog) {
		return dispatch(ctx, table, append([]string{"slurm", prog}, argv[1:]...), sio)
	}
	if len(argv) < 2 {
		fmt.Fprint(sio.err, usage(table))
		return 2
	}
	return dispatch(ctx, table, argv[1:], sio)
}
