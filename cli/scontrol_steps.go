package cli

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/rankenv"
)

// showHostnames prints one host name per line of a hostlist expression
// (several may be given, joined by commas), or of $SLURM_JOB_NODELIST.
// Scripts take the first as the master: scontrol show hostnames | head -n1.
func showHostnames(e *env, rest []string) int {
	expr := strings.Join(rest, ",")
	if expr == "" {
		expr = e.getenv(rankenv.SlurmJobNodeList)
	}
	if expr == "" {
		return e.errorf("show hostnames: no hostlist given and %s is not set", rankenv.SlurmJobNodeList)
	}
	names, err := api.ExpandHostlist(expr)
	if err != nil {
		return e.fail(err)
	}
	for _, n := range names {
		fmt.Fprintln(e.stdout, n)
	}
	return 0
}

// showSteps prints job steps as scontrol show step does: those of job
// JOBID, the one step JOBID.STEPID, or those of every active job.
func showSteps(ctx context.Context, e *env, c *client, rest []string, o scontrolOpts) int {
	var jobs []*api.Job
	var only *uint32
	if len(rest) == 1 {
		id, step, hasStep, err := api.ParseJobStep(rest[0])
		if err != nil {
			return e.fail(&usageError{err.Error()})
		}
		if hasStep {
			only = &step
		}
		j, err := c.getJob(ctx, id)
		if err != nil {
			return e.errorf("job %d: %s", id, messageAbout(err, fmt.Sprintf("job %d: ", id)))
		}
		jobs = []*api.Job{j}
	} else {
		resp, err := c.listJobs(ctx, &api.ListJobsRequest{})
		if err != nil {
			return e.fail(err)
		}
		jobs = resp.GetJobs()
		sort.Slice(jobs, func(a, b int) bool { return jobs[a].GetId() < jobs[b].GetId() })
	}
	printed := 0
	for _, j := range jobs {
		for _, st := range j.GetSteps() {
			if only != nil && st.GetId() != *only {
				continue
			}
			stepRecord(j, st, e).write(e.stdout, o.oneLiner)
			printed++
		}
	}
	if printed == 0 {
		if only != nil {
			return e.errorf("step %s: invalid job step specified", rest[0])
		}
		fmt.Fprintln(e.stdout, "No job steps in the system")
	}
	return 0
}

func stepRecord(j *api.Job, st *api.Step, e *env) *keyValues {
	a := st.GetAllocation()
	kv := &keyValues{}
	name := j.GetSpec().GetName()
	if st.GetId() != api.StepBatch {
		name = st.GetSpec().GetName()
	}
	kv.line("StepId", fmt.Sprintf("%d.%s", j.GetId(), api.StepName(st.GetId())), "UserId", strconv.FormatUint(uint64(j.GetUid()), 10),
		"StartTime", slurmTimestamp(st.GetStartUnixMs(), e.loc), "TimeLimit", timeLimit(j.GetSpec().GetTimeLimitS(), clockDuration))
	kv.line("State", stateName(st.GetState()), "Reason", orDefault(st.GetReason(), "None"), "ExitCode", fmt.Sprintf("%d:%d", st.GetExitCode(), st.GetExitSignal()))
	kv.line("Partition", j.GetSpec().PartitionOf(), "NodeList", null(api.CompressHostlist(a.GetNodes())))
	gpus, cpus := 0, uint32(0)
	for _, r := range a.GetRanks() {
		gpus += len(r.GetGpuUuids())
		cpus += r.GetCpus()
	}
	kv.line("Nodes", strconv.Itoa(len(a.GetNodes())), "CPUs", strconv.FormatUint(uint64(cpus), 10), "Tasks", strconv.Itoa(len(a.GetRanks())),
		"Name", name, "Network", "(null)")
	kv.line("TRES", fmt.Sprintf("cpu=%d,gres/gpu=%d,node=%d", cpus, gpus, len(a.GetNodes())))
	if argv := st.GetSpec().GetArgv(); len(argv) > 0 {
		kv.line("SrunHost:Pid", j.GetSubmitHost()+":0", "Command", strings.Join(argv, " "))
	}
	return kv
}
