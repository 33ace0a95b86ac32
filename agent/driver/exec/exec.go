// Package exec is the driver that runs ranks as plain processes, each in
// its own process group, as the submitting user. It is for laptops, the
// dev cluster and CI without containerd; it enforces no CPU or memory
// limits, ignores images and mounts, and cannot re-attach to its ranks
// after an agent restart (the ranks are children of the agent process; an
// agent that restarts reports them lost).
package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"strings"
	"sync"
	"syscall"

	"github.com/loomhpc/loom/agent/driver"
)

// Driver runs ranks as processes.
type Driver struct{}

// New returns the exec driver.
func New() *Driver { return &Driver{} }

// Name is "exec".
func (d *Driver) Name() string { return "exec" }

// The rank's output files are opened by a shell already running as the
// submitting user, so a root agent never writes where the user could not.
// "t" in $3 or $4 truncates stdout or stderr first.
const redirect = `out=$1; err=$2; tout=$3; terr=$4; shift 4
if [ "$tout" = t ]; then : >"$out" || exit 126; fi
exec >>"$out" </dev/null || exit 126
if [ "$err" = "$out" ]; then exec 2>&1; else
  if [ "$terr" = t ]; then : >"$err" || exit 126; fi
  exec 2>>"$err" || exit 126
fi
exec "$@"`

// Start launches the rank. The process leads its own process group so a
// signal reaches everything it forked.
func (d *Driver) Start(ctx context.Context, s driver.TaskSpec) (driver.Handle, error) {
	if len(s.Argv) == 0 {
		return nil, fmt.Errorf("%w: %s: empty command", driver.ErrStart, s.ID)
	}
	args := append([]string{"-c", redirect, "loom-task", s.Stdout, s.Stderr, flagT(s.TruncateStdout), flagT(s.TruncateStderr)}, s.Argv...)
	cmd := osexec.Command("/bin/sh", args...)
	cmd.Env = s.Env
	cmd.Dir = s.Dir
	var setup strings.Builder
	cmd.Stderr = &limitedWriter{w: &setup, n: 4096}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if uint32(os.Geteuid()) != s.UID || uint32(os.Getegid()) != s.GID {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: s.UID, Gid: s.GID, Groups: s.Groups}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", driver.ErrStart, s.ID, err)
	}
	h := &handle{cmd: cmd, setup: &setup, Ending: driver.NewEnding()}
	go h.reap()
	return h, nil
}

type handle struct {
	cmd   *osexec.Cmd
	setup *strings.Builder
	*driver.Ending
}

func (h *handle) reap() { h.End(h.wait()) }

// wait waits for the process and works out how it ended.
func (h *handle) wait() (driver.Exit, error) {
	err := h.cmd.Wait()
	var ee *osexec.ExitError
	if err == nil || !errors.As(err, &ee) {
		return driver.Exit{}, err
	}
	var ex driver.Exit
	ws := ee.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		ex.Signal = int(ws.Signal())
	} else {
		ex.Code = ws.ExitStatus()
	}
	if ex.Code == 126 && h.setup.Len() > 0 {
		return ex, fmt.Errorf("%w: %s", driver.ErrStart, strings.TrimSpace(h.setup.String()))
	}
	return ex, nil
}

func (h *handle) Signal(sig syscall.Signal) error {
	if h.Ended() {
		return nil
	}
	return syscall.Kill(-h.cmd.Process.Pid, sig)
}

func (h *handle) PID() int { return h.cmd.Process.Pid }

// Cleanup has nothing to release: the process was reaped by Wait.
func (h *handle) Cleanup(context.Context) error { return nil }

// Recover re-attaches to nothing: a process whose parent agent died cannot
// be waited for by the next agent, so its exit status would be a guess.
// The agent reports such ranks lost, and the job is requeued or failed.
func (d *Driver) Recover(context.Context, []string) (map[string]driver.Handle, error) {
	return nil, nil
}

// limitedWriter keeps the first n bytes: the shell's own complaint about an
// output file it could not open.
type limitedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
	n  int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.n - l.w.Len(); room > 0 {
		l.w.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func flagT(b bool) string {
	if b {
		return "t"
	}
	return "-"
}
