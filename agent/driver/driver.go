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
	// TruncateStdout and TruncateStderr empty the files before the rank
	// writes (--open-mode=truncate on a job's first start).
	TruncateStdout, TruncateStderr bool
	GPUs                           []string // GPU UUIDs the rank may use
	// GPUIndexes are the same GPUs' indexes on the node, in GPUs' order:
	// /dev/nvidiaN and CDI's nvidia.com/gpu=N name them so.
	GPUIndexes []uint32
	CPUs       uint32
	// CPUSet are the host CPUs the rank may run on (an isolating exec
	// driver's cpuset); empty for no binding.
	CPUSet []int
	MemMB  uint64
	Image  string  // OCI image reference or root filesystem directory (containerd)
	Mounts []Mount // host paths the rank sees (containerd; exec runs on the host)
	// Labels identify the rank to whoever lists the driver's tasks
	// (containerd container labels).
	Labels map[string]string

	// PrivateTmp and AllowSwap are the job's partition's choices: a
	// private /tmp and /dev/shm, and swap beyond MemMB. Nil: the node's
	// own default (the agent's --private-tmp and --allow-swap).
	PrivateTmp, AllowSwap *bool
}

// Mount is a host path bound into a rank's container.
type Mount struct {
	Source, Dest string
	ReadOnly     bool
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
	// Cleanup releases what the ended rank left behind (containerd: its
	// task, container and snapshot). The agent calls it once the rank's
	// end is reported, so that an agent killed in between finds the ended
	// rank again on restart and reports it then.
	Cleanup(ctx context.Context) error
}

// Driver starts ranks.
type Driver interface {
	Name() string
	Start(ctx context.Context, spec TaskSpec) (Handle, error)
	// Recover re-attaches to the ranks an earlier run of this agent
	// started, after the agent restarted. known holds the IDs of the ranks
	// the agent has records of; the result has a handle for each of them
	// the driver still finds, running or ended and not cleaned up. A rank
	// of this node that the driver finds and that is not known is killed
	// and removed: nothing runs that the agent does not supervise. A
	// driver that cannot re-attach returns no handles.
	Recover(ctx context.Context, known []string) (map[string]Handle, error)
}

// ErrNotFound says that a rank the driver was asked about does not exist.
var ErrNotFound = errors.New("driver: no such task")

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

// Ending is how a started rank ended, once it has. Drivers embed it in
// their handles: the goroutine that reaps the rank calls End once, and
// Wait and Ended serve everyone else.
type Ending struct {
	done chan struct{}
	exit Exit
	err  error
}

// NewEnding returns an Ending that has not ended yet.
func NewEnding() *Ending { return &Ending{done: make(chan struct{})} }

// End records how the rank ended and wakes every Wait. Call it once.
func (e *Ending) End(ex Exit, err error) {
	e.exit, e.err = ex, err
	close(e.done)
}

// Wait blocks until the rank ends or ctx is done.
func (e *Ending) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-e.done:
		return e.exit, e.err
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

// Ended reports whether the rank has ended.
func (e *Ending) Ended() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}
