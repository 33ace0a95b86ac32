package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Learner is the name of the example binary that `make build` puts next
// to loom (bin/mnist).
const Learner = "mnist"

// stopGrace is how long the benchmark has to stop its ranks after loom is
// interrupted before it is killed.
const stopGrace = 10 * time.Second

// Main runs `loom bench train` with args, the arguments after "train",
// and returns the exit status: the benchmark's own, or 1 when it cannot
// be started.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	exe, err := findLearner()
	if err != nil {
		fmt.Fprintln(stderr, "loom bench train:", err)
		return 1
	}
	cmd := exec.CommandContext(ctx, exe, append([]string{"bench"}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	// An interrupted loom asks the benchmark to stop its ranks rather than
	// killing it and leaving them behind.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() >= 0 {
		return exit.ExitCode()
	}
	if err != nil {
		fmt.Fprintf(stderr, "loom bench train: %s: %v\n", exe, err)
		return 1
	}
	return 0
}

// findLearner returns the path of the mnist binary: next to this
// executable (bin/loom and bin/mnist), else on PATH.
func findLearner() (string, error) {
	var dir string
	if self, err := os.Executable(); err == nil {
		dir = filepath.Dir(self)
		p := filepath.Join(dir, Learner)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(Learner); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("the MNIST example binary %q is neither in %s nor on PATH: build it with make build (bin/%s) or go build -o DIR/%s ./examples/mnist",
		Learner, dir, Learner, Learner)
}
