package api

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// TestLayoutPerCPUAndGPU: --mem-per-cpu, --mem-per-gpu and --cpus-per-gpu
// become each node's figures, as the scheduler places by them.
func TestLayoutPerCPUAndGPU(t *testing.T) {
	tests := []struct {
		name  string
		spec  *JobSpec
		nodes uint32
		want  []NodeShape
	}{
		{"mem per CPU", &JobSpec{Ntasks: 3, CpusPerTask: 4, MemPerCpuMb: 1000}, 2,
			[]NodeShape{{Tasks: 2, CPUs: 8, MemMB: 8000}, {Tasks: 1, CPUs: 4, MemMB: 4000}}},
		{"mem per GPU", &JobSpec{NtasksPerNode: 1, GpusPerNode: 4, MemPerGpuMb: 80 * 1024}, 2,
			[]NodeShape{{Tasks: 1, GPUs: 4, CPUs: 1, MemMB: 4 * 80 * 1024}, {Tasks: 1, GPUs: 4, CPUs: 1, MemMB: 4 * 80 * 1024}}},
		{"CPUs per GPU", &JobSpec{Gpus: 3, CpusPerGpu: 8}, 2,
			[]NodeShape{{Tasks: 1, GPUs: 2, CPUs: 16}, {Tasks: 1, GPUs: 1, CPUs: 8}}},
		{"CPUs per GPU below the tasks", &JobSpec{NtasksPerNode: 8, GpusPerNode: 1, CpusPerGpu: 2}, 1,
			[]NodeShape{{Tasks: 8, GPUs: 1, CPUs: 8}}},
		{"CPUs per GPU and mem per CPU", &JobSpec{GpusPerNode: 2, CpusPerGpu: 4, MemPerCpuMb: 100}, 1,
			[]NodeShape{{Tasks: 1, GPUs: 2, CPUs: 8, MemMB: 800}}},
		{"figures too large saturate", &JobSpec{GpusPerNode: 1 << 30, CpusPerGpu: 1 << 16, MemPerCpuMb: 1 << 40}, 1,
			[]NodeShape{{Tasks: 1, GPUs: 1 << 30, CPUs: math.MaxUint32, MemMB: math.MaxUint64}}},
	}
	for _, tt := range tests {
		got, ok := tt.spec.Layout(tt.nodes)
		if !ok || !slices.Equal(got, tt.want) {
			t.Errorf("%s: Layout(%d) = %+v, %v; want %+v", tt.name, tt.nodes, got, ok, tt.want)
		}
	}
}

func TestCheckOptions(t *testing.T) {
	tests := []struct {
		spec *JobSpec
		want string // "" valid, else a substring of the error
	}{
		{&JobSpec{MemPerCpuMb: 1}, ""},
		{&JobSpec{CpuBind: "verbose,none"}, ""},
		{&JobSpec{CpuBind: "mask_cpu:0x3"}, ""},
		{&JobSpec{CpuBind: "mask_ldom:0x3"}, `--cpu-bind: "mask_ldom" is not implemented`},
		{&JobSpec{MemPerNodeMb: 1, MemPerGpuMb: 1, GpusPerNode: 1}, "give only one of --mem, --mem-per-cpu and --mem-per-gpu"},
		{&JobSpec{CpusPerGpu: 2}, "--cpus-per-gpu: the job asks for no GPUs"},
		{&JobSpec{CpusPerGpu: 2, Gpus: 1, CpusPerTask: 2}, "not both"},
		{&JobSpec{CpusPerGpu: 1 << 20, Gpus: 1}, "--cpus-per-gpu: 1048576 is more than 65536"},
		{&JobSpec{MemPerCpuMb: 1 << 50}, "--mem-per-cpu: more than"},
		{&JobSpec{TimeLimitS: 60, TimeMinS: 61}, "--time-min"},
		{&JobSpec{TimeLimitS: -1, TimeMinS: 61}, ""},
		{&JobSpec{MailType: "BEGIN,END"}, ""},
		{&JobSpec{MailType: "end"}, `"end" is not one of`},
		{&JobSpec{Constraint: "a|[b|c]"}, ""},
		{&JobSpec{Constraint: "a|"}, "--constraint=a|: position 2: a feature must follow '|'"},
		{&JobSpec{Constraint: "[a*1&b*2]"}, "the counts add up to 3 nodes, more than --nodes=1"},
		{&JobSpec{Constraint: "[a*1&b*2]", NodesMin: 3}, ""},
		{&JobSpec{Constraint: "gpu&a*2", NodesMin: 4}, ""},
		{&JobSpec{Constraint: "a*2|b", NodesMin: 4}, "can only be joined by '&'"},
		{&JobSpec{Constraint: "[a*2|b*2]", NodesMin: 4}, "can only be joined by '&'"},
		{&JobSpec{Constraint: "(a|b)*2", NodesMin: 4}, "must follow a single feature name"},
		{&JobSpec{Constraint: "[a*2&b]", NodesMin: 4}, "every feature of a [...] set"},
		{&JobSpec{Constraint: "[a&b]"}, "'&' inside [...]"},
	}
	for _, tt := range tests {
		tt.spec.Script = "#!/bin/sh\n"
		err := ValidateSpec(tt.spec)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("ValidateSpec(%+v) = %v, want nil", tt.spec, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("ValidateSpec(%+v) = %v, want an error containing %q", tt.spec, err, tt.want)
		}
	}
}
