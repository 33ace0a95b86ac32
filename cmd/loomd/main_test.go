package main

import (
	"bytes"
	"context"
	"github.com/loomhpc/loom/agent/driver/exec"
	"slices"
	"strings"
	"testing"

	"github.com/loomhpc/loom/cmd/internal/loomcmd"
	"github.com/loomhpc/loom/internal/bench/allreduce"
)

// testWriter logs what a command writes.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// testStdio is a command's streams in a test: no input, output logged.
func testStdio(t *testing.T) loomcmd.Stdio {
	return loomcmd.Stdio{In: strings.NewReader(""), Out: testWriter{t}, Err: testWriter{t}}
}

// runLoom runs loomd with args and returns the exit status, stdout and
// stderr.
func runLoom(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := loomcmd.Run(context.Background(), append([]string{"loomd"}, args...), loomcmd.Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}, version, runDaemon)
	return code, out.String(), errb.String()
}

// tablePaths returns the words of every command loom's table leaves to
// loomd.
func tablePaths() [][]string {
	var paths [][]string
	loomcmd.Table(version, func(path ...string) loomcmd.RunFunc {
		paths = append(paths, path)
		return nil
	})
	return paths
}

// loomd runs exactly the commands loom's table sends it, and each of them
// reaches its own flag parsing rather than the table's errors.
func TestLoomdRunsEveryDaemonCommand(t *testing.T) {
	paths := tablePaths()
	var names []string
	for _, p := range paths {
		name := strings.Join(p, " ")
		names = append(names, name)
		if _, ok := daemonCommands[name]; !ok {
			t.Errorf("loom's table sends %q to loomd, which does not run it", name)
		}
	}
	for name := range daemonCommands {
		if !slices.Contains(names, name) {
			t.Errorf("loomd runs %q, which loom's table does not list", name)
		}
	}
	for _, p := range paths {
		if p[0] == "containerd-logger" || p[0] == loomcmd.NetcollWorker {
			continue // they write to the process's own streams
		}
		t.Run(strings.Join(p, " "), func(t *testing.T) {
			code, out, errb := runLoom(append(slices.Clone(p), "--help")...)
			for _, bad := range []string{"unknown command", "the only subcommand", "known benchmarks", "known subcommands", "name one of"} {
				if strings.Contains(out+errb, bad) {
					t.Errorf("loomd %s --help = %d, printed %q", strings.Join(p, " "), code, out+errb)
				}
			}
		})
	}
}

func TestNetcollWorkerName(t *testing.T) {
	if loomcmd.NetcollWorker != allreduce.WorkerArg {
		t.Errorf("loomcmd.NetcollWorker = %q, want allreduce.WorkerArg %q", loomcmd.NetcollWorker, allreduce.WorkerArg)
	}
}

func TestExecShimName(t *testing.T) {
	if loomcmd.ExecShim != exec.ShimCommand {
		t.Errorf("loomcmd.ExecShim = %q, want exec.ShimCommand %q", loomcmd.ExecShim, exec.ShimCommand)
	}
}

func TestKeygen(t *testing.T) {
	code, out, errb := runLoom("operator", "gossip", "keygen")
	if code != 0 || len(strings.TrimSpace(out)) == 0 {
		t.Errorf("loomd operator gossip keygen = %d, %q, %q; want 0 and a key", code, out, errb)
	}
}

// loomd runs the client's commands too: a daemon that executes itself
// under a Slurm name finds them.
func TestLoomdRunsClientCommands(t *testing.T) {
	var out, errb bytes.Buffer
	code := loomcmd.Run(context.Background(), []string{"/x/squeue", "--help"}, loomcmd.Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}, version, runDaemon)
	if code != 0 || !strings.Contains(out.String(), "Usage:") {
		t.Errorf("loomd as squeue --help = %d, %q; want 0 and squeue's usage", code, out.String())
	}
}
