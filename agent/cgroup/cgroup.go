package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	cgroups "github.com/containerd/cgroups/v3"
)

// Mode is which cgroup hierarchy the node confines ranks with.
type Mode int

const (
	// None: ranks run unconfined (not root, or no cgroup file system).
	None Mode = iota
	// V1 is the split hierarchy: one mount per controller.
	V1
	// V2 is the unified hierarchy.
	V2
)

func (m Mode) String() string {
	switch m {
	case V1:
		return "cgroup-v1"
	case V2:
		return "cgroup-v2"
	}
	return "none"
}

// Detect says which hierarchy this node can confine ranks with, and when
// it cannot, why. A hybrid node (v1 controllers with an empty cgroup2
// beside them) is V1: the controllers are where the limits are.
func Detect() (Mode, error) {
	if os.Geteuid() != 0 {
		return None, errors.New("the agent does not run as root, so it cannot create cgroups")
	}
	switch cgroups.Mode() {
	case cgroups.Unified:
		return V2, nil
	case cgroups.Legacy, cgroups.Hybrid:
		for _, c := range v1Controllers {
			if _, err := os.Stat(filepath.Join(v1Root, c, "cgroup.procs")); err != nil {
				return None, fmt.Errorf("cgroup v1 controller %s is not mounted at %s", c, filepath.Join(v1Root, c))
			}
		}
		return V1, nil
	}
	return None, errors.New("no cgroup file system is mounted at /sys/fs/cgroup")
}

// Device is a character device by number, as the device rules name it.
type Device struct{ Major, Minor int64 }

// Limits is what one rank's group enforces.
type Limits struct {
	// CPUs are the host CPUs the rank may run on; empty for all.
	CPUs []int
	// MemBytes is the memory limit; 0 for none.
	MemBytes int64
	// AllowSwap lets the rank swap beyond MemBytes; otherwise memory plus
	// swap is limited to MemBytes too.
	AllowSwap bool
	// Deny are the device nodes the rank may not open: the node's GPUs
	// that are not its own. Every other device stays allowed, as Slurm's
	// ConstrainDevices does for devices it does not manage.
	Deny []Device
}

// Manager makes and finds the groups of one agent under its root (a name
// such as "loom", below each hierarchy's mount point).
type Manager struct {
	mode Mode
	root string
}

// New returns a manager of groups under root in hierarchy mode.
func New(mode Mode, root string) (*Manager, error) {
	if mode == None {
		return nil, errors.New("cgroup: no hierarchy to manage")
	}
	if !validName.MatchString(root) {
		return nil, fmt.Errorf("cgroup: root %q: want letters, digits, '.', '_' or '-'", root)
	}
	return &Manager{mode: mode, root: root}, nil
}

// Mode is the manager's hierarchy.
func (m *Manager) Mode() Mode { return m.mode }

var validName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Task names one rank's group: job_JOB/TASK under the root.
type Task struct {
	Job  uint64
	Name string // the driver's task id
}

func (t Task) rel(root string) string {
	return filepath.Join(root, "job_"+strconv.FormatUint(t.Job, 10), t.Name)
}

// Group is one rank's cgroup.
type Group interface {
	// ProcsFiles are the cgroup.procs files a process writes its pid to
	// to join the group (one per v1 controller, one on v2).
	ProcsFiles() []string
	// Pids are the processes in the group.
	Pids() ([]int, error)
	// Kill ends every process in the group: frozen, so nothing forks
	// away, killed, thawed; it returns once the group is empty.
	Kill() error
	// OOMKilled says whether the kernel killed a process of the group at
	// its memory limit.
	OOMKilled() bool
	// Delete removes the group, and its job's group once that is empty.
	Delete() error
}

// Create makes task's group with limits. An existing group of that name
// (left by an earlier agent) is emptied and made again.
func (m *Manager) Create(t Task, l Limits) (Group, error) {
	if !validName.MatchString(t.Name) {
		return nil, fmt.Errorf("cgroup: task name %q: want letters, digits, '.', '_' or '-'", t.Name)
	}
	if g, err := m.Load(t); err == nil {
		// A fresh group: a stale one's counters (an OOM kill) would be
		// taken for the new rank's.
		if err := g.Kill(); err != nil {
			return nil, err
		}
		if err := g.Delete(); err != nil {
			return nil, fmt.Errorf("cgroup: removing the stale group of %s: %w", t.Name, err)
		}
	}
	if m.mode == V2 {
		return createV2(m.root, t, l)
	}
	return createV1(m.root, t, l)
}

// Load finds task's group, made by this or an earlier agent.
func (m *Manager) Load(t Task) (Group, error) {
	if m.mode == V2 {
		return loadV2(m.root, t)
	}
	return loadV1(m.root, t)
}

// List returns every task group under the root.
func (m *Manager) List() ([]Task, error) {
	dir := filepath.Join(v2Root, m.root)
	if m.mode == V1 {
		dir = filepath.Join(v1Root, "freezer", m.root)
	}
	jobs, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Task
	for _, j := range jobs {
		id, ok := strings.CutPrefix(j.Name(), "job_")
		n, err := strconv.ParseUint(id, 10, 64)
		if !j.IsDir() || !ok || err != nil {
			continue
		}
		tasks, err := os.ReadDir(filepath.Join(dir, j.Name()))
		if err != nil {
			return nil, err
		}
		for _, e := range tasks {
			if e.IsDir() {
				out = append(out, Task{Job: n, Name: e.Name()})
			}
		}
	}
	return out, nil
}

// CPUList formats cpus as the kernel does (Cpus_allowed_list): "0-3,8".
func CPUList(cpus []int) string {
	c := slices.Clone(cpus)
	slices.Sort(c)
	c = slices.Compact(c)
	var b strings.Builder
	for i := 0; i < len(c); {
		j := i
		for j+1 < len(c) && c[j+1] == c[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(c[i]))
		if j > i {
			b.WriteString("-" + strconv.Itoa(c[j]))
		}
		i = j + 1
	}
	return b.String()
}

// ParseCPUList reads a kernel CPU list ("0-3,8").
func ParseCPUList(s string) ([]int, error) {
	var out []int
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %q is not a number", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

// HostCPUs are the CPUs the agent itself may use: the ranks' cpusets are
// chosen among them.
func HostCPUs() ([]int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return ParseCPUList(v)
		}
	}
	return nil, errors.New("cgroup: no Cpus_allowed_list in /proc/self/status")
}

// killAll freezes, kills and thaws a group until it is empty. freeze and
// thaw may be nil where the hierarchy kills atomically.
func killAll(pids func() ([]int, error), freeze, thaw func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ps, err := pids()
		if err != nil {
			return err
		}
		if len(ps) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup: %d processes still there after 30s of SIGKILL", len(ps))
		}
		if freeze != nil {
			_ = freeze()
			if ps, err = pids(); err != nil {
				return err
			}
		}
		for _, p := range ps {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		if thaw != nil {
			_ = thaw()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Clear kills every process in every group under the root and removes the
// groups and the root: for tests, and for an admin taking a node out of
// service.
func (m *Manager) Clear() error {
	ts, err := m.List()
	if err != nil {
		return err
	}
	for _, t := range ts {
		g, err := m.Load(t)
		if err != nil {
			return err
		}
		if err := g.Kill(); err != nil {
			return err
		}
		if err := g.Delete(); err != nil {
			return err
		}
	}
	dirs := []string{filepath.Join(v2Root, m.root)}
	if m.mode == V1 {
		dirs = nil
		for _, c := range v1Controllers {
			dirs = append(dirs, filepath.Join(v1Root, c, m.root))
		}
	}
	for _, d := range dirs {
		// Job groups left empty by an agent killed between removing a
		// rank's group and its job's.
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.IsDir() {
				_ = os.Remove(filepath.Join(d, e.Name()))
			}
		}
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// oomKills reads the oom_kill count from a memory controller's event file
// (v1's memory.oom_control, v2's memory.events); 0 when it cannot.
func oomKills(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
