package api

import "strings"

// stateCodes are the two-letter codes squeue prints (Slurm's).
var stateCodes = map[JobState]string{
	JobState_PENDING:       "PD",
	JobState_CONFIGURING:   "CF",
	JobState_RUNNING:       "R",
	JobState_COMPLETING:    "CG",
	JobState_COMPLETED:     "CD",
	JobState_FAILED:        "F",
	JobState_CANCELLED:     "CA",
	JobState_TIMEOUT:       "TO",
	JobState_NODE_FAIL:     "NF",
	JobState_PREEMPTED:     "PR",
	JobState_OUT_OF_MEMORY: "OOM",
	JobState_REQUEUED:      "RQ",
}

// Code returns Slurm's short code for s ("PD", "R", ...).
func (s JobState) Code() string {
	if c, ok := stateCodes[s]; ok {
		return c
	}
	return "?"
}

// Terminal reports whether a job in state s will never run again.
func (s JobState) Terminal() bool {
	switch s {
	case JobState_COMPLETED, JobState_FAILED, JobState_CANCELLED, JobState_TIMEOUT,
		JobState_NODE_FAIL, JobState_PREEMPTED, JobState_OUT_OF_MEMORY:
		return true
	}
	return false
}

// Active reports whether a job in state s holds an allocation that should be
// running (placed and not yet ended).
func (s JobState) Active() bool {
	switch s {
	case JobState_CONFIGURING, JobState_RUNNING, JobState_COMPLETING:
		return true
	}
	return false
}

// ParseJobState accepts a state name or its short code, in any case.
func ParseJobState(s string) (JobState, bool) {
	for st, code := range stateCodes {
		if strings.EqualFold(s, code) || strings.EqualFold(s, st.String()) {
			return st, true
		}
	}
	return JobState_JOB_STATE_UNSPECIFIED, false
}

// Ended reports whether the task has finished, whatever the reason.
func (t *TaskStatus) Ended() bool { return t.GetState() == TaskState_TASK_EXITED }

// Live reports whether an allocation still holds its resources: some rank
// has not reported its end. A cancelled job's GPUs are not handed out again
// until every rank is known to be gone, so no two ranks ever share a GPU.
func (a *Allocation) Live() bool {
	if a == nil {
		return false
	}
	for _, t := range a.GetTasks() {
		if !t.Ended() {
			return true
		}
	}
	return false
}
