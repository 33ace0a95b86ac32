package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
)

// Helpers on jobs shared by squeue, sacct and scontrol.

// parseJobIDs parses "12,13 14" style lists of job ids from several args.
func parseJobIDs(args []string) ([]uint64, error) {
	var ids []uint64
	for _, a := range args {
		for _, f := range strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ' ' }) {
			id, err := strconv.ParseUint(f, 10, 64)
			if err != nil || id == 0 {
				if strings.Contains(f, "_") {
					return nil, fmt.Errorf("invalid job id %q: job arrays are not supported yet", f)
				}
				return nil, fmt.Errorf("invalid job id %q", f)
			}
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// parseStates parses a --states list of names or codes; "all" gives nil
// and true.
func parseStates(list []string) (states []api.JobState, all bool, err error) {
	for _, s := range list {
		if strings.EqualFold(s, "all") {
			return nil, true, nil
		}
		st, ok := api.ParseJobState(s)
		if !ok {
			return nil, false, fmt.Errorf("invalid job state %q (want a name such as RUNNING or a code such as R)", s)
		}
		states = append(states, st)
	}
	return states, false, nil
}

// jobNodes returns the node count squeue shows: the allocation's, or the
// fewest the job asked for while it waits.
func jobNodes(j *api.Job) int {
	if n := len(j.GetAllocation().GetNodes()); n > 0 {
		return n
	}
	if j.GetSpec() == nil {
		return 1
	}
	lo, _ := j.GetSpec().NodeRange()
	return int(lo)
}

// jobElapsed is how long the job has run: until now while it runs, until
// its end once over, zero before it starts.
func jobElapsed(j *api.Job, now time.Time) int64 {
	start := j.GetStartUnixMs()
	if start <= 0 || j.GetState() == api.JobState_PENDING {
		return 0
	}
	end := j.GetEndUnixMs()
	if end <= 0 || !j.GetState().Terminal() {
		end = now.UnixMilli()
	}
	if end < start {
		return 0
	}
	return (end - start) / 1000
}

// jobCPUs is the number of CPUs the allocation holds (AllocCPUS).
func jobCPUs(j *api.Job) uint32 {
	var n uint32
	for _, r := range j.GetAllocation().GetRanks() {
		n += r.GetCpus()
	}
	return n
}

// jobGPUs is the number of GPUs the allocation holds.
func jobGPUs(j *api.Job) int {
	n := 0
	for _, r := range j.GetAllocation().GetRanks() {
		n += max(len(r.GetGpuUuids()), len(r.GetGpuIndexes()))
	}
	return n
}

// timeLimit formats a spec time limit; 0 (the partition's default, not
// known to the client) is "N/A".
func timeLimit(sec int64, format func(int64) string) string {
	if sec == 0 {
		return "N/A"
	}
	return format(sec)
}

// exitCode is Slurm's "code:signal".
func exitCode(j *api.Job) string {
	return fmt.Sprintf("%d:%d", j.GetExitCode(), j.GetExitSignal())
}

// stateName is the full state name Slurm prints ("RUNNING").
func stateName(s api.JobState) string {
	if s == api.JobState_JOB_STATE_UNSPECIFIED {
		return "UNKNOWN"
	}
	return s.String()
}
