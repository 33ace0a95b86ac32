package api

import (
	"slices"
	"strings"
)

// Bounds on the per-CPU and per-GPU figures, so that a node's totals
// (JobSpec.Layout) cannot overflow: more than any node has is a typo.
const (
	maxCpusPerGPU = 1 << 16
	maxMemPerMB   = 1 << 40 // a terabyte of terabytes
)

// MailTypes are the --mail-type values Slurm 22.05 accepts.
var MailTypes = []string{"NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "INVALID_DEPEND",
	"STAGE_OUT", "TIME_LIMIT", "TIME_LIMIT_90", "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS"}

// checkOptions checks the options that shape a node's share beyond
// tasks, GPUs and --mem (memory and CPUs per CPU or GPU), --time-min,
// --mail-type, --cpu-bind and --constraint.
func checkOptions(s *JobSpec) error {
	memForms := 0
	for _, v := range []uint64{s.MemPerNodeMb, s.MemPerCpuMb, s.MemPerGpuMb} {
		if v != 0 {
			memForms++
		}
	}
	if memForms > 1 {
		return fieldErr("--mem", "give only one of --mem, --mem-per-cpu and --mem-per-gpu")
	}
	if s.MemPerCpuMb > maxMemPerMB || s.MemPerGpuMb > maxMemPerMB {
		return fieldErr("--mem-per-cpu", "more than %d MB", uint64(maxMemPerMB))
	}
	hasGPUs := s.Gpus != 0 || s.GpusPerNode != 0 || s.GpusPerTask != 0
	if s.MemPerGpuMb != 0 && !hasGPUs {
		return fieldErr("--mem-per-gpu", "the job asks for no GPUs (give --gpus, --gpus-per-node, --gpus-per-task or --gres=gpu)")
	}
	if s.CpusPerGpu != 0 {
		if !hasGPUs {
			return fieldErr("--cpus-per-gpu", "the job asks for no GPUs (give --gpus, --gpus-per-node, --gpus-per-task or --gres=gpu)")
		}
		if s.CpusPerTask != 0 {
			return fieldErr("--cpus-per-gpu", "give either --cpus-per-gpu or --cpus-per-task, not both")
		}
		if s.CpusPerGpu > maxCpusPerGPU {
			return fieldErr("--cpus-per-gpu", "%d is more than %d", s.CpusPerGpu, maxCpusPerGPU)
		}
	}
	if s.TimeMinS < 0 {
		return fieldErr("--time-min", "negative time %d", s.TimeMinS)
	}
	if s.TimeMinS > 0 && s.TimeLimitS > 0 && s.TimeMinS > s.TimeLimitS {
		return fieldErr("--time-min", "%d s is over the --time limit of %d s", s.TimeMinS, s.TimeLimitS)
	}
	if s.MailType != "" {
		for _, t := range strings.Split(s.MailType, ",") {
			if !slices.Contains(MailTypes, t) {
				return fieldErr("--mail-type", "%q is not one of %s", t, strings.Join(MailTypes, ", "))
			}
		}
	}
	if _, err := ParseCPUBind(s.CpuBind); err != nil {
		return fieldErr("--cpu-bind", "%v", err)
	}
	return checkConstraint(s)
}
