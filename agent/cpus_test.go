package agent

import (
	"slices"
	"strings"
	"testing"

	"github.com/loomhpc/loom/agent/cgroup"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/gpu"
)

func TestCPUBinder(t *testing.T) {
	b, err := newCPUBinder([]int{0, 1, 2, 3}, 8, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := b.take(2, nil)
	c, _ := b.take(3, nil)
	if !slices.Equal(a, []int{0, 1}) || !slices.Equal(c, []int{2, 3, 4}) {
		t.Fatalf("take(2), take(3) = %v, %v; want [0 1], [2 3 4]", a, c)
	}
	// Host CPU 3 is reserved: cores fold onto 0, 1, 2.
	if got := b.hostCPUs(c); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("hostCPUs(%v) = %v, want [0 1 2]", c, got)
	}
	if got, _ := b.take(4, nil); got != nil {
		t.Errorf("take(4) with 3 free = %v, want nil", got)
	}
	b.mark(a, false)
	if got, _ := b.take(2, nil); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("take(2) after freeing [0 1] = %v", got)
	}
	if _, err := newCPUBinder([]int{0, 1}, 4, 2, nil); err == nil {
		t.Error("reserving every host CPU succeeded, want an error")
	}
}

// dgxBinder is a binder for the dgx-h100 profile (8 GPUs, 224 cores on 2
// NUMA nodes: 0-55,112-167 and 56-111,168-223) on a 2-CPU host.
func dgxBinder(t *testing.T) (*cpuBinder, map[int][]int) {
	t.Helper()
	m, err := gpu.SimulatedMachine("dgx-h100", "n1", 2)
	if err != nil {
		t.Fatal(err)
	}
	numa := map[int][]int{}
	for _, g := range m.Topology.GPUs {
		l, err := cgroup.ParseCPUList(g.CPUAffinity)
		if err != nil {
			t.Fatal(err)
		}
		numa[g.NUMANode] = l
	}
	if len(numa) != 2 || len(numa[1]) != 112 {
		t.Fatalf("dgx-h100 NUMA affinity = %v, want 2 nodes of 112 CPUs", numa)
	}
	b, err := newCPUBinder([]int{0, 1}, m.CPUs, 0, m.Topology.GPUs)
	if err != nil {
		t.Fatal(err)
	}
	return b, numa
}

func TestCPUBinderNUMA(t *testing.T) {
	b, numa := dgxBinder(t)
	// A rank without GPUs takes the lowest free cores, NUMA node 0's.
	cpuOnly, far := b.take(4, nil)
	if !slices.Equal(cpuOnly, []int{0, 1, 2, 3}) || far != 0 {
		t.Errorf("take(4, no GPUs) = %v, %d far; want [0 1 2 3], 0", cpuOnly, far)
	}
	// GPUs 4-7 hang off NUMA node 1: all 16 cores come from its list.
	got, far := b.take(16, []uint32{4, 5, 6, 7})
	if len(got) != 16 || far != 0 {
		t.Fatalf("take(16, GPUs 4-7) = %v, %d far; want 16 near", got, far)
	}
	for _, c := range got {
		if !slices.Contains(numa[1], c) {
			t.Errorf("take(16, GPUs 4-7) gave core %d, not on NUMA node 1 (%s)", c, cgroup.CPUList(numa[1]))
		}
	}
	// GPU 0 is on node 0: its rank skips the cores the CPU-only rank holds.
	got, far = b.take(2, []uint32{0})
	if !slices.Equal(got, []int{4, 5}) || far != 0 {
		t.Errorf("take(2, GPU 0) = %v, %d far; want [4 5], 0", got, far)
	}
}

func TestCPUBinderNUMAFull(t *testing.T) {
	b, numa := dgxBinder(t)
	// Fill NUMA node 1 but for 2 cores, then ask for 8 near GPU 7.
	if got, far := b.take(110, []uint32{4}); len(got) != 110 || far != 0 {
		t.Fatalf("take(110, GPU 4) = %d cores, %d far; want 110, 0", len(got), far)
	}
	got, far := b.take(8, []uint32{7})
	if len(got) != 8 || far != 6 {
		t.Fatalf("take(8, GPU 7) on a nearly full node = %v, %d far; want 8 cores, 6 far", got, far)
	}
	var near int
	for _, c := range got {
		if slices.Contains(numa[1], c) {
			near++
		} else if !slices.Contains(numa[0], c) {
			t.Errorf("core %d is on neither NUMA node", c)
		}
	}
	if near != 2 {
		t.Errorf("take(8, GPU 7) = %v: %d on NUMA node 1, want the 2 left there", got, near)
	}
	// Everything is taken once the other node is full too.
	if got, _ := b.take(224-118+1, nil); got != nil {
		t.Errorf("take more than is free = %v, want nil", got)
	}
}

func TestCPUBinderRealAffinity(t *testing.T) {
	// A real GPU's affinity numbers host CPUs: host CPU 9 is core 1 here,
	// and CPU 11 is reserved.
	g := []gpu.GPU{{Index: 0, CPUAffinity: "9-11"}}
	b, err := newCPUBinder([]int{8, 9, 10, 11}, 3, 1, g)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.near[0]; !slices.Equal(got, []int{1, 2}) {
		t.Errorf("near GPU 0 = %v, want cores [1 2]", got)
	}
	if _, err := newCPUBinder([]int{0, 1}, 2, 0, []gpu.GPU{{Index: 0, CPUAffinity: "x"}}); err == nil || !strings.Contains(err.Error(), "GPU 0") {
		t.Errorf("a bad affinity list gave %v, want an error naming GPU 0", err)
	}
}

func TestCPUBindEnv(t *testing.T) {
	env := cpuBindEnv(api.CPUBind{}, []int{0, 1, 4}, []int{56, 57, 60}, "n1", "3", "1")
	for _, want := range []string{"SLURM_CPU_BIND=quiet,mask_cpu:0x13", "SLURM_CPU_BIND_LIST=0x13", "LOOM_CPU_BIND_LIST=0-1,4", "LOOM_CPU_BIND_CORES=56-57,60"} {
		if !slices.Contains(env, want) {
			t.Errorf("cpuBindEnv = %v, lacks %q", env, want)
		}
	}
	if v := envValue(env, "LOOM_CPU_BIND_VERBOSE"); v != "" {
		t.Errorf("quiet binding sets LOOM_CPU_BIND_VERBOSE=%q", v)
	}
	env = cpuBindEnv(api.CPUBind{None: true, Verbose: true}, []int{0, 1}, []int{0, 1}, "n1", "3", "1")
	for _, want := range []string{"SLURM_CPU_BIND=verbose,none", "SLURM_CPU_BIND_TYPE=none",
		"LOOM_CPU_BIND_VERBOSE=cpu-bind=NONE - n1, task  3  1 [@PID@]: mask 0x3 set"} {
		if !slices.Contains(env, want) {
			t.Errorf("cpuBindEnv(verbose,none) = %v, lacks %q", env, want)
		}
	}
}
