package agent

import (
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/loomhpc/loom/agent/driver"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/cpulist"
	"github.com/loomhpc/loom/gpu"
)

// The scheduler chooses every rank's cores (Rank.cores) among the node's
// cores as registered: 0..n-1, the host's CPUs after the system's
// reservation. The agent only maps them onto host CPUs: core c runs on
// the c-th usable host CPU, modulo their number. On a real node the two
// counts agree and the mapping is the identity; a simulated node (a DGX
// profile's 224 cores on a 2-CPU test machine) folds its cores onto the
// host's, so two ranks given disjoint cores may share a host CPU, exactly
// as the mapping says.
//
// What the scheduler knows of NUMA comes from the agent: at registration
// each GPU carries the cores on its NUMA node (GPU.near_cores), its CPU
// affinity (NVML's, the `CPU Affinity` column of `nvidia-smi topo -m`, on
// a real node; the profile's on a simulated one) in the cores'
// numbering. A simulated GPU's list numbers the profile's CPUs, which are
// the cores; a real GPU's numbers host CPUs, and host CPU h is the core
// at h's place among the usable host CPUs.

// cpuMap maps a node's cores onto host CPUs and knows their NUMA nodes.
type cpuMap struct {
	host []int // usable host CPUs, the reserved ones removed
	// numa holds the cores of each NUMA node some GPU hangs off.
	numa [][]uint32
}

// newCPUMap maps cores onto host, whose last reserved CPUs are kept for
// the system; near are the GPUs' near cores (nearCores).
func newCPUMap(host []int, reserved int, near map[uint32][]uint32) (*cpuMap, error) {
	if reserved < 0 || reserved >= len(host) {
		return nil, fmt.Errorf("agent: reserved_cpus=%d: the host has %d CPUs and ranks need at least one", reserved, len(host))
	}
	m := &cpuMap{host: slices.Clone(host[:len(host)-reserved])}
	for _, cs := range near {
		if len(cs) > 0 && !slices.ContainsFunc(m.numa, func(o []uint32) bool { return slices.Equal(o, cs) }) {
			m.numa = append(m.numa, cs)
		}
	}
	slices.SortFunc(m.numa, func(a, b []uint32) int { return int(a[0]) - int(b[0]) })
	return m, nil
}

// nearCores are, by GPU index, the cores 0..cores-1 on each GPU's NUMA
// node, from its CPU affinity; host are the host's CPUs, of which the
// last reserved are not cores. A GPU whose affinity is unknown has none.
func nearCores(host []int, cores uint32, reserved int, gpus []gpu.GPU) (map[uint32][]uint32, error) {
	usable := host[:max(len(host)-reserved, 0)]
	near := map[uint32][]uint32{}
	for _, g := range gpus {
		if g.CPUAffinity == "" {
			continue
		}
		list, err := cpulist.Parse(g.CPUAffinity)
		if err != nil {
			return nil, fmt.Errorf("agent: GPU %d: CPU affinity %q: %w", g.Index, g.CPUAffinity, err)
		}
		var cs []uint32
		for _, c := range list {
			if !g.Simulated {
				c = slices.Index(usable, c)
			}
			if c >= 0 && uint32(c) < cores {
				cs = append(cs, uint32(c))
			}
		}
		slices.Sort(cs)
		near[uint32(g.Index)] = slices.Compact(cs)
	}
	return near, nil
}

// setNearCores gives the GPUs of top their near cores.
func setNearCores(top *api.Topology, near map[uint32][]uint32) {
	for _, g := range top.GetGpus() {
		g.NearCores = near[g.Index]
	}
}

// hostCPUs are the host CPUs cores run on.
func (m *cpuMap) hostCPUs(cores []uint32) []int {
	var out []int
	for _, c := range cores {
		out = append(out, m.host[int(c)%len(m.host)])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ldoms are the cores of job on the NUMA nodes of own: those of every
// NUMA node own has a core on, and, for a core on none that a GPU hangs
// off, those on no such node.
func (m *cpuMap) ldoms(own, job []uint32) []uint32 {
	var out []uint32
	rest := true
	for _, c := range own {
		in := false
		for _, cs := range m.numa {
			if slices.Contains(cs, c) {
				in = true
				out = append(out, intersect(job, cs)...)
			}
		}
		if !in && rest {
			rest = false
			for _, j := range job {
				if !slices.ContainsFunc(m.numa, func(cs []uint32) bool { return slices.Contains(cs, j) }) {
					out = append(out, j)
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func intersect(a, b []uint32) []uint32 {
	var out []uint32
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// coresFor are the cores a rank runs on under bind: own are the cores it
// holds, job those its job holds on the node, local its local rank.
func (m *cpuMap) coresFor(bind api.CPUBind, own, job []uint32, local uint32, node string) ([]uint32, error) {
	switch bind.Kind {
	case "none":
		return job, nil
	case "rank":
		if len(job) == 0 {
			return nil, nil
		}
		return []uint32{job[int(local)%len(job)]}, nil
	case "sockets", "ldoms":
		return m.ldoms(own, job), nil
	case "map_cpu", "mask_cpu":
		want := bind.Entry(local)
		for _, c := range want {
			if !slices.Contains(job, c) {
				return nil, fmt.Errorf("CPU %d is not one of the job's on %s (%s); scontrol show job -d lists them as CPU_IDs", c, node, api.FormatCores(job))
			}
		}
		return want, nil
	}
	return own, nil
}

// cpuMask is a CPU list as Slurm's hexadecimal mask.
func cpuMask(cpus []int) string {
	mask := new(big.Int)
	for _, c := range cpus {
		mask.SetBit(mask, c, 1)
	}
	return "0x" + strings.ToUpper(mask.Text(16))
}

// cpuBindEnv reports a rank's binding as Slurm's task/affinity does:
// host is the cpuset it runs in, cores the node's cores it runs on (in
// the profile's numbering on a simulated node). A binding that slurmd
// turns into a mask (the default, cores, threads, sockets, ldoms) reports
// the rank's mask; none, rank, map_cpu and mask_cpu report themselves.
// LOOM_CPU_BIND_VERBOSE, set for verbose, is the line the exec driver
// prints to the rank's stderr, with @PID@ standing for the rank's pid.
func cpuBindEnv(b api.CPUBind, host []int, cores []uint32, node string, rank, local uint32) []string {
	m := cpuMask(host)
	verbose := "quiet"
	if b.Verbose {
		verbose = "verbose"
	}
	typ, list, label := "mask_cpu:", m, "MASK"
	switch b.Kind {
	case "none":
		typ, list, label = "none", "", "NONE"
	case "rank":
		typ, list, label = "rank", "", "RANK"
	case "map_cpu":
		typ, list, label = "map_cpu:", b.Given, "MAP"
	case "mask_cpu":
		typ, list = "mask_cpu:", b.Given
	case "cores", "threads", "sockets", "ldoms":
		typ = b.Kind + ",mask_cpu:"
	}
	env := []string{
		"SLURM_CPU_BIND_VERBOSE=" + verbose,
		"SLURM_CPU_BIND_TYPE=" + typ,
		"SLURM_CPU_BIND_LIST=" + list,
		"SLURM_CPU_BIND=" + verbose + "," + typ + list,
		"LOOM_CPU_BIND_LIST=" + cpulist.Format(host),
		"LOOM_CPU_BIND_CORES=" + api.FormatCores(cores),
	}
	if b.Verbose {
		env = append(env, fmt.Sprintf("LOOM_CPU_BIND_VERBOSE=cpu-bind=%s - %s, task %2d %2d [@PID@]: mask %s set", label, node, rank, local, m))
	}
	return env
}

// cpuBindOf is the --cpu-bind of t: its step's when the step gives one,
// else its job's.
func cpuBindOf(t *task) (api.CPUBind, string, error) {
	given := t.job.GetSpec().GetCpuBind()
	if t.full != nil {
		given = t.full.GetSpec().GetCpuBind()
		if s := t.step.GetSpec().GetCpuBind(); s != "" {
			given = s
		}
	}
	b, err := api.ParseCPUBind(given)
	return b, given, err
}

// bindCPUs sets the rank's cpuset to the host CPUs of the cores its job's
// --cpu-bind gives it out of its allocation, and its SLURM_CPU_BIND*
// reporting. A node that does not bind CPUs runs every rank on all of
// them, which is --cpu-bind=none: any other explicit binding is refused
// there rather than ignored. A rank placed before the scheduler chose
// cores runs on all of its job's cores on the node, or unbound when the
// job has none.
func (a *Agent) bindCPUs(t *task, s *driver.TaskSpec) error {
	bind, given, err := cpuBindOf(t)
	if err != nil {
		return fmt.Errorf("--cpu-bind: %w", err)
	}
	if a.cpus == nil {
		if given != "" && (!bind.None() || bind.Verbose) {
			return fmt.Errorf("--cpu-bind=%s: node %s does not bind ranks to CPUs (only isolated exec nodes do); give --cpu-bind=none or run on an isolated node", given, a.cfg.Name)
		}
		return nil
	}
	r := t.rank
	alloc := t.job.GetAllocation()
	if t.full != nil {
		alloc = t.full.GetAllocation()
	}
	job := alloc.NodeCores(r.Node)
	own := r.Cores
	if len(own) == 0 {
		own = job
	}
	cores, err := a.cpus.coresFor(bind, own, job, r.LocalRank, r.Node)
	if err != nil {
		return fmt.Errorf("--cpu-bind=%s: %w", given, err)
	}
	if len(cores) == 0 {
		return nil
	}
	t.cores = nil
	for _, c := range cores {
		t.cores = append(t.cores, int(c))
	}
	s.CPUSet = a.cpus.hostCPUs(cores)
	s.Env = slices.DeleteFunc(s.Env, func(kv string) bool {
		return strings.HasPrefix(kv, "SLURM_CPU_BIND") || strings.HasPrefix(kv, "LOOM_CPU_BIND")
	})
	s.Env = append(s.Env, cpuBindEnv(bind, s.CPUSet, cores, a.cfg.Name, r.Rank, r.LocalRank)...)
	return nil
}
