package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/rankenv"
	"github.com/loomhpc/loom/rpcclient"
)

// stepOpts are srun's options that only mean something for a job step.
type stepOpts struct {
	label         bool
	killOnBadExit bool
	overlap       bool
}

// stepOptions are srun's step options, and Slurm options that launchers
// pass and that change nothing of what a step gets. --cpu-bind is
// sbatch's option, which srun shares: a step's binding is its own.
func stepOptions(so *stepOpts) []*option {
	none := func(string) error { return nil }
	return []*option{
		{long: "label", short: 'l', arg: noArg, help: "prefix every output line with its task (\"TASK: \")", set: setBool(&so.label, true)},
		{long: "kill-on-bad-exit", short: 'K', arg: optionalArg, help: "end the step's other tasks when one fails", set: func(v string) error {
			so.killOnBadExit = v != "0"
			return nil
		}},
		{long: "overlap", arg: noArg, help: "share CPUs and GPUs with the other steps of the job", set: setBool(&so.overlap, true)},
		{long: "exact", arg: noArg, set: none},
		{long: "mpi", arg: requiredArg, set: none},
		{long: "unbuffered", short: 'u', arg: noArg, set: none},
	}
}

// stepPoll is how often srun looks at its step while it waits for it to be
// placed, to start, or to end; output itself is streamed.
const stepPoll = 200 * time.Millisecond

// allocationJob returns the job whose allocation srun runs in
// (SLURM_JOB_ID, set in a batch script and a salloc shell), or 0.
func allocationJob(e *env) (uint64, error) {
	v := e.getenv(rankenv.SlurmJobID)
	if v == "" {
		return 0, nil
	}
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%s=%q is not a job id", rankenv.SlurmJobID, v)
	}
	return id, nil
}

// buildStepSpec makes the spec of a step: the command, its task layout,
// and the caller's working directory and environment.
func buildStepSpec(e *env, o *sbatchOpts, so *stepOpts, uses []optUse, pos []string) (*api.JobSpec, error) {
	spec, err := buildCommandSpec(e, o, uses, pos, func(spec *api.JobSpec) {
		spec.KillOnBadExit = so.killOnBadExit
		spec.Overlap = so.overlap
	})
	if err != nil {
		return nil, err
	}
	// Step placement (state.layoutStep) reads neither; refused rather than
	// dropped.
	switch {
	case spec.Constraint != "":
		return nil, errors.New("--constraint: a step runs on its job's nodes: choose among them with -w/--nodelist or -x/--exclude")
	case spec.CpusPerGpu != 0:
		return nil, errors.New("--cpus-per-gpu: not supported for a step yet: give -c/--cpus-per-task")
	}
	return spec, nil
}

// runStep runs spec as a step of job jobID: it creates the step, waits
// while other steps hold what it needs, streams its tasks' output, and
// returns the step's exit status. Ctrl-C cancels the step, not the job.
func runStep(ctx context.Context, e *env, c *client, jobID uint64, spec *api.JobSpec, label bool) int {
	var resp *api.CreateStepResponse
	err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		var err error
		resp, err = c.jobs(cc).CreateStep(ctx, &api.CreateStepRequest{
			JobId: jobID, Spec: spec, IdempotencyToken: e.newToken()})
		return err
	})
	if err != nil {
		return e.errorf("Unable to create step for job %d: %s", jobID, messageAbout(err, fmt.Sprintf("job %d: ", jobID)))
	}
	c.wrote(resp.Index)
	id := resp.StepId
	name := fmt.Sprintf("%d.%s", jobID, api.StepName(id))
	code, err := followStep(ctx, c, e, jobID, id, label, spec.Output == "" || spec.Error != "")
	if ctx.Err() != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		cerr := c.do(cctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
			_, err := c.jobs(cc).CancelSteps(ctx, &api.CancelStepsRequest{JobId: jobID, StepIds: []uint32{id}})
			return err
		})
		if cerr != nil {
			return e.errorf("interrupted; cancelling step %s: %s", name, errorMessage(cerr))
		}
		e.errorf("interrupted; step %s cancelled", name)
		return 130
	}
	if err != nil {
		return e.errorf("step %s: %s", name, messageAbout(err, "step "+name+": "))
	}
	return code
}

// followStep waits for the step to start, streams its output until its
// tasks end, and returns srun's exit status.
func followStep(ctx context.Context, c *client, e *env, jobID uint64, id uint32, label, separateStderr bool) (int, error) {
	announced := false
	st, err := waitForStep(ctx, c, jobID, id, func(st *api.Step) bool {
		if st.GetState() == api.JobState_PENDING && !announced {
			fmt.Fprintf(e.stderr, "%s: Job step creation temporarily disabled, retrying (%s)\n", e.name, st.GetReason())
			announced = true
		}
		return st.GetState() == api.JobState_RUNNING || st.GetState().Terminal()
	})
	if err != nil {
		return 0, err
	}
	if announced && st.GetAllocation() != nil {
		fmt.Fprintf(e.stderr, "%s: Step created for StepId=%d.%s\n", e.name, jobID, api.StepName(id))
	}
	if st.GetAllocation() != nil {
		errc := make(chan error, 1)
		go func() {
			if !separateStderr {
				errc <- nil
				return
			}
			errc <- streamLogs(ctx, c, &api.LogsRequest{JobId: jobID, Rank: -1, Follow: true, Stderr: true, Step: &id}, e.stderr, label)
		}()
		err := streamLogs(ctx, c, &api.LogsRequest{JobId: jobID, Rank: -1, Follow: true, Step: &id}, e.stdout, label)
		if err = errors.Join(err, <-errc); err != nil {
			return 0, err
		}
	}
	st, err = waitForStep(ctx, c, jobID, id, func(st *api.Step) bool {
		return st.GetState().Terminal() && !st.HoldsResources()
	})
	if err != nil {
		return 0, err
	}
	code := int(st.GetExitCode())
	if sig := int(st.GetExitSignal()); sig != 0 && code == 0 {
		code = 128 + sig
	}
	if s := st.GetState(); s != api.JobState_COMPLETED {
		reason := st.GetReason()
		if reason == "" {
			reason = "exit code " + strconv.Itoa(code)
		}
		e.errorf("step %d.%s ended %s: %s", jobID, api.StepName(id), stateName(s), reason)
		if code == 0 {
			code = 1
		}
	}
	return code, nil
}

// waitForStep polls step id of job until done holds for it or ctx ends.
func waitForStep(ctx context.Context, c *client, jobID uint64, id uint32, done func(*api.Step) bool) (*api.Step, error) {
	t := time.NewTicker(stepPoll)
	defer t.Stop()
	for {
		j, err := c.getJob(ctx, jobID)
		if err != nil {
			return nil, err
		}
		st := j.Step(id)
		if st == nil {
			// The job was requeued, which starts its steps afresh.
			return nil, fmt.Errorf("job %d no longer has step %s (it is %s)", jobID, api.StepName(id), stateName(j.GetState()))
		}
		if done(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
