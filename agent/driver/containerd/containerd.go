// Package containerd is the production driver: each rank runs as an OCI
// container through containerd, in its own containerd namespace ("loom"),
// with the job's image, only its allocated GPUs (device nodes and CDI), CPU
// and memory limits in its cgroup, host networking, the job's mounts, and
// the submitting user's uid, gid and groups.
//
// A rank's output goes through a small logging process that containerd's
// shim starts (`loom containerd-logger`, see LoggerMain) and that writes,
// as the job's user, to the rank's --output and --error files. Containers,
// shims and loggers do not depend on the agent process, so an agent killed
// and restarted finds its ranks again (Recover) and sees their exit.
package containerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/loomhpc/loom/agent/driver"
)

// Defaults of Config.
const (
	DefaultSocket      = "/run/containerd/containerd.sock"
	DefaultNamespace   = "loom"
	DefaultSnapshotter = "overlayfs"
)

// Labels Loom puts on its containers.
const (
	LabelNode = "loom.node" // the agent's node name
	LabelTask = "loom.task" // job.generation.rank
)

// Config is the driver's settings.
type Config struct {
	Socket      string // containerd's socket, default DefaultSocket
	Namespace   string // containerd namespace, default DefaultNamespace
	Snapshotter string // default DefaultSnapshotter
	// Node is the agent's node name. Containers are labelled with it, and
	// Recover only touches containers of this node, so several agents may
	// share one containerd (simulated nodes on one host).
	Node string
	// Logger is the program the shim runs to write a rank's output: a
	// command line whose last word is the subcommand, e.g.
	// ["/usr/bin/loom", "containerd-logger"]. Default: this executable.
	Logger []string
	// StateDir holds the logger wrapper script; it must outlive the agent
	// process (the agent data dir).
	StateDir string
	// CDISpecDirs are searched for CDI specs, default /etc/cdi and
	// /var/run/cdi. Where a spec names a rank's GPUs, its edits are applied.
	CDISpecDirs []string
	// DevDir is where GPU device nodes are found, default /dev.
	DevDir string
	Log    *slog.Logger
}

// Driver runs ranks as containerd containers.
type Driver struct {
	cfg    Config
	client *containerd.Client
	logger string // the wrapper script the shim runs
	log    *slog.Logger
	// imageMu serializes finding, pulling and unpacking images: ranks of
	// one node start together and would otherwise pull the same image at
	// once.
	imageMu sync.Mutex
	// closed ends the handles' waits when the driver closes.
	closed    chan struct{}
	closeOnce sync.Once
}

// ErrNoContainerd says that containerd cannot be reached.
var ErrNoContainerd = errors.New("containerd: daemon not reachable")

// New connects to containerd and checks that it answers.
func New(cfg Config) (*Driver, error) {
	if cfg.Socket == "" {
		cfg.Socket = DefaultSocket
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.Snapshotter == "" {
		cfg.Snapshotter = DefaultSnapshotter
	}
	if cfg.DevDir == "" {
		cfg.DevDir = "/dev"
	}
	if cfg.CDISpecDirs == nil {
		cfg.CDISpecDirs = []string{"/etc/cdi", "/var/run/cdi"}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.StateDir == "" {
		return nil, errors.New("containerd: state dir not set")
	}
	if len(cfg.Logger) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("containerd: finding the loom binary for the logger: %w", err)
		}
		cfg.Logger = []string{exe, "containerd-logger"}
	}
	if fi, err := os.Stat(cfg.Socket); err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("%w: no socket at %s: start containerd, or point --containerd-socket at its socket", ErrNoContainerd, cfg.Socket)
	}
	c, err := containerd.New(cfg.Socket, containerd.WithDefaultNamespace(cfg.Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoContainerd, cfg.Socket, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.Version(ctx)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrNoContainerd, cfg.Socket, err)
	}
	logger, err := writeLoggerScript(cfg.StateDir, cfg.Logger)
	if err != nil {
		c.Close()
		return nil, err
	}
	cfg.Log.Info("containerd driver ready", "socket", cfg.Socket, "containerd_version", v.Version, "namespace", cfg.Namespace)
	return &Driver{cfg: cfg, client: c, logger: logger, log: cfg.Log, closed: make(chan struct{})}, nil
}

// Name is "containerd".
func (d *Driver) Name() string { return "containerd" }

// Close closes the connection to containerd; containers keep running.
// Waits still pending on handles end with an error.
func (d *Driver) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return d.client.Close()
}

func (d *Driver) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, d.cfg.Namespace)
}

// containerID names a new container for the rank: the node name keeps ranks
// of simulated nodes sharing one containerd apart, and a random suffix keeps
// a start clear of whatever an earlier start of the same rank left behind.
// containerd 1.6 keeps a task's shim and bundle when the client deleting it
// dies halfway, and refuses a new task of that id until the daemon restarts;
// a dev cluster restarted from scratch numbers its jobs from 1 again. The
// agent finds its containers by their labels, never by this id.
func (d *Driver) containerID(taskID string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return sanitize(d.cfg.Node) + "-" + taskID + "-" + hex.EncodeToString(b[:])
}

// nodeContainers lists this node's containers with the rank each runs.
func (d *Driver) nodeContainers(ctx context.Context) (map[containerd.Container]string, error) {
	cs, err := d.client.Containers(ctx, fmt.Sprintf("labels.%q==%q", LabelNode, d.cfg.Node))
	if err != nil {
		return nil, fmt.Errorf("containerd: list containers: %w", err)
	}
	out := make(map[containerd.Container]string, len(cs))
	for _, c := range cs {
		labels, err := c.Labels(ctx)
		if err != nil && !errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("containerd: labels of %s: %w", c.ID(), err)
		}
		out[c] = labels[LabelTask]
	}
	return out, nil
}

// sanitize makes s fit containerd's identifier grammar.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return strings.Trim(string(b), "_")
}

// writeLoggerScript writes the program the shim runs for a rank's output.
// The shim passes its arguments in no fixed order, so the subcommand
// cannot be one of them: a script puts it first.
func writeLoggerScript(dir string, argv []string) (string, error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", fmt.Errorf("containerd: state dir: %w", err)
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Written by the loom agent: containerd's shim runs it to write a rank's output.\nexec")
	for _, a := range argv {
		b.WriteString(" '" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	b.WriteString(" \"$@\"\n")
	path := filepath.Join(dir, "containerd-logger")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o755); err != nil {
		return "", fmt.Errorf("containerd: logger script: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("containerd: logger script: %w", err)
	}
	return path, nil
}

// Start creates the rank's container and starts it.
func (d *Driver) Start(ctx context.Context, s driver.TaskSpec) (driver.Handle, error) {
	ctx = d.ctx(ctx)
	if len(s.Argv) == 0 {
		return nil, fmt.Errorf("%w: %s: empty command", driver.ErrStart, s.ID)
	}
	// A container of this rank left by an agent that died while starting it
	// is in the way of nothing, but it never ran anything recorded.
	cs, err := d.nodeContainers(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", driver.ErrStart, s.ID, err)
	}
	for c, taskID := range cs {
		if taskID == s.ID {
			d.remove(ctx, c)
		}
	}
	id := d.containerID(s.ID)
	// The logger cannot report a file it cannot open; find out now, as the
	// user, so the rank fails to start with the reason.
	if err := checkOutput(s); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", driver.ErrStart, s.ID, err)
	}
	opts, err := d.containerOpts(ctx, id, s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", driver.ErrStart, s.ID, err)
	}
	c, err := d.client.NewContainer(ctx, id, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: create container: %v", driver.ErrStart, s.ID, err)
	}
	task, err := c.NewTask(ctx, d.outputIO(s))
	if err != nil {
		d.remove(ctx, c)
		return nil, fmt.Errorf("%w: %s: create task: %v", driver.ErrStart, s.ID, err)
	}
	h, err := d.newHandle(c, task)
	if err == nil {
		err = task.Start(ctx)
	}
	if err != nil {
		d.remove(ctx, c)
		return nil, fmt.Errorf("%w: %s: start: %v", driver.ErrStart, s.ID, err)
	}
	return h, nil
}

// Recover finds this node's containers again after an agent restart.
func (d *Driver) Recover(ctx context.Context, known []string) (map[string]driver.Handle, error) {
	ctx = d.ctx(ctx)
	want := make(map[string]bool, len(known))
	for _, k := range known {
		want[k] = true
	}
	cs, err := d.nodeContainers(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]driver.Handle{}
	for c, taskID := range cs {
		if !want[taskID] || out[taskID] != nil {
			d.log.Warn("removing a container the agent has no record of", "container", c.ID(), "task", taskID)
			d.remove(ctx, c)
			continue
		}
		task, err := c.Task(ctx, nil)
		if err != nil {
			// Created but never started: nothing ran.
			d.log.Warn("removing a container that has no task", "container", c.ID(), "err", err)
			d.remove(ctx, c)
			continue
		}
		h, err := d.newHandle(c, task)
		if err != nil {
			return nil, fmt.Errorf("containerd: re-attach %s: %w", c.ID(), err)
		}
		out[taskID] = h
	}
	return out, nil
}

// remove kills and deletes a container with its task and snapshot, as far
// as they exist.
func (d *Driver) remove(ctx context.Context, c containerd.Container) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if task, err := c.Task(ctx, nil); err == nil {
		if st, err := task.Status(ctx); err == nil && st.Status != containerd.Stopped {
			if ch, err := task.Wait(ctx); err == nil {
				_ = task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll)
				select {
				case <-ch:
				case <-ctx.Done():
				}
			}
		}
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			d.log.Warn("delete task", "container", c.ID(), "err", err)
		}
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		d.log.Warn("delete container", "container", c.ID(), "err", err)
	}
}
