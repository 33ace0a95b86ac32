package agent

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/loomhpc/loom/agent/cgroup"
	"github.com/loomhpc/loom/agent/driver"
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
	env := cpuBindEnv(api.CPUBind{}, []int{0, 1, 4}, []int{56, 57, 60}, "n1", 3, 1)
	for _, want := range []string{"SLURM_CPU_BIND=quiet,mask_cpu:0x13", "SLURM_CPU_BIND_LIST=0x13", "LOOM_CPU_BIND_LIST=0-1,4", "LOOM_CPU_BIND_CORES=56-57,60"} {
		if !slices.Contains(env, want) {
			t.Errorf("cpuBindEnv = %v, lacks %q", env, want)
		}
	}
	if i := slices.IndexFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "LOOM_CPU_BIND_VERBOSE=") }); i >= 0 {
		t.Errorf("quiet binding sets %s", env[i])
	}
	env = cpuBindEnv(api.CPUBind{None: true, Verbose: true}, []int{0, 1}, []int{0, 1}, "n1", 3, 1)
	for _, want := range []string{"SLURM_CPU_BIND=verbose,none", "SLURM_CPU_BIND_TYPE=none",
		"LOOM_CPU_BIND_VERBOSE=cpu-bind=NONE - n1, task  3  1 [@PID@]: mask 0x3 set"} {
		if !slices.Contains(env, want) {
			t.Errorf("cpuBindEnv(verbose,none) = %v, lacks %q", env, want)
		}
	}
}

// bindTask is a rank of job 1 on node n1 as bindCPUs sees it.
func bindTask(j *api.Job, rank uint32) *task {
	return &task{key: taskKey{job: 1, gen: 1, rank: rank}, job: j, rank: j.Allocation.Ranks[rank]}
}

func TestBindCPUsNoneSharesTheJobsCores(t *testing.T) {
	b, numa := dgxBinder(t)
	var logs strings.Builder
	a := &Agent{cpus: b, tasks: map[taskKey]*task{}, cfg: Config{Name: "n1"}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	j := &api.Job{Id: 1, Spec: &api.JobSpec{CpuBind: "verbose,none"}, Allocation: &api.Allocation{Generation: 1, Ranks: []*api.Rank{
		{Rank: 0, Node: "n1", Cpus: 2, GpuIndexes: []uint32{4}},
		{Rank: 1, Node: "n1", LocalRank: 1, Cpus: 3, GpuIndexes: []uint32{5}},
		{Rank: 2, Node: "n2", Cpus: 8},
	}}}
	t0, t1 := bindTask(j, 0), bindTask(j, 1)
	var s0, s1 driver.TaskSpec
	if err := a.bindCPUs(t0, &s0); err != nil {
		t.Fatal(err)
	}
	a.tasks[t0.key] = t0
	if len(t0.cores) != 5 {
		t.Fatalf("rank 0 of a none job holds %v, want its node's 5 cores", t0.cores)
	}
	for _, c := range t0.cores {
		if !slices.Contains(numa[1], c) {
			t.Errorf("rank 0 (GPUs 4 and 5) holds core %d, not on NUMA node 1", c)
		}
	}
	if err := a.bindCPUs(t1, &s1); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(t1.cores, t0.cores) || !slices.Equal(s1.CPUSet, s0.CPUSet) {
		t.Errorf("rank 1 holds %v on %v, want rank 0's %v on %v", t1.cores, s1.CPUSet, t0.cores, s0.CPUSet)
	}
	want := "LOOM_CPU_BIND_VERBOSE=cpu-bind=NONE - n1, task  1  1 [@PID@]: mask 0x3 set"
	if !slices.Contains(s1.Env, want) || !slices.Contains(s1.Env, "SLURM_CPU_BIND=verbose,none") {
		t.Errorf("rank 1's environment %v lacks %q or SLURM_CPU_BIND=verbose,none", s1.Env, want)
	}
	// The cores stay held until the last rank lets them go.
	b.mark(t0.cores, false)
	got, far := b.take(112, []uint32{4})
	if far != 5 {
		t.Errorf("with rank 1 still running, 112 cores near GPU 4 were %d far, want 5 (the job's)", far)
	}
	b.mark(got, false)
	b.mark(t1.cores, false)
	if got, far := b.take(112, []uint32{4}); len(got) != 112 || far != 0 {
		t.Errorf("with both ranks gone, 112 cores near GPU 4 were %d far, want all 112 near", far)
	}
	if logs.Len() != 0 {
		t.Errorf("the agent logged a fallback with free NUMA-local cores: %s", logs.String())
	}
}

func TestBindCPUsRefusedWhereNotBound(t *testing.T) {
	a := &Agent{tasks: map[taskKey]*task{}, cfg: Config{Name: "n1"}}
	for bind, ok := range map[string]bool{"": true, "none": true, "cores": false, "verbose,none": false} {
		j := &api.Job{Id: 1, Spec: &api.JobSpec{CpuBind: bind}, Allocation: &api.Allocation{Generation: 1, Ranks: []*api.Rank{{Node: "n1", Cpus: 1}}}}
		var s driver.TaskSpec
		err := a.bindCPUs(bindTask(j, 0), &s)
		if ok && err != nil || !ok && (err == nil || !strings.Contains(err.Error(), "--cpu-bind="+bind)) {
			t.Errorf("--cpu-bind=%q on a node that does not bind: %v", bind, err)
		}
	}
}

func TestBindCPUsLogsAFallback(t *testing.T) {
	b, _ := dgxBinder(t)
	var logs strings.Builder
	a := &Agent{cpus: b, tasks: map[taskKey]*task{}, cfg: Config{Name: "n1"}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	b.take(112, []uint32{4}) // NUMA node 1 is full
	j := &api.Job{Id: 1, Spec: &api.JobSpec{}, Allocation: &api.Allocation{Generation: 1, Ranks: []*api.Rank{{Node: "n1", Cpus: 2, GpuIndexes: []uint32{6}}}}}
	var s driver.TaskSpec
	if err := a.bindCPUs(bindTask(j, 0), &s); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "too few free cores") || !strings.Contains(logs.String(), "far=2") {
		t.Errorf("agent log %q, want a warning that 2 cores are far from the GPUs", logs.String())
	}
}
