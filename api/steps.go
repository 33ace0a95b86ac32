package api

import (
	"fmt"
	"strconv"
	"strings"
)

// StepBatch is the id of the batch step, the one that runs the batch
// script: Slurm's SLURM_BATCH_SCRIPT (0xfffffffb), printed "batch".
const StepBatch uint32 = 0xfffffffb

// Default ports a node hands to ranks and steps when its agent names no
// range (the scheduler and the FSM's step placement share them).
const (
	DefaultPortMin = 29500
	DefaultPortMax = 29999
)

// StepName is how Slurm prints a step id: "batch" or the number.
func StepName(id uint32) string {
	if id == StepBatch {
		return "batch"
	}
	return strconv.FormatUint(uint64(id), 10)
}

// ParseStepID reads a step id as StepName prints it.
func ParseStepID(s string) (uint32, error) {
	if s == "batch" {
		return StepBatch, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || uint32(n) >= StepBatch {
		return 0, fmt.Errorf("step %q is neither \"batch\" nor a step number", s)
	}
	return uint32(n), nil
}

// ParseJobStep reads JOB or JOB.STEP (scancel 12.3, loom logs 12.batch).
// hasStep says whether a step was given.
func ParseJobStep(s string) (job uint64, step uint32, hasStep bool, err error) {
	js, ss, hasStep := strings.Cut(s, ".")
	job, err = strconv.ParseUint(js, 10, 64)
	if err != nil || job == 0 {
		return 0, 0, false, fmt.Errorf("job id %q is not a positive number", js)
	}
	if !hasStep {
		return job, 0, false, nil
	}
	step, err = ParseStepID(ss)
	return job, step, true, err
}

// RunsSteps reports whether a job with spec s is an allocation whose work
// runs as job steps: a batch script (run once, as the batch step) or a
// salloc allocation. The other jobs are gangs in which every task runs
// the command (srun outside an allocation, sbatch --every-rank).
func (s *JobSpec) RunsSteps() bool {
	return !s.GetEveryRank() && len(s.GetArgv()) == 0
}

// Step returns the job's step with id, or nil.
func (j *Job) Step(id uint32) *Step {
	for _, st := range j.GetSteps() {
		if st.Id == id {
			return st
		}
	}
	return nil
}

// HoldsResources reports whether the step's tasks still count against
// the allocation: some task has not reported its end.
func (st *Step) HoldsResources() bool { return st.GetAllocation().Live() }

// SignalBatchOnly reports whether --signal names the batch step only
// ("B:USR1@60"); otherwise the signal goes to the job's other steps
// (or, in a gang, to every rank).
func SignalBatchOnly(s string) bool { return strings.HasPrefix(s, "B:") }

// SlurmCounts writes per-node counts as Slurm's SLURM_TASKS_PER_NODE and
// SLURM_JOB_CPUS_PER_NODE do: runs of equal counts as "N(xK)", "2(x3),1".
func SlurmCounts(counts []int) string {
	var parts []string
	for i := 0; i < len(counts); {
		n := 1
		for i+n < len(counts) && counts[i+n] == counts[i] {
			n++
		}
		if n > 1 {
			parts = append(parts, fmt.Sprintf("%d(x%d)", counts[i], n))
		} else {
			parts = append(parts, strconv.Itoa(counts[i]))
		}
		i += n
	}
	return strings.Join(parts, ",")
}
