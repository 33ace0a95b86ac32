package containerd

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/loomhpc/loom/agent/driver"
)

// handle is a started (or re-attached) rank container.
type handle struct {
	d      *Driver
	c      containerd.Container
	task   containerd.Task
	cgroup string // the spec's cgroups path, for the OOM check

	*driver.Ending

	cleanOnce sync.Once
	cleanErr  error
}

// newHandle subscribes to the task's exit before anything else can make it
// exit (containerd only reports exits to waiters already there, except for
// a task that has already stopped, whose status it keeps).
func (d *Driver) newHandle(c containerd.Container, task containerd.Task) (*handle, error) {
	ctx := d.ctx(context.Background())
	h := &handle{d: d, c: c, task: task, Ending: driver.NewEnding()}
	if spec, err := c.Spec(ctx); err == nil && spec.Linux != nil {
		h.cgroup = spec.Linux.CgroupsPath
	}
	ch, err := task.Wait(ctx)
	if err != nil {
		return nil, err
	}
	go func() { h.End(h.reap(ch)) }()
	return h, nil
}

// reap waits for the exit and works out how the rank ended. A wait that
// breaks because containerd went away (a restart, an upgrade) is not an
// exit: the shim keeps the rank running and its exit status, so reap waits
// again once containerd is back. Only a task containerd no longer knows,
// or a closed driver, ends the wait without an exit status.
func (h *handle) reap(ch <-chan containerd.ExitStatus) (driver.Exit, error) {
	var code uint32
	backoff := 100 * time.Millisecond
	for {
		st := <-ch
		var err error
		if code, _, err = st.Result(); err == nil {
			break
		}
		h.d.log.Warn("lost the wait on a rank; waiting again", "container", h.c.ID(), "err", err)
		for {
			select {
			case <-h.d.closed:
				return driver.Exit{}, fmt.Errorf("containerd: wait for %s: driver closed", h.c.ID())
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			ch, err = h.task.Wait(h.d.ctx(context.Background()))
			if err == nil {
				break
			}
			if errdefs.IsNotFound(err) {
				return driver.Exit{}, fmt.Errorf("containerd: %s is gone: %w", h.c.ID(), err)
			}
		}
	}
	var ex driver.Exit
	// runc reports a rank killed by signal N as 128+N.
	if code > 128 && code < 128+65 {
		ex.Signal = int(code - 128)
	} else {
		ex.Code = int(code)
	}
	// As Slurm does: a rank that failed after the OOM killer killed any
	// of its processes ran out of memory, whichever process died.
	if ex != (driver.Exit{}) && oomKilled(h.cgroup) {
		ex.OOM = true
	}
	return ex, nil
}

// Signal delivers sig to every process of the container.
func (h *handle) Signal(sig syscall.Signal) error {
	if h.Ended() {
		return nil
	}
	ctx, cancel := context.WithTimeout(h.d.ctx(context.Background()), 10*time.Second)
	defer cancel()
	err := h.task.Kill(ctx, sig, containerd.WithKillAll)
	if err != nil && (errdefs.IsNotFound(err) || errdefs.IsFailedPrecondition(err)) {
		return nil // already gone
	}
	return err
}

func (h *handle) PID() int { return int(h.task.Pid()) }

// Cleanup deletes the task, the container and its snapshot.
func (h *handle) Cleanup(ctx context.Context) error {
	h.cleanOnce.Do(func() {
		ctx := h.d.ctx(ctx)
		if _, err := h.task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			h.cleanErr = fmt.Errorf("containerd: delete task %s: %w", h.c.ID(), err)
		}
		if err := h.c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) && h.cleanErr == nil {
			h.cleanErr = fmt.Errorf("containerd: delete container %s: %w", h.c.ID(), err)
		}
	})
	return h.cleanErr
}

// cgroupRoot is where the cgroup filesystems are mounted.
var cgroupRoot = "/sys/fs/cgroup"

// oomKilled says whether the kernel's OOM killer killed a process of the
// cgroup: cgroup v2's memory.events or v1's memory.oom_control count
// oom_kill. The cgroup lives until the task is deleted, which the agent
// does only after this check.
func oomKilled(cgroupPath string) bool {
	if cgroupPath == "" || strings.Contains(cgroupPath, ":") { // systemd cgroup driver "slice:prefix:name"
		return false
	}
	for _, f := range []string{
		filepath.Join(cgroupRoot, cgroupPath, "memory.events"),
		filepath.Join(cgroupRoot, "memory", cgroupPath, "memory.oom_control"),
	} {
		if n, ok := readCounter(f, "oom_kill"); ok {
			return n > 0
		}
	}
	return false
}

// readCounter reads "key N" from a cgroup file of such lines.
func readCounter(path, key string) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
