package agent

import (
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/loomhpc/loom/agent/cgroup"
	"github.com/loomhpc/loom/agent/driver"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/gpu"
)

// The node's cores as the scheduler counts them (the registered CPUs,
// 0..n-1, after the system's reservation) are handed to ranks, and each is
// bound to a host CPU: core c runs on the c-th usable host CPU, modulo
// their number. On a real node the two counts agree and the mapping is the
// identity; a simulated node (a DGX profile's 224 cores on a 2-CPU test
// machine) folds its cores onto the host's, so two ranks given disjoint
// cores may share a host CPU, exactly as the mapping says.
//
// A rank with GPUs takes its cores from the CPU affinity lists of its
// GPUs' NUMA nodes first (NVML's, the `CPU Affinity` column of `nvidia-smi
// topo -m`, on a real node; the profile's on a simulated one), and from
// other cores only when those have too few free. A simulated GPU's list
// numbers the profile's CPUs, which are the cores; a real GPU's numbers
// host CPUs, and host CPU h is the core at h's place among the usable host
// CPUs. Ranks without GPUs take the lowest free cores.
//
// A job bound with --cpu-bind=none holds, per node and step, the cores of
// all of its ranks there as one set: its first rank to start takes the
// ranks' CPUs together (near all of their GPUs) and every rank runs on the
// whole set. A core is free when no rank holds it.

// cpuBinder hands out a node's cores and maps them to host CPUs.
type cpuBinder struct {
	host []int // usable host CPUs, the reserved ones removed
	used []int // ranks holding each core, guarded by the agent's mu
	// near holds, by GPU index, the cores on the GPU's NUMA node.
	near map[uint32][]int
}

// newCPUBinder binds cores 0..cores-1 to host, whose last reserved CPUs
// are kept for the system; gpus give each GPU's CPU affinity.
func newCPUBinder(host []int, cores uint32, reserved int, gpus []gpu.GPU) (*cpuBinder, error) {
	if reserved < 0 || reserved >= len(host) {
		return nil, fmt.Errorf("agent: reserved_cpus=%d: the host has %d CPUs and ranks need at least one", reserved, len(host))
	}
	b := &cpuBinder{host: slices.Clone(host[:len(host)-reserved]), used: make([]int, cores), near: map[uint32][]int{}}
	for _, g := range gpus {
		if g.CPUAffinity == "" {
			continue
		}
		list, err := cgroup.ParseCPUList(g.CPUAffinity)
		if err != nil {
			return nil, fmt.Errorf("agent: GPU %d: CPU affinity %q: %w", g.Index, g.CPUAffinity, err)
		}
		var near []int
		for _, c := range list {
			if !g.Simulated {
				c = slices.Index(b.host, c)
			}
			if c >= 0 && c < len(b.used) {
				near = append(near, c)
			}
		}
		b.near[uint32(g.Index)] = near
	}
	return b, nil
}

// take returns n free cores, preferring those near gpus, and how many of
// them are not near; nil when there are not n free (the scheduler never
// places more than the node has; a rank that finds none free runs unbound
// rather than not at all). Called with the agent's mu.
func (b *cpuBinder) take(n uint32, gpus []uint32) (cores []int, far int) {
	if n == 0 {
		return nil, 0
	}
	var pref []int
	for _, g := range gpus {
		pref = append(pref, b.near[g]...)
	}
	slices.Sort(pref)
	pref = slices.Compact(pref)
	var got []int
	pick := func(c int) {
		if uint32(len(got)) < n && b.used[c] == 0 && !slices.Contains(got, c) {
			got = append(got, c)
		}
	}
	for _, c := range pref {
		pick(c)
	}
	nearN := len(got)
	for c := range b.used {
		pick(c)
	}
	if uint32(len(got)) < n {
		return nil, 0
	}
	b.mark(got, true)
	slices.Sort(got)
	if len(pref) == 0 {
		return got, 0 // nothing is near: the GPUs' affinity is unknown
	}
	return got, len(got) - nearN
}

// mark records that a rank holds cores (used) or has let them go. Called
// with the agent's mu.
func (b *cpuBinder) mark(cores []int, used bool) {
	for _, c := range cores {
		switch {
		case c < 0 || c >= len(b.used):
		case used:
			b.used[c]++
		case b.used[c] > 0:
			b.used[c]--
		}
	}
}

// hostCPUs are the host CPUs cores run on.
func (b *cpuBinder) hostCPUs(cores []int) []int {
	var out []int
	for _, c := range cores {
		out = append(out, b.host[c%len(b.host)])
	}
	slices.Sort(out)
	return slices.Compact(out)
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
// host is the cpuset it runs in, cores the node's cores it holds (in the
// profile's numbering on a simulated node). LOOM_CPU_BIND_VERBOSE, set
// for verbose, is the line the exec driver prints to the rank's stderr,
// with @PID@ standing for the rank's pid.
func cpuBindEnv(b api.CPUBind, host, cores []int, node string, rank, local uint32) []string {
	m := cpuMask(host)
	verbose := "quiet"
	if b.Verbose {
		verbose = "verbose"
	}
	env := []string{
		"SLURM_CPU_BIND_VERBOSE=" + verbose,
		"LOOM_CPU_BIND_LIST=" + cgroup.CPUList(host),
		"LOOM_CPU_BIND_CORES=" + cgroup.CPUList(cores),
	}
	kind := "MASK"
	if b.None {
		kind = "NONE"
		env = append(env, "SLURM_CPU_BIND="+verbose+",none", "SLURM_CPU_BIND_TYPE=none", "SLURM_CPU_BIND_LIST=")
	} else {
		env = append(env, "SLURM_CPU_BIND="+verbose+",mask_cpu:"+m, "SLURM_CPU_BIND_TYPE=mask_cpu:", "SLURM_CPU_BIND_LIST="+m)
	}
	if b.Verbose {
		env = append(env, fmt.Sprintf("LOOM_CPU_BIND_VERBOSE=cpu-bind=%s - %s, task %2d %2d [@PID@]: mask %s set", kind, node, rank, local, m))
	}
	return env
}

// cpuBindOf is the --cpu-bind of t's job.
func cpuBindOf(t *task) (api.CPUBind, string, error) {
	spec := t.job.Spec
	if t.full != nil {
		spec = t.full.Spec
	}
	b, err := api.ParseCPUBind(spec.GetCpuBind())
	return b, spec.GetCpuBind(), err
}

// bindCPUs gives the rank its cores and sets its cpuset and SLURM_CPU_BIND*
// reporting as its job's --cpu-bind asks. A node that does not bind CPUs
// runs every rank on all of them, which is --cpu-bind=none: any other
// explicit binding is refused there rather than ignored.
func (a *Agent) bindCPUs(t *task, s *driver.TaskSpec) error {
	bind, given, err := cpuBindOf(t)
	if err != nil {
		return fmt.Errorf("--cpu-bind: %w", err)
	}
	if a.cpus == nil {
		if given != "" && (!bind.None || bind.Verbose) {
			return fmt.Errorf("--cpu-bind=%s: node %s does not bind ranks to CPUs (only isolated exec nodes do); give --cpu-bind=none or run on an isolated node", given, a.cfg.Name)
		}
		return nil
	}
	r := t.rank
	n, gpus := r.Cpus, r.GpuIndexes
	a.mu.Lock()
	var far int
	if bind.None {
		for _, o := range a.tasks {
			if ob, _, _ := cpuBindOf(o); o != t && ob.None && o.cores != nil &&
				o.key.job == t.key.job && o.key.gen == t.key.gen && o.key.step == t.key.step {
				t.cores = o.cores
				a.cpus.mark(t.cores, true)
				break
			}
		}
		if t.cores == nil {
			n, gpus = 0, nil
			for _, o := range t.job.GetAllocation().GetRanks() {
				if o.Node == r.Node {
					n += o.Cpus
					gpus = append(gpus, o.GpuIndexes...)
				}
			}
		}
	}
	if t.cores == nil {
		t.cores, far = a.cpus.take(n, gpus)
	}
	if t.cores != nil {
		s.CPUSet = a.cpus.hostCPUs(t.cores)
	}
	a.mu.Unlock()
	if far > 0 {
		a.log.Warn("the NUMA node of the rank's GPUs has too few free cores; some come from another node",
			"job_id", t.key.job, "rank", t.key.rank, "gpus", gpus, "cores", cgroup.CPUList(t.cores), "far", far)
	}
	if s.CPUSet == nil {
		return nil
	}
	s.Env = slices.DeleteFunc(s.Env, func(kv string) bool {
		return strings.HasPrefix(kv, "SLURM_CPU_BIND") || strings.HasPrefix(kv, "LOOM_CPU_BIND")
	})
	s.Env = append(s.Env, cpuBindEnv(bind, s.CPUSet, t.cores, a.cfg.Name, r.Rank, r.LocalRank)...)
	return nil
}
