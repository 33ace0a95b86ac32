package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/loomhpc/loom/cmd/internal/loomcmd"
)

// Daemon is the name of the binary that runs the daemons' commands.
const Daemon = "loomd"

// execve replaces this process with another program; tests replace it.
var execve = syscall.Exec

// execLoomd is the loomcmd.Daemons of the client: the command path names
// replaces this process with loomd running the same words and arguments,
// so that its process id, signals, standard streams and exit status are
// the command's own.
func execLoomd(path ...string) loomcmd.RunFunc {
	return func(_ context.Context, args []string, sio loomcmd.Stdio) int {
		bin, err := findLoomd()
		if err != nil {
			fmt.Fprintf(sio.Err, "loom %s: %v\n", strings.Join(path, " "), err)
			return 1
		}
		argv := append(append([]string{bin}, path...), args...)
		err = execve(bin, argv, os.Environ())
		// Only a failed exec returns.
		fmt.Fprintf(sio.Err, "loom %s: exec %s: %v\n", strings.Join(path, " "), bin, err)
		return 1
	}
}

// findLoomd returns the path of loomd: next to this executable (make build
// puts bin/loom and bin/loomd together), else on PATH.
func findLoomd() (string, error) {
	var dir string
	if self, err := os.Executable(); err == nil {
		dir = filepath.Dir(self)
		p := filepath.Join(dir, Daemon)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("the daemon binary %s: %w", p, err)
		}
	}
	if p, err := exec.LookPath(Daemon); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("the daemon binary %s is neither in %s nor on PATH: build it with make build (bin/%s) or install it next to loom",
		Daemon, dir, Daemon)
}
