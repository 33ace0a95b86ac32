package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loomhpc/loom/cmd/internal/loomcmd"
)

// runLoom runs loom with args, execve replaced by one that records what
// it would run, and returns the exit status, stderr and the argv execed
// (nil when none).
func runLoom(t *testing.T, args ...string) (code int, stderr string, execed []string) {
	t.Helper()
	orig := execve
	execve = func(bin string, argv []string, _ []string) error {
		if bin != argv[0] {
			t.Errorf("exec %s with argv[0] %q, want the same", bin, argv[0])
		}
		execed = argv
		return nil
	}
	t.Cleanup(func() { execve = orig })
	var out, errb bytes.Buffer
	code = loomcmd.Run(context.Background(), append([]string{"loom"}, args...), loomcmd.Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}, version, execLoomd)
	return code, errb.String(), execed
}

// A daemon's command execs loomd, found on PATH here (the test binary has
// none next to it), with the same words and arguments.
func TestDaemonCommandExecsLoomd(t *testing.T) {
	dir := t.TempDir()
	loomd := filepath.Join(dir, Daemon)
	if err := os.WriteFile(loomd, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	_, _, execed := runLoom(t, "bench", "sched", "--nodes", "10")
	if want := []string{loomd, "bench", "sched", "--nodes", "10"}; !slices.Equal(execed, want) {
		t.Errorf("loom bench sched --nodes 10 execed %q, want %q", execed, want)
	}
	if _, _, execed := runLoom(t, "version"); execed != nil {
		t.Errorf("loom version execed %q, want it to run in loom", execed)
	}
}

// Without loomd, a daemon's command says which binary is missing and how
// to get it.
func TestMissingLoomd(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	code, errb, execed := runLoom(t, "server", "--name", "a")
	if code != 1 || execed != nil || !strings.Contains(errb, "loom server: the daemon binary loomd is neither in ") || !strings.Contains(errb, "make build") {
		t.Errorf("loom server without loomd = %d, %q, exec %q; want 1 and an error naming loomd and make build", code, errb, execed)
	}
}
