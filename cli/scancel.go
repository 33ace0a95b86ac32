package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/rpcclient"
)

const scancelUsage = `Usage: scancel [OPTIONS...] [JOBID[.STEPID]...]

Cancels jobs: those named, or with filters (-u, --me, -t, -p, -n) every
job that matches them all; JOBID.STEPID cancels one job step and not the
job. With --signal it sends the signal instead of cancelling: to every
step of a job but the batch step (-b: the batch step only, -f: all of
them), or to the step named. Prints nothing on success, as Slurm does.

Options:
`

type scancelOpts struct {
	users      []string
	states     []string
	partitions []string
	names      []string
	me         bool
	help       bool
	signal     string
	batch      bool // -b: signal the batch step only
	full       bool // -f: signal the batch step and every other step
}

func runScancel(ctx context.Context, e *env, args []string) int {
	var o scancelOpts
	opts := []*option{
		{long: "user", short: 'u', arg: requiredArg, meta: "USER", help: "cancel this user's jobs", set: appendList(&o.users)},
		{long: "me", arg: noArg, help: "cancel my jobs", set: setBool(&o.me, true)},
		{long: "state", short: 't', arg: requiredArg, meta: "STATE", help: "only jobs in this state (PENDING, RUNNING, ...)", set: appendList(&o.states)},
		{long: "partition", short: 'p', arg: requiredArg, meta: "NAME", help: "only jobs in this partition", set: appendList(&o.partitions)},
		{long: "name", short: 'n', arg: requiredArg, meta: "NAME", help: "only jobs with this name", set: appendList(&o.names)},
		{long: "quiet", short: 'Q', arg: noArg, help: "accepted for compatibility", set: func(string) error { return nil }},
		{long: "signal", short: 's', arg: requiredArg, meta: "SIG", help: "send SIG (USR1, TERM, a number) instead of cancelling", set: func(v string) error {
			if _, _, err := api.ParseSignal(v); err != nil || strings.Contains(v, "@") {
				return fmt.Errorf("%q is not a signal name or number", v)
			}
			o.signal = v
			return nil
		}},
		{long: "batch", short: 'b', arg: noArg, help: "with --signal: the batch step only", set: setBool(&o.batch, true)},
		{long: "full", short: 'f', arg: noArg, help: "with --signal: the batch step and every other step", set: setBool(&o.full, true)},
		{long: "help", short: 'h', arg: noArg, help: "show this help", set: setBool(&o.help, true)},
		{long: "usage", arg: noArg, set: setBool(&o.help, true)},
	}
	pos, err := parseAndApply(opts, args)
	if err != nil {
		return e.fail(err)
	}
	if o.help {
		return printHelp(e, scancelUsage, opts)
	}
	ids, steps, err := parseJobSteps(pos)
	if err != nil {
		return e.fail(err)
	}
	states, _, err := parseStates(o.states)
	if err != nil {
		return e.fail(err)
	}
	who, err := e.whoami()
	if err != nil {
		return e.fail(err)
	}
	if o.me {
		o.users = append(o.users, who.user)
	}
	filtered := len(o.users) > 0 || len(states) > 0 || len(o.partitions) > 0 || len(o.names) > 0
	if len(ids) == 0 && len(steps) == 0 && !filtered {
		return e.fail(&usageError{"no job identification provided"})
	}
	if len(steps) > 0 && filtered {
		return e.fail(&usageError{"JOBID.STEPID cannot be combined with filters"})
	}
	return withClient(e, func(c *client) int {
		status := 0
		for _, js := range steps {
			if err := signalSteps(ctx, c, o, js.job, []uint32{js.step}); err != nil {
				e.errorf("Kill job error on step %d.%s: %s", js.job, api.StepName(js.step), errorMessage(err))
				status = 1
			}
		}
		if len(ids) == 0 && !filtered {
			return status
		}
		if filtered {
			// Resolve the filters to job ids; named ids must match too.
			resp, err := c.listJobs(ctx, &api.ListJobsRequest{JobIds: ids, States: states})
			if err != nil {
				return e.fail(err)
			}
			matched := ids[:0:0]
			for _, j := range resp.GetJobs() {
				if j.GetState().Terminal() ||
					(len(ids) > 0 && !slices.Contains(ids, j.GetId())) ||
					(len(o.users) > 0 && !slices.Contains(o.users, j.GetUser())) ||
					(len(states) > 0 && !slices.Contains(states, j.GetState())) ||
					(len(o.partitions) > 0 && !slices.Contains(o.partitions, j.GetSpec().PartitionOf())) ||
					(len(o.names) > 0 && !slices.Contains(o.names, j.GetSpec().GetName())) {
					continue
				}
				matched = append(matched, j.GetId())
			}
			ids = matched
		}
		for _, id := range ids {
			if o.signal != "" {
				var which []uint32
				switch {
				case o.batch:
					which = []uint32{api.StepBatch}
				case o.full:
					j, err := c.getJob(ctx, id)
					if err != nil {
						e.errorf("Kill job error on job id %d: %s", id, messageAbout(err, fmt.Sprintf("job %d: ", id)))
						status = 1
						continue
					}
					for _, st := range j.GetSteps() {
						if !st.GetState().Terminal() {
							which = append(which, st.GetId())
						}
					}
				}
				if err := signalSteps(ctx, c, o, id, which); err != nil {
					e.errorf("Kill job error on job id %d: %s", id, messageAbout(err, fmt.Sprintf("job %d: ", id)))
					status = 1
				}
				continue
			}
			if err := cancelJob(ctx, c, id); err != nil {
				e.errorf("Kill job error on job id %d: %s", id, messageAbout(err, fmt.Sprintf("job %d: ", id)))
				status = 1
			}
		}
		return status
	})
}

// cancelJob cancels one job, so that an error is about that job alone.
func cancelJob(ctx context.Context, c *client, id uint64) error {
	req := &api.CancelRequest{JobIds: []uint64{id}}
	var resp *api.CancelResponse
	err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		var err error
		resp, err = c.jobs(cc).Cancel(ctx, req)
		return err
	})
	if err != nil {
		return err
	}
	c.wrote(resp.GetIndex())
	if !slices.Contains(resp.GetCancelled(), id) {
		return errors.New("job/step already completing or completed")
	}
	return nil
}

// jobStep is one JOBID.STEPID argument.
type jobStep struct {
	job  uint64
	step uint32
}

// parseJobSteps reads scancel's arguments: job ids and JOBID.STEPID.
func parseJobSteps(args []string) (jobs []uint64, steps []jobStep, err error) {
	for _, a := range args {
		for _, f := range strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ' ' }) {
			if !strings.Contains(f, ".") {
				ids, err := parseJobIDs([]string{f})
				if err != nil {
					return nil, nil, err
				}
				jobs = append(jobs, ids...)
				continue
			}
			job, step, _, err := api.ParseJobStep(f)
			if err != nil {
				return nil, nil, fmt.Errorf("invalid job step %q: %v", f, err)
			}
			steps = append(steps, jobStep{job, step})
		}
	}
	return jobs, steps, nil
}

// signalSteps cancels the named steps of job, or with --signal sends them
// the signal (no steps named: every step but the batch step).
func signalSteps(ctx context.Context, c *client, o scancelOpts, job uint64, steps []uint32) error {
	req := &api.CancelStepsRequest{JobId: job, StepIds: steps}
	if o.signal != "" {
		sig, _, _ := api.ParseSignal(o.signal)
		req.Signal = int32(sig)
	}
	return c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		resp, err := c.jobs(cc).CancelSteps(ctx, req)
		if err == nil {
			c.wrote(resp.GetIndex())
		}
		return err
	})
}
