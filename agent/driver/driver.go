// Package driver defines how the agent runs one rank: a small interface
// that the exec driver (plain processes) and the containerd driver
// implement, so the agent's lifecycle code is shared by both.
package driver

import (
	"context"
	"errors"
	"syscall"
	"time"
)

// TaskSpec is everything a driver needs to start one rank.
type TaskSpec struct {
	ID     string   // unique on the node: job.generation.rank
	Argv   []string // program and arguments
	Env    []string // KEY=VALUE
	Dir    string   // working directory
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
	Stdout string   // file the rank's stdout is appended to
	Stderr string   // file for stderr; equal to Stdout to merge
	GPUs   []string // GPU UUIDs the rank may use
	CPUs   uint32
	MemMB  uint64
	Image  string // OCI image or rootfs (containerd)
}

// Exit is how a rank ended.
type Exit struct {
	Code   int
	Signal int  // the signal that killed it, 0 if it exited
	OOM    bool // killed by its memory limit
}

// Handle is a started rank.
type Handle interface {
	// Wait blocks until the rank ends or ctx is done.
	Wait(ctx context.Context) (Exit, error)
	// Signal delivers sig to every process of the rank.
	Signal(sig syscall.Signal) error
	// PID is the rank's main process id (0 when not applicable).
	PID() int
}

// Driver starts ranks.
type Driver interface {
	Name() string
	Start(ctx context.Context, spec TaskSpec) (Handle, error)
}

// ErrStart wraps every failure to start a rank; the agent reports it as
// the rank failing to start rather than the rank failing.
var ErrStart = errors.New("driver: cannot start task")

// Stop ends a rank the way Slurm does: SIGTERM, then SIGKILL after grace.
// It returns once the rank has exited or ctx is done.
func Stop(ctx context.Context, h Handle, grace time.Duration) (Exit, error) {
	_ = h.Signal(syscall.SIGTERM)
	waitCtx, cancel := context.WithTimeout(ctx, grace)
	ex, err := h.Wait(waitCtx)
	cancel()
	if err == nil {
		return ex, nil
	}
	if ctx.Err() != nil {
		return Exit{}, ctx.Err()
	}
	_ = h.Signal(syscall.SIGKILL)
	return h.Wait(ctx)
}
