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

	"golang.org/x/sys/unix"

	"github.com/loomhpc/loom/cpulist"
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

// DefaultMount is where the cgroup file system is mounted on a host
// set up the usual way: the cgroup2 file system itself (unified), or a
// tmpfs with one mount per v1 controller below it (legacy, hybrid).
const DefaultMount = "/sys/fs/cgroup"

// Hierarchy is the cgroup file system an agent confines ranks in.
type Hierarchy struct {
	Mode Mode
	// Mount is the cgroup2 mount (or a delegated cgroup2 directory) on
	// v2, and the directory that holds each controller's mount on v1.
	Mount string
	// Controllers are those the ranks' groups get: on v2 what the
	// mount's cgroup.controllers offers, on v1 the mounted ones.
	Controllers []string
}

// Has says whether the hierarchy offers controller c.
func (h Hierarchy) Has(c string) bool { return slices.Contains(h.Controllers, c) }

// limitControllers are the controllers a rank's limits need; a job that
// asks for a limit whose controller is missing is refused (Create).
var limitControllers = []string{"cpuset", "memory"}

// Enforced lists what a rank's group holds on this hierarchy: its
// devices (v1's devices controller, v2's eBPF filter), its processes
// (freezer, cgroup.kill), and the limit controllers present.
func (h Hierarchy) Enforced() []string {
	out := []string{"devices", "processes"}
	for _, c := range append(slices.Clone(limitControllers), "pids") {
		if h.Has(c) {
			out = append(out, c)
		}
	}
	return out
}

// Missing lists the limit controllers the hierarchy lacks: jobs that ask
// for those limits are not started.
func (h Hierarchy) Missing() []string {
	var out []string
	for _, c := range limitControllers {
		if !h.Has(c) {
			out = append(out, c)
		}
	}
	return out
}

// Detect says which hierarchy this node can confine ranks with at
// DefaultMount, and when it cannot, why.
func Detect() (Mode, error) {
	h, err := DetectAt(DefaultMount)
	return h.Mode, err
}

// DetectAt finds the hierarchy mounted at mount: cgroup v2 where mount is
// a cgroup2 file system, else v1 controllers mounted below it. A hybrid
// node (v1 controllers with an empty cgroup2 beside them) is V1 at
// /sys/fs/cgroup: the controllers are where the limits are; its cgroup2
// mount (often /sys/fs/cgroup/unified) can be named to use v2 instead.
func DetectAt(mount string) (Hierarchy, error) {
	if os.Geteuid() != 0 {
		return Hierarchy{}, errors.New("the agent does not run as root, so it cannot create cgroups")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mount, &st); err != nil {
		return Hierarchy{}, fmt.Errorf("no cgroup file system at %s: %w", mount, err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		cs, err := v2Controllers(mount)
		if err != nil {
			return Hierarchy{}, err
		}
		return Hierarchy{Mode: V2, Mount: mount, Controllers: cs}, nil
	}
	if _, err := os.Stat(filepath.Join(mount, v1Controllers[0], "cgroup.procs")); err != nil {
		return Hierarchy{}, fmt.Errorf("no cgroup file system is mounted at %s (neither cgroup2 nor v1 controllers)", mount)
	}
	for _, c := range v1Controllers {
		if _, err := os.Stat(filepath.Join(mount, c, "cgroup.procs")); err != nil {
			return Hierarchy{}, fmt.Errorf("cgroup v1 controller %s is not mounted at %s", c, filepath.Join(mount, c))
		}
	}
	return Hierarchy{Mode: V1, Mount: mount, Controllers: slices.Clone(v1Controllers)}, nil
}

// v2Controllers reads the controllers a cgroup2 directory offers.
func v2Controllers(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup v2 at %s: %w", dir, err)
	}
	return strings.Fields(string(b)), nil
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
	h    Hierarchy
	root string
	// rootMem caps the memory of all the ranks together (the root's
	// group); 0 for no cap.
	rootMem int64
}

// CapMemory limits the memory all ranks use together to bytes: the
// node's memory less what is kept for the system (--reserved-mem-mb), so
// that ranks without a limit of their own cannot take the system's share.
// It needs the memory controller.
func (m *Manager) CapMemory(bytes int64) error {
	if bytes > 0 && !m.h.Has("memory") {
		return fmt.Errorf("cgroup: the %s hierarchy at %s has no memory controller, so ranks could take the memory kept for the system", m.h.Mode, m.h.Mount)
	}
	m.rootMem = bytes
	return nil
}

// New returns a manager of groups under root in hierarchy mode at
// DefaultMount.
func New(mode Mode, root string) (*Manager, error) {
	h := Hierarchy{Mode: mode, Mount: DefaultMount, Controllers: slices.Clone(v1Controllers)}
	if mode == V2 {
		cs, err := v2Controllers(DefaultMount)
		if err != nil {
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		h.Controllers = cs
	}
	return NewIn(h, root)
}

// NewIn returns a manager of groups under root in hierarchy h (as
// DetectAt found it).
func NewIn(h Hierarchy, root string) (*Manager, error) {
	if h.Mode == None {
		return nil, errors.New("cgroup: no hierarchy to manage")
	}
	if !validName.MatchString(root) {
		return nil, fmt.Errorf("cgroup: root %q: want letters, digits, '.', '_' or '-'", root)
	}
	return &Manager{h: h, root: root}, nil
}

// Mode is the manager's hierarchy's mode.
func (m *Manager) Mode() Mode { return m.h.Mode }

// Hierarchy is the hierarchy the manager's groups are in.
func (m *Manager) Hierarchy() Hierarchy { return m.h }

// MissingControllerError is a rank's limit that the node's hierarchy has
// no controller to enforce: the rank is refused, never run unlimited.
type MissingControllerError struct {
	Limit      string // what the job asked for: "a memory limit (--mem)"
	Controller string
	H          Hierarchy
}

func (e *MissingControllerError) Error() string {
	offers := strings.Join(e.H.Controllers, " ")
	if offers == "" {
		offers = "none"
	}
	return fmt.Sprintf("cgroup: the job asks for %s, but this node's %s hierarchy at %s has no %s controller (it offers: %s); "+
		"the rank is not started rather than run without it", e.Limit, e.H.Mode, e.H.Mount, e.Controller, offers)
}

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
	if l.MemBytes > 0 && !m.h.Has("memory") {
		return nil, &MissingControllerError{Limit: "a memory limit (--mem)", Controller: "memory", H: m.h}
	}
	if len(l.CPUs) > 0 && !m.h.Has("cpuset") {
		return nil, &MissingControllerError{Limit: "CPUs of its own (a cpuset)", Controller: "cpuset", H: m.h}
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
	if m.h.Mode == V2 {
		return createV2(m.h, m.root, m.rootMem, t, l)
	}
	return createV1(m.h.Mount, m.root, m.rootMem, t, l)
}

// Load finds task's group, made by this or an earlier agent.
func (m *Manager) Load(t Task) (Group, error) {
	if m.h.Mode == V2 {
		return loadV2(m.h.Mount, m.root, t)
	}
	return loadV1(m.h.Mount, m.root, t)
}

// List returns every task group under the root.
func (m *Manager) List() ([]Task, error) {
	dir := filepath.Join(m.h.Mount, m.root)
	if m.h.Mode == V1 {
		dir = filepath.Join(m.h.Mount, "freezer", m.root)
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

// HostCPUs are the CPUs the agent itself may use: the ranks' cpusets are
// chosen among them.
func HostCPUs() ([]int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return cpulist.Parse(v)
		}
	}
	return nil, errors.New("cgroup: no Cpus_allowed_list in /proc/self/status")
}

// HostMemory is the host's memory in bytes (MemTotal).
func HostMemory() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cgroup: /proc/meminfo: MemTotal %q", strings.TrimSpace(v))
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("cgroup: no MemTotal in /proc/meminfo")
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
	dirs := []string{filepath.Join(m.h.Mount, m.root)}
	if m.h.Mode == V1 {
		dirs = nil
		for _, c := range v1Controllers {
			dirs = append(dirs, filepath.Join(m.h.Mount, c, m.root))
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
