package agent

import (
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/loomhpc/loom/agent/cgroup"
)

// The node's cores as the scheduler counts them (the registered CPUs,
// 0..n-1, after the system's reservation) are handed to ranks first-fit,
// and each is bound to a host CPU: core c runs on the c-th usable host CPU,
// modulo their number. On a real node the two counts agree and the mapping
// is the identity; a simulated node (a DGX profile's 224 cores on a 2-CPU
// test machine) folds its cores onto the host's, so two ranks given
// disjoint cores may share a host CPU, exactly as the mapping says.

// cpuBinder hands out a node's cores and maps them to host CPUs.
type cpuBinder struct {
	host []int  // usable host CPUs, the reserved ones removed
	used []bool // by core, guarded by the agent's mu
}

// newCPUBinder binds cores 0..cores-1 to host, whose last reserved CPUs
// are kept for the system.
func newCPUBinder(host []int, cores uint32, reserved int) (*cpuBinder, error) {
	if reserved < 0 || reserved >= len(host) {
		return nil, fmt.Errorf("agent: reserved_cpus=%d: the host has %d CPUs and ranks need at least one", reserved, len(host))
	}
	return &cpuBinder{host: slices.Clone(host[:len(host)-reserved]), used: make([]bool, cores)}, nil
}

// take returns n free cores, or nil when there are not n free (the
// scheduler never places more than the node has; a rank that finds none
// free runs unbound rather than not at all). Called with the agent's mu.
func (b *cpuBinder) take(n uint32) []int {
	var got []int
	for c := range b.used {
		if uint32(len(got)) == n {
			break
		}
		if !b.used[c] {
			got = append(got, c)
		}
	}
	if uint32(len(got)) < n || n == 0 {
		return nil
	}
	b.mark(got, true)
	return got
}

// mark records cores as used or free. Called with the agent's mu.
func (b *cpuBinder) mark(cores []int, used bool) {
	for _, c := range cores {
		if c >= 0 && c < len(b.used) {
			b.used[c] = used
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

// cpuBindEnv reports a rank's binding as Slurm's task/affinity does.
func cpuBindEnv(host []int) []string {
	mask := new(big.Int)
	for _, c := range host {
		mask.SetBit(mask, c, 1)
	}
	m := "0x" + strings.ToUpper(mask.Text(16))
	return []string{
		"SLURM_CPU_BIND=quiet,mask_cpu:" + m,
		"SLURM_CPU_BIND_VERBOSE=quiet",
		"SLURM_CPU_BIND_TYPE=mask_cpu:",
		"SLURM_CPU_BIND_LIST=" + m,
		"LOOM_CPU_BIND_LIST=" + cgroup.CPUList(host),
	}
}
