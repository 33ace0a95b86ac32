package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/grpc"

	"github.com/loomhpc/loom/api"
)

const scancelUsage = `Usage: scancel [OPTIONS...] [JOBID...]

Cancels jobs: those named, or with filters (-u, --me, -t, -p, -n) every
job that matches them all. Prints nothing on success, as Slurm does.

Options:
`

type scancelOpts struct {
	users      []string
	states     []string
	partitions []string
	names      []string
	me         bool
	help       bool
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
		{long: "signal", short: 's', arg: requiredArg, meta: "SIG", set: func(string) error {
			return errors.New("sending a signal without cancelling is not supported yet")
		}},
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
	ids, err := parseJobIDs(pos)
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
	if len(ids) == 0 && !filtered {
		return e.fail(&usageError{"no job identification provided"})
	}
	return withClient(e, func(c *client) int {
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
		status := 0
		for _, id := range ids {
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
	err := c.do(ctx, true, func(ctx context.Context, cc *grpc.ClientConn) error {
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
