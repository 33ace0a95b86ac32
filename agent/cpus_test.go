package agent

import (
	"slices"
	"strings"
	"testing"

	"github.com/loomhpc/loom/agent/driver"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/gpu"
)

func TestCPUMapFoldsCoresOntoHost(t *testing.T) {
	m, err := newCPUMap([]int{0, 1, 2, 3}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Host CPU 3 is reserved: cores fold onto 0, 1, 2.
	if got := m.hostCPUs([]uint32{2, 3, 4}); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("hostCPUs([2 3 4]) = %v, want [0 1 2]", got)
	}
	if got := m.hostCPUs([]uint32{1}); !slices.Equal(got, []int{1}) {
		t.Errorf("hostCPUs([1]) = %v, want [1]", got)
	}
	if _, err := newCPUMap([]int{0, 1}, 2, nil); err == nil {
		t.Error("reserving every host CPU succeeded, want an error")
	}
}

// dgxNear is the near cores of the dgx-h100 profile (8 GPUs, 224 cores
// on 2 NUMA nodes: 0-55,112-167 and 56-111,168-223).
func dgxNear(t *testing.T) map[uint32][]uint32 {
	t.Helper()
	m, err := gpu.SimulatedMachine("dgx-h100", "n1", 2)
	if err != nil {
		t.Fatal(err)
	}
	near, err := nearCores([]int{0, 1}, m.CPUs, 0, m.Topology.GPUs)
	if err != nil {
		t.Fatal(err)
	}
	return near
}

func TestNearCoresSimulated(t *testing.T) {
	near := dgxNear(t)
	if len(near) != 8 || len(near[0]) != 112 || len(near[7]) != 112 {
		t.Fatalf("dgx-h100 near cores: %d GPUs, GPU 0 %d cores, GPU 7 %d; want 8 GPUs of 112", len(near), len(near[0]), len(near[7]))
	}
	if got := api.FormatCores(near[0]); got != "0-55,112-167" {
		t.Errorf("near GPU 0 = %s, want 0-55,112-167 (the profile's CPUs are the cores)", got)
	}
	if got := api.FormatCores(near[4]); got != "56-111,168-223" {
		t.Errorf("near GPU 4 = %s, want 56-111,168-223", got)
	}
}

func TestNearCoresRealAffinity(t *testing.T) {
	// A real GPU's affinity numbers host CPUs: host CPU 9 is core 1 here,
	// and CPU 11 is reserved.
	g := []gpu.GPU{{Index: 0, CPUAffinity: "9-11"}, {Index: 1}}
	near, err := nearCores([]int{8, 9, 10, 11}, 3, 1, g)
	if err != nil {
		t.Fatal(err)
	}
	if got := near[0]; !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("near GPU 0 = %v, want cores [1 2]", got)
	}
	if got, ok := near[1]; ok {
		t.Errorf("near GPU 1 (affinity unknown) = %v, want none", got)
	}
	top := &api.Topology{Gpus: []*api.GPU{{Index: 0}, {Index: 1}}}
	setNearCores(top, near)
	if !slices.Equal(top.Gpus[0].NearCores, []uint32{1, 2}) || top.Gpus[1].NearCores != nil {
		t.Errorf("registered near cores %v, %v; want [1 2], none", top.Gpus[0].NearCores, top.Gpus[1].NearCores)
	}
	if _, err := nearCores([]int{0, 1}, 2, 0, []gpu.GPU{{Index: 0, CPUAffinity: "x"}}); err == nil || !strings.Contains(err.Error(), "GPU 0") {
		t.Errorf("a bad affinity list gave %v, want an error naming GPU 0", err)
	}
}

func TestCoresFor(t *testing.T) {
	m, err := newCPUMap([]int{0, 1}, 0, dgxNear(t))
	if err != nil {
		t.Fatal(err)
	}
	// The job holds 0-1 and 56-57 (NUMA node 0, then 1); the rank 56-57.
	own, job := []uint32{56, 57}, []uint32{0, 1, 56, 57}
	tests := []struct {
		bind  string
		local uint32
		want  string
		err   string
	}{
		{bind: "", want: "56-57"},
		{bind: "cores", want: "56-57"},
		{bind: "threads", want: "56-57"},
		{bind: "none", want: "0-1,56-57"},
		{bind: "ldoms", want: "56-57"},
		{bind: "sockets", want: "56-57"},
		{bind: "rank", local: 1, want: "1"},
		{bind: "rank", local: 5, want: "1"},
		{bind: "map_cpu:57,0", local: 0, want: "57"},
		{bind: "map_cpu:57,0", local: 1, want: "0"},
		{bind: "mask_cpu:0x3", local: 4, want: "0-1"},
		{bind: "map_cpu:2", err: "CPU 2 is not one of the job's on n1 (0-1,56-57)"},
	}
	for _, tt := range tests {
		b, err := api.ParseCPUBind(tt.bind)
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.coresFor(b, own, job, tt.local, "n1")
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("coresFor(%q, local %d) error = %v, want %q", tt.bind, tt.local, err, tt.err)
			}
		case err != nil:
			t.Errorf("coresFor(%q, local %d): %v", tt.bind, tt.local, err)
		case api.FormatCores(got) != tt.want:
			t.Errorf("coresFor(%q, local %d) = %s, want %s", tt.bind, tt.local, api.FormatCores(got), tt.want)
		}
	}
	// A rank on cores of both NUMA nodes binds, under ldoms, to all of
	// the job's on either; a core no GPU is near counts as its own node.
	if got := api.FormatCores(m.ldoms([]uint32{1, 56}, job)); got != "0-1,56-57" {
		t.Errorf("ldoms([1 56]) = %s, want 0-1,56-57", got)
	}
	flat, _ := newCPUMap([]int{0, 1}, 0, map[uint32][]uint32{0: {0, 1}})
	if got := api.FormatCores(flat.ldoms([]uint32{3}, []uint32{0, 3, 4})); got != "3-4" {
		t.Errorf("ldoms([3]) beside a GPU near 0-1 = %s, want 3-4", got)
	}
}

func TestCPUBindEnv(t *testing.T) {
	tests := []struct {
		bind string
		want []string
	}{
		{"", []string{"SLURM_CPU_BIND=quiet,mask_cpu:0x13", "SLURM_CPU_BIND_TYPE=mask_cpu:", "SLURM_CPU_BIND_LIST=0x13",
			"SLURM_CPU_BIND_VERBOSE=quiet", "LOOM_CPU_BIND_LIST=0-1,4", "LOOM_CPU_BIND_CORES=56-57,60"}},
		{"ldoms", []string{"SLURM_CPU_BIND=quiet,ldoms,mask_cpu:0x13", "SLURM_CPU_BIND_TYPE=ldoms,mask_cpu:", "SLURM_CPU_BIND_LIST=0x13"}},
		{"verbose,none", []string{"SLURM_CPU_BIND=verbose,none", "SLURM_CPU_BIND_TYPE=none", "SLURM_CPU_BIND_LIST=",
			"SLURM_CPU_BIND_VERBOSE=verbose", "LOOM_CPU_BIND_VERBOSE=cpu-bind=NONE - n1, task  3  1 [@PID@]: mask 0x13 set"}},
		{"rank", []string{"SLURM_CPU_BIND=quiet,rank", "SLURM_CPU_BIND_TYPE=rank", "SLURM_CPU_BIND_LIST="}},
		{"map_cpu:56,57", []string{"SLURM_CPU_BIND=quiet,map_cpu:56,57", "SLURM_CPU_BIND_TYPE=map_cpu:", "SLURM_CPU_BIND_LIST=56,57"}},
		{"v,mask_cpu:0x3", []string{"SLURM_CPU_BIND=verbose,mask_cpu:0x3", "SLURM_CPU_BIND_TYPE=mask_cpu:", "SLURM_CPU_BIND_LIST=0x3",
			"LOOM_CPU_BIND_VERBOSE=cpu-bind=MASK - n1, task  3  1 [@PID@]: mask 0x13 set"}},
	}
	for _, tt := range tests {
		b, err := api.ParseCPUBind(tt.bind)
		if err != nil {
			t.Fatal(err)
		}
		env := cpuBindEnv(b, []int{0, 1, 4}, []uint32{56, 57, 60}, "n1", 3, 1)
		for _, want := range tt.want {
			if !slices.Contains(env, want) {
				t.Errorf("cpuBindEnv(%q) = %v, lacks %q", tt.bind, env, want)
			}
		}
		if i := slices.IndexFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "LOOM_CPU_BIND_VERBOSE=") }); i >= 0 && !b.Verbose {
			t.Errorf("cpuBindEnv(%q), quiet, sets %s", tt.bind, env[i])
		}
	}
}

// bindTask is a rank of job 1 on node n1 as bindCPUs sees it.
func bindTask(j *api.Job, rank uint32) *task {
	return &task{key: taskKey{job: 1, gen: 1, rank: rank}, job: j, rank: j.Allocation.Ranks[rank]}
}

func TestBindCPUsAppliesTheAllocation(t *testing.T) {
	m, err := newCPUMap([]int{0, 1}, 0, dgxNear(t))
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cpus: m, tasks: map[taskKey]*task{}, cfg: Config{Name: "n1"}}
	ranks := func() []*api.Rank {
		return []*api.Rank{
			{Rank: 0, Node: "n1", Cpus: 2, GpuIndexes: []uint32{4}, Cores: []uint32{56, 57}},
			{Rank: 1, Node: "n1", LocalRank: 1, Cpus: 3, GpuIndexes: []uint32{5}, Cores: []uint32{58, 59, 61}},
			{Rank: 2, Node: "n2", Cpus: 8, Cores: []uint32{0, 1, 2, 3, 4, 5, 6, 7}},
		}
	}
	tests := []struct {
		bind      string
		rank      uint32
		cores     string
		cpuset    []int
		envSubstr string
	}{
		{bind: "", rank: 1, cores: "58-59,61", cpuset: []int{0, 1}, envSubstr: "SLURM_CPU_BIND=quiet,mask_cpu:0x3"},
		{bind: "verbose,none", rank: 1, cores: "56-59,61", cpuset: []int{0, 1}, envSubstr: "SLURM_CPU_BIND=verbose,none"},
		{bind: "map_cpu:57,61", rank: 0, cores: "57", cpuset: []int{1}, envSubstr: "SLURM_CPU_BIND=quiet,map_cpu:57,61"},
		{bind: "map_cpu:57,61", rank: 1, cores: "61", cpuset: []int{1}, envSubstr: "SLURM_CPU_BIND_LIST=57,61"},
		{bind: "map_cpu:56", rank: 0, cores: "56", cpuset: []int{0}, envSubstr: "LOOM_CPU_BIND_CORES=56"},
	}
	for _, tt := range tests {
		j := &api.Job{Id: 1, Spec: &api.JobSpec{CpuBind: tt.bind}, Allocation: &api.Allocation{Generation: 1, Ranks: ranks()}}
		tk := bindTask(j, tt.rank)
		var s driver.TaskSpec
		if err := a.bindCPUs(tk, &s); err != nil {
			t.Errorf("--cpu-bind=%q rank %d: %v", tt.bind, tt.rank, err)
			continue
		}
		var cores []uint32
		for _, c := range tk.cores {
			cores = append(cores, uint32(c))
		}
		if got := api.FormatCores(cores); got != tt.cores || !slices.Equal(s.CPUSet, tt.cpuset) {
			t.Errorf("--cpu-bind=%q rank %d: cores %s on host CPUs %v, want %s on %v", tt.bind, tt.rank, got, s.CPUSet, tt.cores, tt.cpuset)
		}
		if !slices.Contains(s.Env, tt.envSubstr) {
			t.Errorf("--cpu-bind=%q rank %d: environment %v lacks %q", tt.bind, tt.rank, s.Env, tt.envSubstr)
		}
	}
	// map_cpu naming a core the job does not hold on the node is refused.
	j := &api.Job{Id: 1, Spec: &api.JobSpec{CpuBind: "map_cpu:0"}, Allocation: &api.Allocation{Generation: 1, Ranks: ranks()}}
	var s driver.TaskSpec
	if err := a.bindCPUs(bindTask(j, 0), &s); err == nil || !strings.Contains(err.Error(), "--cpu-bind=map_cpu:0: CPU 0 is not one of the job's on n1") {
		t.Errorf("map_cpu:0 outside the job's cores: %v", err)
	}
	// A step's own --cpu-bind overrides its job's.
	step := &api.Step{Id: 0, Spec: &api.JobSpec{CpuBind: "none"}}
	full := &api.Job{Id: 1, Spec: &api.JobSpec{CpuBind: "map_cpu:0"}, Allocation: &api.Allocation{Generation: 1, Ranks: ranks()}}
	tk := &task{key: taskKey{job: 1, gen: 1}, job: full, full: full, step: step,
		rank: &api.Rank{Node: "n1", Cpus: 1, Cores: []uint32{57}}}
	if err := a.bindCPUs(tk, &s); err != nil || !slices.Contains(s.Env, "SLURM_CPU_BIND_TYPE=none") {
		t.Errorf("step with --cpu-bind=none in a map_cpu job: %v, environment %v", err, s.Env)
	}
	// A rank placed before the scheduler chose cores runs on its job's.
	old := &api.Job{Id: 1, Spec: &api.JobSpec{}, Allocation: &api.Allocation{Generation: 1, Ranks: []*api.Rank{{Node: "n1", Cpus: 2}}}}
	s = driver.TaskSpec{}
	if err := a.bindCPUs(bindTask(old, 0), &s); err != nil || s.CPUSet != nil {
		t.Errorf("rank without cores: %v, cpuset %v; want it unbound", err, s.CPUSet)
	}
}

func TestBindCPUsRefusedWhereNotBound(t *testing.T) {
	a := &Agent{tasks: map[taskKey]*task{}, cfg: Config{Name: "n1"}}
	for bind, ok := range map[string]bool{"": true, "none": true, "cores": false, "verbose,none": false, "map_cpu:0": false} {
		j := &api.Job{Id: 1, Spec: &api.JobSpec{CpuBind: bind}, Allocation: &api.Allocation{Generation: 1, Ranks: []*api.Rank{{Node: "n1", Cpus: 1}}}}
		var s driver.TaskSpec
		err := a.bindCPUs(bindTask(j, 0), &s)
		if ok && err != nil || !ok && (err == nil || !strings.Contains(err.Error(), "--cpu-bind="+bind)) {
			t.Errorf("--cpu-bind=%q on a node that does not bind: %v", bind, err)
		}
	}
}
