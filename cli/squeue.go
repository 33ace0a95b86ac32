package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/loomhpc/loom/api"
)

const squeueUsage = `Usage: squeue [OPTIONS...]

Lists pending and running jobs, like Slurm's squeue.

Options:
`

type squeueOpts struct {
	jobs       []string
	users      []string
	states     []string
	partitions []string
	me         bool
	start      bool
	long       bool
	json       bool
	noHeader   bool
	help       bool
}

func runSqueue(ctx context.Context, e *env, args []string) int {
	var o squeueOpts
	opts := []*option{
		{long: "jobs", short: 'j', arg: requiredArg, meta: "ID[,ID...]", help: "only these jobs (finished ones too)", set: appendList(&o.jobs)},
		{long: "user", short: 'u', arg: requiredArg, meta: "USER[,USER...]", help: "only these users' jobs", set: appendList(&o.users)},
		{long: "me", arg: noArg, help: "only my jobs", set: setBool(&o.me, true)},
		{long: "states", short: 't', arg: requiredArg, meta: "STATE[,STATE...]", help: "only jobs in these states (names or codes, or all)", set: appendList(&o.states)},
		{long: "partition", short: 'p', arg: requiredArg, meta: "NAME[,NAME...]", help: "only jobs in these partitions", set: appendList(&o.partitions)},
		{long: "start", arg: noArg, help: "pending jobs with their expected start time", set: setBool(&o.start, true)},
		{long: "long", short: 'l', arg: noArg, help: "full state names and time limits", set: setBool(&o.long, true)},
		{long: "json", arg: noArg, help: "print the jobs as JSON (API objects)", set: setBool(&o.json, true)},
		{long: "noheader", short: 'h', arg: noArg, help: "no header line", set: setBool(&o.noHeader, true)},
		{long: "all", short: 'a', arg: noArg, set: func(string) error { return nil }}, // Slurm: show hidden partitions
		{long: "help", arg: noArg, help: "show this help", set: setBool(&o.help, true)},
		{long: "usage", arg: noArg, set: setBool(&o.help, true)},
	}
	pos, err := parseAndApply(opts, args)
	if err != nil {
		return e.fail(err)
	}
	if o.help {
		return printHelp(e, squeueUsage, opts)
	}
	if len(pos) > 0 {
		return e.fail(&usageError{fmt.Sprintf("unexpected argument %q", pos[0])})
	}
	ids, err := parseJobIDs(o.jobs)
	if err != nil {
		return e.fail(err)
	}
	states, allStates, err := parseStates(o.states)
	if err != nil {
		return e.fail(err)
	}
	if o.me {
		who, err := e.whoami()
		if err != nil {
			return e.fail(err)
		}
		o.users = append(o.users, who.user)
	}
	if o.start && len(states) == 0 && !allStates {
		states = []api.JobState{api.JobState_PENDING}
	}

	req := &api.ListJobsRequest{
		JobIds: ids,
		States: states,
		All:    len(ids) > 0 || allStates || slices.ContainsFunc(states, api.JobState.Terminal),
	}
	if len(o.users) == 1 {
		req.User = o.users[0]
	}
	return withClient(e, func(c *client) int {
		resp, err := c.listJobs(ctx, req)
		if err != nil {
			return e.fail(err)
		}
		// Filter here too, so that the output is right whatever the
		// server chose to filter.
		jobs := filterJobs(resp.GetJobs(), func(j *api.Job) bool {
			switch {
			case len(ids) > 0 && !slices.Contains(ids, j.GetId()):
				return false
			case len(o.users) > 0 && !slices.Contains(o.users, j.GetUser()):
				return false
			case len(o.partitions) > 0 && !slices.Contains(o.partitions, j.GetSpec().PartitionOf()):
				return false
			case len(states) > 0:
				return slices.Contains(states, j.GetState())
			case len(ids) == 0 && !allStates:
				return !j.GetState().Terminal()
			}
			return true
		})
		sortQueue(jobs)
		if o.json {
			if err := writeJSON(e.stdout, &api.ListJobsResponse{Jobs: jobs, Index: resp.GetIndex()}); err != nil {
				return e.fail(err)
			}
			return 0
		}
		writeQueue(e, jobs, o)
		return 0
	})
}

func filterJobs(jobs []*api.Job, keep func(*api.Job) bool) []*api.Job {
	var out []*api.Job
	for _, j := range jobs {
		if keep(j) {
			out = append(out, j)
		}
	}
	return out
}

// sortQueue orders jobs as squeue does by default: by partition, then
// state (pending first), then priority (highest first), then id.
func sortQueue(jobs []*api.Job) {
	sort.SliceStable(jobs, func(a, b int) bool {
		x, y := jobs[a], jobs[b]
		if px, py := x.GetSpec().PartitionOf(), y.GetSpec().PartitionOf(); px != py {
			return px < py
		}
		if x.GetState() != y.GetState() {
			return x.GetState() < y.GetState()
		}
		if x.GetPriority() != y.GetPriority() {
			return x.GetPriority() > y.GetPriority()
		}
		return x.GetId() < y.GetId()
	})
}

// nodelistOrReason is squeue's %R: the nodes of a placed job, or the
// reason a pending one waits, in parentheses.
func nodelistOrReason(j *api.Job) string {
	if j.GetState() == api.JobState_PENDING || len(j.GetAllocation().GetNodes()) == 0 {
		return "(" + orDefault(j.GetReason(), "None") + ")"
	}
	return api.CompressHostlist(j.GetAllocation().GetNodes())
}

func writeQueue(e *env, jobs []*api.Job, o squeueOpts) {
	now := e.now()
	var cols []column
	var row func(j *api.Job) []string
	id := func(j *api.Job) string { return strconv.FormatUint(j.GetId(), 10) }
	switch {
	case o.start:
		// Slurm: "%.18i %.9P %.8j %.8u %.2t %.19S %.6D %20Y %R"
		cols = []column{{"JOBID", 18, true}, {"PARTITION", 9, true}, {"NAME", 8, true}, {"USER", 8, true},
			{"ST", 2, true}, {"START_TIME", 19, true}, {"NODES", 6, true}, {"SCHEDNODES", 20, false}, {"NODELIST(REASON)", 0, false}}
		row = func(j *api.Job) []string {
			start := "N/A"
			if ms := j.GetExpectedStartUnixMs(); ms > 0 {
				start = slurmTimestamp(ms, e.loc)
			}
			return []string{id(j), j.GetSpec().PartitionOf(), j.GetSpec().GetName(), j.GetUser(), j.GetState().Code(),
				start, strconv.Itoa(jobNodes(j)), "(null)", nodelistOrReason(j)}
		}
	case o.long:
		// Slurm: "%.18i %.9P %.8j %.8u %.8T %.10M %.9l %.6D %R"
		cols = []column{{"JOBID", 18, true}, {"PARTITION", 9, true}, {"NAME", 8, true}, {"USER", 8, true},
			{"STATE", 8, true}, {"TIME", 10, true}, {"TIME_LIMIT", 9, true}, {"NODES", 6, true}, {"NODELIST(REASON)", 0, false}}
		row = func(j *api.Job) []string {
			return []string{id(j), j.GetSpec().PartitionOf(), j.GetSpec().GetName(), j.GetUser(), stateName(j.GetState()),
				api.FormatSlurmDuration(jobElapsed(j, now)), timeLimit(j.GetSpec().GetTimeLimitS(), api.FormatSlurmDuration),
				strconv.Itoa(jobNodes(j)), nodelistOrReason(j)}
		}
	default:
		// Slurm: "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"
		cols = []column{{"JOBID", 18, true}, {"PARTITION", 9, true}, {"NAME", 8, true}, {"USER", 8, true},
			{"ST", 2, true}, {"TIME", 10, true}, {"NODES", 6, true}, {"NODELIST(REASON)", 0, false}}
		row = func(j *api.Job) []string {
			return []string{id(j), j.GetSpec().PartitionOf(), j.GetSpec().GetName(), j.GetUser(), j.GetState().Code(),
				api.FormatSlurmDuration(jobElapsed(j, now)), strconv.Itoa(jobNodes(j)), nodelistOrReason(j)}
		}
	}
	rows := make([][]string, len(jobs))
	for i, j := range jobs {
		rows[i] = row(j)
	}
	writeTable(e.stdout, cols, rows, !o.noHeader)
}

// printHelp prints a usage text and the options' help lines.
func printHelp(e *env, usage string, opts []*option) int {
	var b strings.Builder
	b.WriteString(usage)
	writeOptionHelp(&b, opts)
	io.WriteString(e.stdout, b.String())
	return 0
}
