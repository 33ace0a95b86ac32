package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup2"

	"github.com/loomhpc/loom/cpulist"
)

type v2Group struct {
	m   *cgroup2.Manager
	dir string
}

// v2Delegated are the controllers the root and the job's group pass down
// to the ranks' groups, where the hierarchy offers them. cpuset and
// memory hold the limits; pids counts what a rank runs.
var v2Delegated = []string{"cpuset", "memory", "pids"}

// createV2 makes the group by hand rather than with cgroup2.NewManager,
// which enables the cpu controller with any cpuset: a hierarchy offers
// only some controllers (a second cgroup2 mount on a hybrid node offers
// none of these), and the group uses those, no others.
func createV2(h Hierarchy, root string, rootMem int64, t Task, l Limits) (Group, error) {
	rel := t.rel(root)
	dir := filepath.Join(h.Mount, rel)
	var enable []string
	for _, c := range v2Delegated {
		if h.Has(c) {
			enable = append(enable, "+"+c)
		}
	}
	// The mount, the root and the job's group each pass the controllers
	// down one level.
	for _, d := range []string{h.Mount, filepath.Join(h.Mount, root), filepath.Dir(dir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup: create %s: %w", d, err)
		}
		if len(enable) == 0 {
			continue
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0); err != nil {
			return nil, fmt.Errorf("cgroup: enable %s under %s: %w", strings.Join(enable, " "), d, err)
		}
	}
	if rootMem > 0 {
		// All ranks together: the root's group.
		if err := os.WriteFile(filepath.Join(h.Mount, root, "memory.max"), []byte(strconv.FormatInt(rootMem, 10)), 0); err != nil {
			return nil, fmt.Errorf("cgroup: capping the ranks' memory at %d bytes: %w", rootMem, err)
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup: create %s: %w", rel, err)
	}
	fail := func(err error) (Group, error) {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("cgroup: create %s: %w", rel, err)
	}
	var files [][2]string
	if len(l.CPUs) > 0 {
		files = append(files, [2]string{"cpuset.cpus", cpulist.Format(l.CPUs)})
	}
	if l.MemBytes > 0 {
		files = append(files, [2]string{"memory.max", strconv.FormatInt(l.MemBytes, 10)})
		// memory.swap.max is there with swap accounting (the kernel's
		// default); without it no cgroup can cap swap.
		if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil && !l.AllowSwap {
			files = append(files, [2]string{"memory.swap.max", "0"})
		}
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f[0]), []byte(f[1]), 0); err != nil {
			return fail(fmt.Errorf("%s=%s: %w", f[0], f[1], err))
		}
	}
	m, err := cgroup2.Load("/"+rel, cgroup2.WithMountpoint(h.Mount))
	if err != nil {
		return fail(err)
	}
	// The devices: an eBPF program attached to the group.
	if err := m.Update(&cgroup2.Resources{Devices: deviceRules(l.Deny)}); err != nil {
		return fail(fmt.Errorf("device filter: %w", err))
	}
	return &v2Group{m: m, dir: dir}, nil
}

func loadV2(mount, root string, t Task) (Group, error) {
	rel := t.rel(root)
	dir := filepath.Join(mount, rel)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("cgroup: %s: %w", rel, err)
	}
	m, err := cgroup2.Load("/"+rel, cgroup2.WithMountpoint(mount))
	if err != nil {
		return nil, fmt.Errorf("cgroup: load %s: %w", rel, err)
	}
	return &v2Group{m: m, dir: dir}, nil
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
