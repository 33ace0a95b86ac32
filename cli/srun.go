package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/loomhpc/loom/api"
)

const srunUsage = `Usage: srun [OPTIONS...] COMMAND [ARGS...]

Inside an allocation (a batch script or a salloc shell: SLURM_JOB_ID is
set) srun runs COMMAND as a job step: its tasks run on the allocation's
nodes (by default every node, with the job's tasks per node and every GPU
the job has there; -N, -n, --ntasks-per-node, -c, --gpus-per-task, -w, -x
choose less). A step that does not fit beside the steps already running
waits for them ("Job step creation temporarily disabled"). Output comes
back as the tasks write it; srun exits with the step's exit code, and
Ctrl-C cancels the step, not the job.

Outside an allocation srun submits COMMAND as a job of its own (an
allocation plus its step 0: every task runs COMMAND with ARGS, no shell in
between), waits for it to be placed, prints every rank's output as it
comes, and exits with the job's exit code. Ctrl-C cancels the job. Each
rank's output is also kept in srun-JOBID-RANK.out in the working directory
unless --output says otherwise.

The resource options are sbatch's; SLURM_* input variables other than
SLURM_JOB_ID are not read.

Options:
`

// srunPoll is how often srun asks for the job's state while it waits for
// the job to be placed or to end; log output itself is streamed.
const srunPoll = 200 * time.Millisecond

// srunOutput is where ranks' output goes when --output is not given.
const srunOutput = "srun-%j-%t.out"

// srunDropped are sbatch options that mean nothing for a foreground run.
var srunDropped = map[string]bool{"wrap": true, "parsable": true, "wait": true, "every-rank": true}

func runSrun(ctx context.Context, e *env, args []string) int {
	o := &sbatchOpts{now: e.now}
	var so stepOpts
	var opts []*option
	for _, op := range sbatchOptions(o) {
		if !srunDropped[op.long] {
			opts = append(opts, op)
		}
	}
	opts = append(opts, stepOptions(&so)...)
	uses, pos, err := parseArgs(opts, args, parseConfig{stopAtArg: true})
	if err != nil {
		return e.fail(err)
	}
	if hasUse(uses, "help") || hasUse(uses, "usage") {
		return printHelp(e, srunUsage, opts)
	}
	jobID, err := allocationJob(e)
	if err != nil {
		return e.fail(err)
	}
	if jobID != 0 {
		if hasUse(uses, "test-only") {
			return e.fail(fmt.Errorf("--test-only: job %d's steps start in its allocation; run srun --test-only outside it", jobID))
		}
		spec, err := buildStepSpec(e, o, &so, uses, pos)
		if err != nil {
			return e.fail(err)
		}
		return withClient(e, func(c *client) int { return runStep(ctx, e, c, jobID, spec, so.label) })
	}
	spec, err := buildSrunSpec(e, o, uses, pos)
	label := so.label
	if err != nil {
		return e.fail(err)
	}
	if o.testOnly {
		return withClient(e, func(c *client) int { return testSubmit(ctx, e, c, spec) })
	}
	return withClient(e, func(c *client) int {
		id, err := submit(ctx, e, c, spec)
		if err != nil {
			return e.fail(err)
		}
		code, err := followJob(ctx, c, e, id, label, spec.Error != "")
		if ctx.Err() != nil {
			// Ctrl-C (or the caller gave up): the gang must not outlive
			// the command that started it.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
			defer cancel()
			if cerr := cancelJob(cctx, c, id); cerr != nil {
				return e.errorf("interrupted; cancelling job %d: %s", id, messageAbout(cerr, fmt.Sprintf("job %d: ", id)))
			}
			e.errorf("interrupted; job %d cancelled", id)
			return 130
		}
		if err != nil {
			return e.errorf("job %d: %s", id, messageAbout(err, fmt.Sprintf("job %d: ", id)))
		}
		return code
	})
}

// buildSrunSpec applies the command-line options and makes the job spec:
// argv is the command, the name defaults to its base name, and the
// working directory and environment are the caller's, as sbatch does.
func buildSrunSpec(e *env, o *sbatchOpts, uses []optUse, pos []string) (*api.JobSpec, error) {
	return buildCommandSpec(e, o, uses, pos, func(spec *api.JobSpec) {
		if spec.Output == "" {
			// One file per rank: ranks sharing a file would interleave and
			// could not be told apart by --label.
			spec.Output = srunOutput
		}
	})
}

// buildCommandSpec is what srun's job and step specs share: the options
// applied, argv the command, the name its base name unless given, and
// the caller's working directory; adjust sets what differs between them.
func buildCommandSpec(e *env, o *sbatchOpts, uses []optUse, pos []string, adjust func(*api.JobSpec)) (*api.JobSpec, error) {
	if len(pos) == 0 {
		return nil, &usageError{"no command given: srun [OPTIONS...] COMMAND [ARGS...]"}
	}
	if err := applySbatch(e, uses, ""); err != nil {
		return nil, err
	}
	cwd, err := e.getwd()
	if err != nil {
		return nil, fmt.Errorf("finding the current directory: %w", err)
	}
	spec := &o.spec
	spec.Argv = pos
	adjust(spec)
	if spec.Name == "" {
		spec.Name = filepath.Base(pos[0])
	}
	return finishSpec(e, o, cwd)
}

// followJob waits for job id to be placed, streams its output to e until
// it ends, and returns the exit status srun should end with. A gang that
// is requeued (a node failed) is followed into its next run.
func followJob(ctx context.Context, c *client, e *env, id uint64, label, separateStderr bool) (int, error) {
	for {
		j, err := waitForJob(ctx, c, id, func(j *api.Job) bool {
			return j.GetState().Terminal() || j.GetState().Active()
		})
		if err != nil {
			return 0, err
		}
		if j.GetAllocation() != nil {
			if err := streamJob(ctx, c, e, id, label, separateStderr); err != nil {
				return 0, err
			}
		}
		// The output ends when the ranks do; the state follows shortly.
		j, err = waitForJob(ctx, c, id, func(j *api.Job) bool {
			s := j.GetState()
			return (s.Terminal() && !j.HoldsResources()) || s == api.JobState_PENDING || s == api.JobState_REQUEUED
		})
		if err != nil {
			return 0, err
		}
		if !j.GetState().Terminal() {
			e.warnf("job %d was requeued (%s); following its next run", id, stateName(j.GetState()))
			continue
		}
		return jobStatus(e, j), nil
	}
}

// jobStatus is the exit status for a finished job: its exit code, 128 plus
// the signal that killed it, or 1 for a job that ended badly without one.
func jobStatus(e *env, j *api.Job) int {
	code := int(j.GetExitCode())
	if sig := int(j.GetExitSignal()); sig != 0 && code == 0 {
		code = 128 + sig
	}
	if s := j.GetState(); s != api.JobState_COMPLETED {
		e.errorf("job %d ended %s, exit code %s", j.GetId(), stateName(s), exitCode(j))
		if code == 0 {
			code = 1
		}
	}
	return code
}

// streamJob follows the job's standard output (and its standard error when
// it goes to its own files) until the job ends.
func streamJob(ctx context.Context, c *client, e *env, id uint64, label, separateStderr bool) error {
	errc := make(chan error, 1)
	if separateStderr {
		go func() {
			errc <- streamLogs(ctx, c, &api.LogsRequest{JobId: id, Rank: -1, Follow: true, Stderr: true}, e.stderr, label)
		}()
	} else {
		errc <- nil
	}
	err := streamLogs(ctx, c, &api.LogsRequest{JobId: id, Rank: -1, Follow: true}, e.stdout, label)
	return errors.Join(err, <-errc)
}

// waitForJob polls job id until done holds for it or ctx ends.
func waitForJob(ctx context.Context, c *client, id uint64, done func(*api.Job) bool) (*api.Job, error) {
	t := time.NewTicker(srunPoll)
	defer t.Stop()
	for {
		j, err := c.getJob(ctx, id)
		if err != nil {
			return nil, err
		}
		if done(j) {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
