package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

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
	accounts   []string
	qos        []string
	names      []string
	nodes      []string
	me         bool
	start      bool
	long       bool
	json       bool
	noHeader   bool
	format     string
	longFormat string // -O/--Format
	sort       string
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
		{long: "account", short: 'A', arg: requiredArg, meta: "ACCOUNT[,ACCOUNT...]", help: "only jobs charged to these accounts", set: appendList(&o.accounts)},
		{long: "qos", short: 'q', arg: requiredArg, meta: "QOS[,QOS...]", help: "only jobs of these QOS", set: appendList(&o.qos)},
		{long: "name", short: 'n', arg: requiredArg, meta: "NAME[,NAME...]", help: "only jobs with these names", set: appendList(&o.names)},
		{long: "nodelist", short: 'w', arg: requiredArg, meta: "HOSTLIST", help: "only jobs placed on any of these nodes (node[1-4],gpu3)", set: func(v string) error {
			names, err := nodeNames(v)
			o.nodes = append(o.nodes, names...)
			return err
		}},
		{long: "array", short: 'r', arg: noArg, help: "one array task per line (Loom's only view)", set: func(string) error { return nil }},
		{long: "sort", short: 'S', arg: requiredArg, meta: "[+|-]FIELD[,...]", help: "order by these fields (%-letters or --Format names), - for descending", set: setString(&o.sort)},
		{long: "start", arg: noArg, help: "pending jobs with their expected start time", set: setBool(&o.start, true)},
		{long: "long", short: 'l', arg: noArg, help: "full state names and time limits", set: setBool(&o.long, true)},
		{long: "json", arg: noArg, help: "print the jobs as JSON (API objects)", set: setBool(&o.json, true)},
		{long: "consistent", arg: noArg, help: "read through the leader (linearizable) instead of any server", set: consistentRead(e)},
		{long: "noheader", short: 'h', arg: noArg, help: "no header line", set: setBool(&o.noHeader, true)},
		{long: "format", short: 'o', arg: requiredArg, meta: "FORMAT", help: "columns as %[.][WIDTH]LETTER fields, such as \"%.18i %.9P %.30j %R\"", set: setString(&o.format)},
		{long: "Format", short: 'O', arg: requiredArg, meta: "FIELD[:[.][SIZE][SUFFIX]],...", help: "columns by name, such as \"JobID,Name:30,UserName,State,TimeUsed,ReasonList\"", set: setString(&o.longFormat)},
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
	var pieces []formatPiece[squeueField]
	if o.longFormat != "" {
		if o.format != "" {
			return e.fail(&usageError{"give either --format (-o) or --Format (-O), not both"})
		}
		if pieces, err = parseSqueueLongFormat(o.longFormat); err != nil {
			return e.fail(fmt.Errorf("--Format=%s: %w", o.longFormat, err))
		}
	} else if pieces, err = parseSqueueFormat(squeueFormat(o)); err != nil {
		return e.fail(fmt.Errorf("--format=%s: %w", squeueFormat(o), err))
	}
	keys, err := parseSqueueSort(o.sort)
	if err != nil {
		return e.fail(fmt.Errorf("--sort=%s: %w", o.sort, err))
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
	if !o.json {
		// Only what the columns, filters and sort keys read, and an
		// array's spec once: decoding whole summaries, a JobSpec for
		// every job, was most of squeue's time over a long queue.
		req.View = api.ListView_LIST_VIEW_QUEUE
	}
	return withClient(e, func(c *client) int {
		resp, err := c.listJobs(ctx, req)
		if err != nil {
			return e.fail(err)
		}
		api.FillSharedSpecs(resp.GetJobs())
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
			case len(o.accounts) > 0 && !slices.Contains(o.accounts, j.GetSpec().GetAccount()):
				return false
			case len(o.qos) > 0 && !slices.Contains(o.qos, j.GetSpec().GetQos()):
				return false
			case len(o.names) > 0 && !slices.Contains(o.names, j.GetSpec().GetName()):
				return false
			case len(o.nodes) > 0 && !slices.ContainsFunc(j.GetAllocation().GetNodes(), func(n string) bool { return slices.Contains(o.nodes, n) }):
				return false
			case len(states) > 0:
				return slices.Contains(states, j.GetState())
			case len(ids) == 0 && !allStates:
				return !j.GetState().Terminal()
			}
			return true
		})
		sortQueue(jobs)
		if len(keys) > 0 {
			sortBy(jobs, keys, e.now(), e.loc)
		}
		if o.json {
			if err := writeJSON(e.stdout, &api.ListJobsResponse{Jobs: jobs, Index: resp.GetIndex()}); err != nil {
				return e.fail(err)
			}
			return 0
		}
		writeQueue(e, jobs, pieces, o)
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

// Slurm's squeue formats for the built-in views.
const (
	squeueDefaultFormat = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"
	squeueLongFormat    = "%.18i %.9P %.8j %.8u %.8T %.10M %.9l %.6D %R"
	squeueStartFormat   = "%.18i %.9P %.8j %.8u %.2t %.19S %.6D %20Y %R"
)

// squeueFormat is the format of the view o asks for.
func squeueFormat(o squeueOpts) string {
	switch {
	case o.format != "":
		return o.format
	case o.start:
		return squeueStartFormat
	case o.long:
		return squeueLongFormat
	}
	return squeueDefaultFormat
}

// writeQueue prints jobs in the format of pieces, with a header unless
// o.noHeader.
func writeQueue(e *env, jobs []*api.Job, pieces []formatPiece[squeueField], o squeueOpts) {
	now := e.now()
	// One write for many lines: a queue of 10,000 jobs is otherwise
	// 10,000 system calls.
	out := bufio.NewWriterSize(e.stdout, 64<<10)
	defer out.Flush()
	var buf []byte // one line, reused
	line := func(cell func(f *squeueField) string) {
		buf = appendPieces(buf[:0], pieces, cell)
		buf = append(bytes.TrimRight(buf, " "), '\n')
		out.Write(buf)
	}
	if !o.noHeader {
		line(func(f *squeueField) string { return f.title })
	}
	var j *api.Job
	value := func(f *squeueField) string { return f.value(j, now, e.loc) }
	for _, j = range jobs {
		line(value)
	}
}

// squeueField is one %-letter of squeue --format.
type squeueField struct {
	title string
	value func(j *api.Job, now time.Time, loc *time.Location) string
}

var squeueFields = map[byte]*squeueField{
	'i': {"JOBID", func(j *api.Job, _ time.Time, _ *time.Location) string { return strconv.FormatUint(j.GetId(), 10) }},
	'A': {"JOBID", func(j *api.Job, _ time.Time, _ *time.Location) string { return strconv.FormatUint(j.GetId(), 10) }},
	'P': {"PARTITION", func(j *api.Job, _ time.Time, _ *time.Location) string { return j.GetSpec().PartitionOf() }},
	'j': {"NAME", func(j *api.Job, _ time.Time, _ *time.Location) string { return j.GetSpec().GetName() }},
	'u': {"USER", func(j *api.Job, _ time.Time, _ *time.Location) string { return j.GetUser() }},
	'U': {"UID", func(j *api.Job, _ time.Time, _ *time.Location) string {
		return strconv.FormatUint(uint64(j.GetUid()), 10)
	}},
	'a': {"ACCOUNT", func(j *api.Job, _ time.Time, _ *time.Location) string { return j.GetSpec().GetAccount() }},
	'q': {"QOS", func(j *api.Job, _ time.Time, _ *time.Location) string { return j.GetSpec().GetQos() }},
	'v': {"RESERVATION", func(j *api.Job, _ time.Time, _ *time.Location) string { return j.GetSpec().GetReservation() }},
	't': {"ST", func(j *api.Job, _ time.Time, _ *time.Location) string { return j.GetState().Code() }},
	'T': {"STATE", func(j *api.Job, _ time.Time, _ *time.Location) string { return stateName(j.GetState()) }},
	'M': {"TIME", func(j *api.Job, now time.Time, _ *time.Location) string {
		return api.FormatSlurmDuration(jobElapsed(j, now))
	}},
	'l': {"TIME_LIMIT", func(j *api.Job, _ time.Time, _ *time.Location) string {
		return timeLimit(j.GetSpec().GetTimeLimitS(), api.FormatSlurmDuration)
	}},
	'D': {"NODES", func(j *api.Job, _ time.Time, _ *time.Location) string { return strconv.Itoa(jobNodes(j)) }},
	'C': {"CPUS", func(j *api.Job, _ time.Time, _ *time.Location) string {
		return strconv.FormatUint(uint64(jobCPUs(j)), 10)
	}},
	'b': {"TRES_PER_NODE", func(j *api.Job, _ time.Time, _ *time.Location) string {
		return strings.ReplaceAll(tresPerNode(j.GetSpec()), "gres/", "")
	}},
	'R': {"NODELIST(REASON)", func(j *api.Job, _ time.Time, _ *time.Location) string { return nodelistOrReason(j) }},
	'N': {"NODELIST", func(j *api.Job, _ time.Time, _ *time.Location) string {
		return api.CompressHostlist(j.GetAllocation().GetNodes())
	}},
	'r': {"REASON", func(j *api.Job, _ time.Time, _ *time.Location) string { return orDefault(j.GetReason(), "None") }},
	'S': {"START_TIME", func(j *api.Job, _ time.Time, loc *time.Location) string {
		ms := j.GetStartUnixMs()
		if j.GetState() == api.JobState_PENDING {
			ms = j.GetExpectedStartUnixMs()
		}
		if ms <= 0 {
			return "N/A"
		}
		return slurmTimestamp(ms, loc)
	}},
	'V': {"SUBMIT_TIME", func(j *api.Job, _ time.Time, loc *time.Location) string {
		return slurmTimestamp(j.GetSubmitUnixMs(), loc)
	}},
	'e': {"END_TIME", func(j *api.Job, _ time.Time, loc *time.Location) string {
		if j.GetEndUnixMs() <= 0 {
			return "N/A"
		}
		return slurmTimestamp(j.GetEndUnixMs(), loc)
	}},
	'p': {"PRIORITY", func(j *api.Job, _ time.Time, _ *time.Location) string {
		return strconv.FormatUint(uint64(j.GetPriority()), 10)
	}},
	'Q': {"PRIORITY", func(j *api.Job, _ time.Time, _ *time.Location) string {
		return strconv.FormatUint(uint64(j.GetPriority()), 10)
	}},
	'y': {"NICE", func(j *api.Job, _ time.Time, _ *time.Location) string {
		return strconv.Itoa(int(j.GetSpec().GetNice()))
	}},
	'E': {"DEPENDENCY", func(j *api.Job, _ time.Time, _ *time.Location) string { return null(j.GetSpec().GetDependency()) }},
	'Z': {"WORK_DIR", func(j *api.Job, _ time.Time, _ *time.Location) string { return j.GetSpec().GetWorkingDir() }},
	'k': {"COMMENT", func(j *api.Job, _ time.Time, _ *time.Location) string { return null(j.GetSpec().GetComment()) }},
	'F': {"ARRAY_JOB_ID", func(j *api.Job, _ time.Time, _ *time.Location) string { return strconv.FormatUint(arrayJobID(j), 10) }},
	'K': {"ARRAY_TASK_ID", func(j *api.Job, _ time.Time, _ *time.Location) string {
		if j.GetArrayJobId() == 0 {
			return "N/A"
		}
		return strconv.FormatUint(uint64(j.GetArrayTaskId()), 10)
	}},
	'Y': {"SCHEDNODES", func(*api.Job, time.Time, *time.Location) string { return "(null)" }},
}

// parseSqueueFormat parses Slurm's squeue --format: "%[.][WIDTH]LETTER"
// fields between literal text, "%%" for a percent sign.
func parseSqueueFormat(f string) ([]formatPiece[squeueField], error) {
	return parsePercentFormat(f, squeueFields, func(c byte) error { return fmt.Errorf("unknown field %%%c", c) })
}

// printHelp prints a usage text and the options' help lines.
func printHelp(e *env, usage string, opts []*option) int {
	var b strings.Builder
	b.WriteString(usage)
	writeOptionHelp(&b, opts)
	io.WriteString(e.stdout, b.String())
	return 0
}
