package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/loomhpc/loom/cpulist"
)

// v1Controllers are the v1 hierarchies a rank's group spans. The freezer
// comes first: List reads the groups from it.
var v1Controllers = []string{"freezer", "pids", "cpuset", "memory", "devices"}

// v1Hierarchy is the controllers mounted below mount, for cgroup1.
func v1Hierarchy(mount string) cgroup1.Hierarchy {
	return func() ([]cgroup1.Subsystem, error) {
		return []cgroup1.Subsystem{
			cgroup1.NewFreezer(mount), cgroup1.NewPids(mount), cgroup1.NewCpuset(mount),
			cgroup1.NewMemory(mount, cgroup1.OptionalSwap()), cgroup1.NewDevices(mount),
		}, nil
	}
}

// requireAll refuses a group that some controller could not be made in:
// a rank is confined by all of them or not started.
func requireAll(s cgroup1.Subsystem, _ cgroup1.Path, err error) error {
	return fmt.Errorf("cgroup: controller %s: %w", s.Name(), err)
}

type v1Group struct {
	cg    cgroup1.Cgroup
	mount string
	rel   string
}

func createV1(mount, root string, rootMem int64, t Task, l Limits) (Group, error) {
	rel := t.rel(root)
	if rootMem > 0 {
		// The root's group holds all ranks' memory together; it is made
		// again (and capped) after an idle node removed it.
		dir := filepath.Join(mount, "memory", root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup: create %s: %w", dir, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(rootMem, 10)), 0); err != nil {
			return nil, fmt.Errorf("cgroup: capping the ranks' memory at %d bytes: %w", rootMem, err)
		}
	}
	res := &specs.LinuxResources{Devices: deviceRules(l.Deny)}
	if len(l.CPUs) > 0 {
		res.CPU = &specs.LinuxCPU{Cpus: cpulist.Format(l.CPUs)}
	}
	if l.MemBytes > 0 {
		limit := l.MemBytes
		res.Memory = &specs.LinuxMemory{Limit: &limit}
		if _, err := os.Stat(filepath.Join(mount, "memory", "memory.memsw.limit_in_bytes")); err == nil && !l.AllowSwap {
			res.Memory.Swap = &limit
		}
		// Swapping is also kept off where swap accounting is not there to
		// cap it.
		if !l.AllowSwap {
			zero := uint64(0)
			res.Memory.Swappiness = &zero
		}
	}
	cg, err := cgroup1.New(cgroup1.StaticPath("/"+rel), res,
		cgroup1.WithHierarchy(v1Hierarchy(mount)), withInitCheck(requireAll))
	if err != nil {
		g := &v1Group{mount: mount, rel: rel}
		_ = g.removeDirs()
		return nil, fmt.Errorf("cgroup: create %s: %w", rel, err)
	}
	return &v1Group{cg: cg, mount: mount, rel: rel}, nil
}

func withInitCheck(f cgroup1.InitCheck) cgroup1.InitOpts {
	return func(c *cgroup1.InitConfig) error {
		c.InitCheck = f
		return nil
	}
}

func loadV1(mount, root string, t Task) (Group, error) {
	rel := t.rel(root)
	if _, err := os.Stat(filepath.Join(mount, "freezer", rel)); err != nil {
		return nil, fmt.Errorf("cgroup: %s: %w", rel, err)
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath("/"+rel), cgroup1.WithHierarchy(v1Hierarchy(mount)))
	if err != nil {
		return nil, fmt.Errorf("cgroup: load %s: %w", rel, err)
	}
	return &v1Group{cg: cg, mount: mount, rel: rel}, nil
}

func (g *v1Group) ProcsFiles() []string {
	var out []string
	for _, c := range v1Controllers {
		out = append(out, filepath.Join(g.mount, c, g.rel, "cgroup.procs"))
	}
	return out
}

// Pids reads the freezer's list: every process of the group is in all of
// its controllers.
func (g *v1Group) Pids() ([]int, error) {
	return readPids(filepath.Join(g.mount, "freezer", g.rel, "cgroup.procs"))
}

func (g *v1Group) Kill() error {
	return killAll(g.Pids, g.cg.Freeze, g.cg.Thaw)
}

func (g *v1Group) OOMKilled() bool {
	return oomKills(filepath.Join(g.mount, "memory", g.rel, "memory.oom_control")) > 0
}

func (g *v1Group) Delete() error {
	if err := g.cg.Delete(); err != nil && !errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return err
	}
	return g.removeDirs()
}

// removeDirs removes what is left of the group in every controller, and
// its job's directory and the root once no other group is in them.
func (g *v1Group) removeDirs() error {
	var first error
	for _, c := range v1Controllers {
		dir := filepath.Join(g.mount, c, g.rel)
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) && first == nil {
			first = err
		}
		// The job's group, then the root, once empty: an idle node keeps
		// nothing (Create makes them again).
		_ = os.Remove(filepath.Dir(dir))
		_ = os.Remove(filepath.Dir(filepath.Dir(dir)))
	}
	return first
}

// deviceRules allow every device but the denied ones. The wildcard's
// numbers are -1, as the OCI spec writes "any": v2's eBPF filter reads
// them (and fails on nil ones); v1 writes "a *:* rwm" for either.
func deviceRules(deny []Device) []specs.LinuxDeviceCgroup {
	wild := int64(-1)
	rules := []specs.LinuxDeviceCgroup{{Allow: true, Type: "a", Major: &wild, Minor: &wild, Access: "rwm"}}
	for _, d := range deny {
		major, minor := d.Major, d.Minor
		rules = append(rules, specs.LinuxDeviceCgroup{Allow: false, Type: "c", Major: &major, Minor: &minor, Access: "rwm"})
	}
	return rules
}

func readPids(procs string) ([]int, error) {
	b, err := os.ReadFile(procs)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		p, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("cgroup: %s: %q is not a pid", procs, f)
		}
		out = append(out, p)
	}
	return out, nil
}
