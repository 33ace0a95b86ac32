package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loomhpc/loom/agent/cgroup"
	"github.com/loomhpc/loom/agent/driver"
)

// Isolation is how the driver confines ranks on a node where it can: each
// rank in its own cgroup (below its job's), which holds its CPUs, memory
// limit and devices and every process it forks.
type Isolation struct {
	Cgroups *cgroup.Manager
	// Shim is the command line that runs ShimMain (the loom binary and
	// ShimCommand).
	Shim []string
	// DeviceDir holds the node's GPU device nodes, nvidia0, nvidia1, ...
	// ("/dev"; a test gives simulated GPUs stand-in nodes elsewhere). A
	// rank may open its own GPUs' nodes and not the others'.
	DeviceDir string
	// PrivateTmpDir is where a job's private /tmp and /dev/shm are made
	// (job_ID/tmp, job_ID/shm) and bound over the real ones in the rank's
	// mount namespace; removed at the job's end. Empty: no job gets them.
	PrivateTmpDir string
	// PrivateTmp gives every job a private /tmp and /dev/shm unless its
	// partition says otherwise (TaskSpec.PrivateTmp).
	PrivateTmp bool
	// AllowSwap lets ranks swap beyond their memory limit unless their
	// partition says otherwise (TaskSpec.AllowSwap).
	AllowSwap bool
}

// gpuDevices lists DeviceDir's nvidiaN character devices by index.
func (iso *Isolation) gpuDevices() (map[uint32]cgroup.Device, error) {
	dir := iso.DeviceDir
	if dir == "" {
		dir = "/dev"
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("device dir: %w", err)
	}
	out := map[uint32]cgroup.Device{}
	for _, e := range ents {
		m := gpuNode.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, e.Name()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
			continue
		}
		n, _ := strconv.ParseUint(m[1], 10, 32)
		out[uint32(n)] = cgroup.Device{Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev))}
	}
	return out, nil
}

var gpuNode = regexp.MustCompile(`^nvidia([0-9]+)$`)

// cgTask names a rank's group: its job and the driver's task id.
func cgTask(s driver.TaskSpec) cgroup.Task {
	return cgroup.Task{Job: jobOf(s.ID), Name: s.ID}
}

// jobOf is the job id at the front of a task id (job.generation.…).
func jobOf(id string) uint64 {
	n, _ := strconv.ParseUint(strings.SplitN(id, ".", 2)[0], 10, 64)
	return n
}

// startIsolated makes the rank's cgroup and starts the shim in it.
func (d *Driver) startIsolated(s driver.TaskSpec) (driver.Handle, error) {
	iso := d.iso
	if err := os.MkdirAll(d.stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %s: state dir: %v", driver.ErrStart, s.ID, err)
	}
	devs, err := iso.gpuDevices()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", driver.ErrStart, s.ID, err)
	}
	var deny []cgroup.Device
	for idx, dev := range devs {
		if !slices.Contains(s.GPUIndexes, idx) {
			deny = append(deny, dev)
		}
	}
	private := orNode(s.PrivateTmp, iso.PrivateTmp)
	if private && iso.PrivateTmpDir == "" {
		return nil, fmt.Errorf("%w: %s: the job's partition gives it a private /tmp and /dev/shm, which this node does not make", driver.ErrStart, s.ID)
	}
	lim := cgroup.Limits{CPUs: s.CPUSet, MemBytes: int64(s.MemMB) << 20, AllowSwap: orNode(s.AllowSwap, iso.AllowSwap), Deny: deny}
	g, err := iso.Cgroups.Create(cgTask(s), lim)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", driver.ErrStart, s.ID, err)
	}
	shim := append(slices.Clone(iso.Shim),
		"--cgroup-procs", strings.Join(g.ProcsFiles(), ","), "--exit", d.exitFile(s.ID),
		"--uid", strconv.FormatUint(uint64(s.UID), 10), "--gid", strconv.FormatUint(uint64(s.GID), 10), "--groups", joinUint(s.Groups))
	attr := &syscall.SysProcAttr{Setpgid: true}
	if private {
		tmp, shm, err := privateDirs(iso.PrivateTmpDir, jobOf(s.ID))
		if err != nil {
			_ = g.Delete()
			return nil, fmt.Errorf("%w: %s: private /tmp: %v", driver.ErrStart, s.ID, err)
		}
		shim = append(shim, "--tmp", tmp, "--shm", shm)
		attr.Unshareflags = syscall.CLONE_NEWNS
	}
	shim = append(shim, "--", "/bin/sh", "-c", syncedRedirect, "loom-task", s.Stdout, s.Stderr, flagT(s.TruncateStdout), flagT(s.TruncateStderr))
	shim = append(shim, s.Argv...)
	_ = os.Remove(d.exitFile(s.ID))
	cmd := osexec.Command(shim[0], shim[1:]...)
	cmd.Env = s.Env
	cmd.Dir = s.Dir
	var setup strings.Builder
	cmd.Stderr = &limitedWriter{w: &setup, n: 4096}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		_ = g.Delete()
		return nil, fmt.Errorf("%w: %s: %v", driver.ErrStart, s.ID, err)
	}
	h := &cgHandle{d: d, id: s.ID, g: g, pid: cmd.Process.Pid, setup: &setup, Ending: driver.NewEnding()}
	if err := writePidFile(d.pidFile(s.ID), h.pid); err != nil {
		d.log.Warn("recording a rank's shim failed; a restarted agent will not re-attach to it", "task", s.ID, "err", err)
	}
	go h.reap(cmd.Wait)
	return h, nil
}

// orNode is a job's choice where its partition made one, else the
// node's.
func orNode(job *bool, node bool) bool {
	if job != nil {
		return *job
	}
	return node
}

// privateDirs makes a job's private /tmp and /dev/shm: root's directory
// job_ID (0700, so no one reaches them by this path), and in it tmp and
// shm, open to all like the real ones.
func privateDirs(base string, job uint64) (tmp, shm string, err error) {
	dir := filepath.Join(base, "job_"+strconv.FormatUint(job, 10))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	tmp, shm = filepath.Join(dir, "tmp"), filepath.Join(dir, "shm")
	for _, p := range []string{tmp, shm} {
		if err := os.Mkdir(p, 0o1777); err != nil && !errors.Is(err, os.ErrExist) {
			return "", "", err
		}
		if err := os.Chmod(p, 0o1777|os.ModeSticky); err != nil {
			return "", "", err
		}
	}
	return tmp, shm, nil
}

func joinUint(v []uint32) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.FormatUint(uint64(n), 10)
	}
	return strings.Join(s, ",")
}

func (d *Driver) exitFile(task string) string { return filepath.Join(d.stateDir, task+".exit") }

// cgHandle is an isolated rank: its shim's process and its cgroup.
type cgHandle struct {
	d     *Driver
	id    string
	g     cgroup.Group
	pid   int              // the shim's
	setup *strings.Builder // the shim's stderr; nil for a recovered rank
	*driver.Ending
}

// reap waits for the shim (wait returns when it has exited), reads how the
// rank ended, and kills whatever the rank left in its group: a rank's
// end is the end of every process it started.
func (h *cgHandle) reap(wait func() error) {
	werr := wait()
	code, sig, err := readExit(h.d.exitFile(h.id))
	if kerr := h.g.Kill(); kerr != nil {
		h.d.log.Warn("killing what the rank left behind failed", "task", h.id, "err", kerr)
	}
	ex := driver.Exit{Code: code, Signal: sig, OOM: h.g.OOMKilled()}
	switch {
	case err == nil && code == 126 && h.setup != nil && h.setup.Len() > 0:
		h.End(ex, fmt.Errorf("%w: %s", driver.ErrStart, strings.TrimSpace(h.setup.String())))
	case err == nil:
		h.End(ex, nil)
	case h.setup != nil && h.setup.Len() > 0:
		h.End(driver.Exit{Code: 126}, fmt.Errorf("%w: %s", driver.ErrStart, strings.TrimSpace(h.setup.String())))
	default:
		h.End(driver.Exit{}, fmt.Errorf("the rank's shim ended without recording its exit (%v): %w", werr, err))
	}
}

// Signal delivers sig to every process of the rank's group but the shim.
func (h *cgHandle) Signal(sig syscall.Signal) error {
	if h.Ended() {
		return nil
	}
	pids, err := h.g.Pids()
	if err != nil {
		return err
	}
	for _, p := range pids {
		if p != h.pid {
			_ = syscall.Kill(p, sig)
		}
	}
	return nil
}

func (h *cgHandle) PID() int { return h.pid }

// Cleanup removes the rank's group, its records and, when it was its
// job's last rank here, the job's private /tmp.
func (h *cgHandle) Cleanup(context.Context) error {
	if err := h.g.Delete(); err != nil {
		return err
	}
	for _, f := range []string{h.d.exitFile(h.id), h.d.pidFile(h.id)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if h.d.iso.PrivateTmpDir != "" && !h.d.jobHasGroups(jobOf(h.id)) {
		return os.RemoveAll(filepath.Join(h.d.iso.PrivateTmpDir, "job_"+strconv.FormatUint(jobOf(h.id), 10)))
	}
	return nil
}

func (d *Driver) jobHasGroups(job uint64) bool {
	ts, err := d.iso.Cgroups.List()
	if err != nil {
		return true
	}
	return slices.ContainsFunc(ts, func(t cgroup.Task) bool { return t.Job == job })
}

// recoverIsolated finds the ranks by their cgroups: a known one gets a
// handle that follows its shim; an unknown one is killed and removed.
func (d *Driver) recoverIsolated(known []string) (map[string]driver.Handle, error) {
	tasks, err := d.iso.Cgroups.List()
	if err != nil {
		return nil, err
	}
	out := map[string]driver.Handle{}
	for _, t := range tasks {
		g, err := d.iso.Cgroups.Load(t)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(known, t.Name) {
			d.log.Warn("killing a rank the agent has no record of", "task", t.Name)
			if err := g.Kill(); err != nil {
				return nil, err
			}
			if err := g.Delete(); err != nil {
				return nil, err
			}
			os.Remove(d.pidFile(t.Name))
			os.Remove(d.exitFile(t.Name))
			continue
		}
		pid, start, err := readPidFile(d.pidFile(t.Name))
		if err != nil {
			pid, start = 0, 0
		}
		h := &cgHandle{d: d, id: t.Name, g: g, pid: pid, Ending: driver.NewEnding()}
		exit := d.exitFile(t.Name)
		go h.reap(func() error { return followShim(pid, start, g, exit) })
		out[t.Name] = h
		d.log.Info("re-attached to a rank by its cgroup", "task", t.Name, "shim_pid", pid)
	}
	return out, nil
}

// followShim returns once process pid (started at start) has exited. It
// is not this process's child, so it cannot be waited for: it is polled.
// Without a record of the shim it waits for the exit file, or for the
// group to be empty.
func followShim(pid int, start uint64, g cgroup.Group, exit string) error {
	for {
		if pid > 0 && processStart(pid) != start {
			return nil
		}
		if pid <= 0 {
			if _, err := os.Stat(exit); err == nil {
				return nil
			}
			if ps, err := g.Pids(); err != nil || len(ps) == 0 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}
