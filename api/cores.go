package api

import (
	"slices"

	"github.com/loomhpc/loom/cpulist"
)

// ChooseCores picks n of the free cores (ascending), those in near first
// and then the lowest of the rest, and returns them ascending; nil when
// fewer than n are free. The scheduler gives a rank the cores near its
// GPUs this way, and a job step its cores out of the job's.
func ChooseCores(free, near []uint32, n int) []uint32 {
	if n <= 0 || len(free) < n {
		return nil
	}
	got := make([]uint32, 0, n)
	for _, c := range free {
		if len(got) < n && slices.Contains(near, c) {
			got = append(got, c)
		}
	}
	for _, c := range free {
		if len(got) < n && !slices.Contains(near, c) {
			got = append(got, c)
		}
	}
	slices.Sort(got)
	return got
}

// FormatCores writes cores as Slurm writes CPU_IDs and the kernel a
// cpulist: ascending, runs as ranges ("0-3,8,10-11"); "" for none.
func FormatCores(cores []uint32) string { return cpulist.Format(cores) }

// NodeCores are the cores the ranks of a on node hold, ascending.
func (a *Allocation) NodeCores(node string) []uint32 {
	var out []uint32
	for _, r := range a.GetRanks() {
		if r.Node == node {
			out = append(out, r.Cores...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
