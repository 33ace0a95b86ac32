package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/cgroups/v3/cgroup2"
)

const v2Root = "/sys/fs/cgroup"

type v2Group struct {
	m   *cgroup2.Manager
	dir string
}

func createV2(root string, t Task, l Limits) (Group, error) {
	rel := t.rel(root)
	// The job's group (and the root's) must pass the controllers down.
	parent := filepath.Dir(rel)
	if _, err := cgroup2.NewManager(v2Root, "/"+parent, &cgroup2.Resources{
		CPU: &cgroup2.CPU{}, Memory: &cgroup2.Memory{}, Pids: &cgroup2.Pids{},
	}); err != nil {
		return nil, fmt.Errorf("cgroup: create %s: %w", parent, err)
	}
	pm, err := cgroup2.Load("/" + parent)
	if err != nil {
		return nil, fmt.Errorf("cgroup: load %s: %w", parent, err)
	}
	if err := pm.ToggleControllers([]string{"cpuset", "memory", "pids"}, cgroup2.Enable); err != nil {
		return nil, fmt.Errorf("cgroup: enable controllers under %s: %w", parent, err)
	}
	res := &cgroup2.Resources{Devices: deviceRules(l.Deny), Pids: &cgroup2.Pids{}, Memory: &cgroup2.Memory{}}
	if len(l.CPUs) > 0 {
		res.CPU = &cgroup2.CPU{Cpus: CPUList(l.CPUs)}
	}
	if l.MemBytes > 0 {
		limit := l.MemBytes
		res.Memory.Max = &limit
		if !l.AllowSwap {
			zero := int64(0)
			res.Memory.Swap = &zero
		}
	}
	m, err := cgroup2.NewManager(v2Root, "/"+rel, res)
	if err != nil {
		return nil, fmt.Errorf("cgroup: create %s: %w", rel, err)
	}
	return &v2Group{m: m, dir: filepath.Join(v2Root, rel)}, nil
}

func loadV2(root string, t Task) (Group, error) {
	rel := t.rel(root)
	if _, err := os.Stat(filepath.Join(v2Root, rel)); err != nil {
		return nil, fmt.Errorf("cgroup: %s: %w", rel, err)
	}
	m, err := cgroup2.Load("/" + rel)
	if err != nil {
		return nil, fmt.Errorf("cgroup: load %s: %w", rel, err)
	}
	return &v2Group{m: m, dir: filepath.Join(v2Root, rel)}, nil
}

func (g *v2Group) ProcsFiles() []string { return []string{filepath.Join(g.dir, "cgroup.procs")} }

func (g *v2Group) Pids() ([]int, error) { return readPids(filepath.Join(g.dir, "cgroup.procs")) }

// Kill uses cgroup.kill where the kernel has it (5.14), which kills the
// whole group at once; the manager falls back to freeze, kill, thaw.
func (g *v2Group) Kill() error {
	if err := g.m.Kill(); err != nil {
		return err
	}
	return killAll(g.Pids, g.m.Freeze, g.m.Thaw)
}

func (g *v2Group) OOMKilled() bool {
	return oomKills(filepath.Join(g.dir, "memory.events")) > 0
}

func (g *v2Group) Delete() error {
	if err := g.m.Delete(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// The job's group, then the root, once empty (fails while other
	// groups are there).
	_ = os.Remove(filepath.Dir(g.dir))
	_ = os.Remove(filepath.Dir(filepath.Dir(g.dir)))
	return nil
}
