package cli

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
)

const sacctUsage = `Usage: sacct [OPTIONS...]

Shows accounting data for jobs, like Slurm's sacct: by default my jobs
that were active since midnight; with -j the named jobs. Each job's line
is followed by its steps' (JOB.batch for the batch script, JOB.0, JOB.1
... for srun's steps) unless -X is given.

Fields for --format: %s

Options:
`

// sacctField is one column sacct can print.
type sacctField struct {
	name  string
	width int
	left  bool
	value func(j sacctRow, now time.Time, loc *time.Location) string
}

// sacctRow is one line of sacct: a job, or one of its steps shown as a
// job of its own (its state, times, exit code and tasks) with the step's
// name after the job id ("12.batch", "12.0").
type sacctRow struct {
	*api.Job
	step string // "" for the job's own line
}

func (r sacctRow) id() string {
	id := strconv.FormatUint(r.GetId(), 10)
	if r.step != "" {
		id += "." + r.step
	}
	return id
}

// sacctRows is a job's line and, unless allocationsOnly, its steps'
// lines, as Slurm prints them: JOB, JOB.batch, JOB.0, JOB.1, ... A job
// started by srun outside an allocation is its own step 0.
func sacctRows(j *api.Job, allocationsOnly bool) []sacctRow {
	rows := []sacctRow{{Job: j}}
	if allocationsOnly {
		return rows
	}
	if len(j.GetSpec().GetArgv()) > 0 && j.GetAllocation() != nil {
		return append(rows, sacctRow{Job: j, step: "0"})
	}
	for _, st := range j.GetSteps() {
		v := &api.Job{
			Id: j.Id, User: j.User, Uid: j.Uid, State: st.State, Reason: st.Reason,
			SubmitUnixMs: st.SubmitUnixMs, StartUnixMs: st.StartUnixMs, EndUnixMs: st.EndUnixMs,
			ExitCode: st.ExitCode, ExitSignal: st.ExitSignal, Allocation: st.Allocation,
			Spec: &api.JobSpec{Name: st.GetSpec().GetName(), Partition: j.GetSpec().GetPartition(), Account: j.GetSpec().GetAccount(),
				Qos: j.GetSpec().GetQos(), TimeLimitS: j.GetSpec().GetTimeLimitS(), WorkingDir: st.GetSpec().GetWorkingDir()},
		}
		if st.Id == api.StepBatch {
			v.Spec.Name, v.Spec.WorkingDir = "batch", j.GetSpec().GetWorkingDir()
		}
		if v.StartUnixMs == 0 && st.State.Terminal() {
			v.StartUnixMs = v.EndUnixMs
		}
		rows = append(rows, sacctRow{Job: v, step: api.StepName(st.Id)})
	}
	return rows
}

var sacctFields = []sacctField{
	{"JobID", 12, true, func(j sacctRow, _ time.Time, _ *time.Location) string { return j.id() }},
	{"JobIDRaw", 12, true, func(j sacctRow, _ time.Time, _ *time.Location) string { return j.id() }},
	{"JobName", 10, false, func(j sacctRow, _ time.Time, _ *time.Location) string { return j.GetSpec().GetName() }},
	{"Partition", 10, false, func(j sacctRow, _ time.Time, _ *time.Location) string { return j.GetSpec().PartitionOf() }},
	{"Account", 10, false, func(j sacctRow, _ time.Time, _ *time.Location) string { return j.GetSpec().GetAccount() }},
	{"QOS", 10, false, func(j sacctRow, _ time.Time, _ *time.Location) string { return j.GetSpec().GetQos() }},
	{"User", 9, false, func(j sacctRow, _ time.Time, _ *time.Location) string { return j.GetUser() }},
	{"UID", 6, false, func(j sacctRow, _ time.Time, _ *time.Location) string {
		return strconv.FormatUint(uint64(j.GetUid()), 10)
	}},
	{"AllocCPUS", 10, false, func(j sacctRow, _ time.Time, _ *time.Location) string {
		return strconv.FormatUint(uint64(jobCPUs(j.Job)), 10)
	}},
	{"AllocGPUS", 10, false, func(j sacctRow, _ time.Time, _ *time.Location) string { return strconv.Itoa(jobGPUs(j.Job)) }},
	// AllocGPUHours, UsedGPUHours and GPUUtil are Loom's: the GPU-hours
	// the job's allocations held, the utilization-weighted GPU-hours its
	// ranks used (agents sample DCGM_FI_DEV_GPU_UTIL), and the one as a
	// share of the other. A step's line leaves the used figures blank: the
	// job's line counts its steps' GPUs.
	{"AllocGPUHours", 13, false, func(j sacctRow, now time.Time, _ *time.Location) string {
		return gpuHours(j.AllocGPUMs(now.UnixMilli()))
	}},
	{"UsedGPUHours", 12, false, func(j sacctRow, _ time.Time, _ *time.Location) string {
		if j.step != "" {
			return ""
		}
		return gpuHours(j.GetUsedGpuMs())
	}},
	{"GPUUtil", 7, false, func(j sacctRow, now time.Time, _ *time.Location) string {
		alloc := j.AllocGPUMs(now.UnixMilli())
		if j.step != "" || alloc == 0 {
			return ""
		}
		return fmt.Sprintf("%.1f%%", 100*float64(j.GetUsedGpuMs())/float64(alloc))
	}},
	{"AllocTRES", 30, false, func(j sacctRow, _ time.Time, _ *time.Location) string { return jobTRES(j.Job) }},
	{"NNodes", 8, false, func(j sacctRow, _ time.Time, _ *time.Location) string { return strconv.Itoa(jobNodes(j.Job)) }},
	{"NTasks", 8, false, func(j sacctRow, _ time.Time, _ *time.Location) string {
		return strconv.Itoa(len(j.GetAllocation().GetRanks()))
	}},
	{"NodeList", 15, false, func(j sacctRow, _ time.Time, _ *time.Location) string {
		if len(j.GetAllocation().GetNodes()) == 0 {
			return "None assigned"
		}
		return api.CompressHostlist(j.GetAllocation().GetNodes())
	}},
	{"State", 10, false, func(j sacctRow, _ time.Time, _ *time.Location) string { return stateName(j.GetState()) }},
	{"Reason", 20, false, func(j sacctRow, _ time.Time, _ *time.Location) string { return orDefault(j.GetReason(), "None") }},
	{"ExitCode", 8, false, func(j sacctRow, _ time.Time, _ *time.Location) string { return exitCode(j.Job) }},
	{"Elapsed", 10, false, func(j sacctRow, now time.Time, _ *time.Location) string { return clockDuration(jobElapsed(j.Job, now)) }},
	{"Timelimit", 10, false, func(j sacctRow, _ time.Time, _ *time.Location) string {
		if j.GetSpec().GetTimeLimitS() == 0 {
			return "Partition_Limit"
		}
		return clockDuration(j.GetSpec().GetTimeLimitS())
	}},
	{"Submit", 19, false, func(j sacctRow, _ time.Time, loc *time.Location) string {
		return slurmTimestamp(j.GetSubmitUnixMs(), loc)
	}},
	{"Start", 19, false, func(j sacctRow, _ time.Time, loc *time.Location) string {
		return slurmTimestamp(j.GetStartUnixMs(), loc)
	}},
	{"End", 19, false, func(j sacctRow, _ time.Time, loc *time.Location) string { return slurmTimestamp(j.GetEndUnixMs(), loc) }},
	{"Priority", 10, false, func(j sacctRow, _ time.Time, _ *time.Location) string {
		return strconv.FormatUint(uint64(j.GetPriority()), 10)
	}},
	{"Restarts", 8, false, func(j sacctRow, _ time.Time, _ *time.Location) string {
		return strconv.FormatUint(uint64(j.GetRestartCount()), 10)
	}},
	{"WorkDir", 20, false, func(j sacctRow, _ time.Time, _ *time.Location) string { return j.GetSpec().GetWorkingDir() }},
}

// gpuHours formats GPU-milliseconds as GPU-hours with two decimals.
func gpuHours(ms uint64) string { return strconv.FormatFloat(float64(ms)/3.6e6, 'f', 2, 64) }

// sacctDefaultFormat is Slurm's default field list.
const sacctDefaultFormat = "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode"

type sacctOpts struct {
	jobs        []string
	users       []string
	allUsers    bool
	states      []string
	format      string
	startTime   string
	json        bool
	noHeader    bool
	parsable    string // "", "|" with a trailing one (-p), or "|2" (-P)
	help        bool
	allocations bool // -X: no step lines
}

func runSacct(ctx context.Context, e *env, args []string) int {
	o := sacctOpts{format: sacctDefaultFormat}
	opts := []*option{
		{long: "jobs", short: 'j', arg: requiredArg, meta: "ID[,ID...]", help: "only these jobs", set: appendList(&o.jobs)},
		{long: "user", short: 'u', arg: requiredArg, meta: "USER[,USER...]", help: "these users' jobs (default: mine)", set: appendList(&o.users)},
		{long: "allusers", short: 'a', arg: noArg, help: "every user's jobs", set: setBool(&o.allUsers, true)},
		{long: "state", short: 's', arg: requiredArg, meta: "STATE[,STATE...]", help: "only jobs that ended in these states", set: appendList(&o.states)},
		{long: "starttime", short: 'S', arg: requiredArg, meta: "TIME", help: "jobs active since TIME: YYYY-MM-DD[THH:MM[:SS]] or now-N{days,hours,minutes} (default: midnight)", set: setString(&o.startTime)},
		{long: "format", short: 'o', arg: requiredArg, meta: "FIELD[%WIDTH],...", help: "columns to print", set: setString(&o.format)},
		{long: "parsable", short: 'p', arg: noArg, help: "fields separated by '|', with a trailing '|'", set: func(string) error { o.parsable = "|"; return nil }},
		{long: "parsable2", short: 'P', arg: noArg, help: "fields separated by '|'", set: func(string) error { o.parsable = "|2"; return nil }},
		{long: "noheader", short: 'n', arg: noArg, help: "no header lines", set: setBool(&o.noHeader, true)},
		{long: "allocations", short: 'X', arg: noArg, help: "only the jobs' own lines, not their steps'", set: setBool(&o.allocations, true)},
		{long: "json", arg: noArg, help: "print the jobs as JSON (API objects)", set: setBool(&o.json, true)},
		{long: "consistent", arg: noArg, help: "read through the leader (linearizable) instead of any server", set: consistentRead(e)},
		{long: "help", short: 'h', arg: noArg, help: "show this help", set: setBool(&o.help, true)},
		{long: "usage", arg: noArg, set: setBool(&o.help, true)},
	}
	pos, err := parseAndApply(opts, args)
	if err != nil {
		return e.fail(err)
	}
	if o.help {
		names := make([]string, len(sacctFields))
		for i, f := range sacctFields {
			names[i] = f.name
		}
		return printHelp(e, fmt.Sprintf(sacctUsage, strings.Join(names, ",")), opts)
	}
	if len(pos) > 0 {
		return e.fail(&usageError{fmt.Sprintf("unexpected argument %q", pos[0])})
	}
	fields, widths, err := parseSacctFormat(o.format)
	if err != nil {
		return e.fail(fmt.Errorf("--format=%s: %w", o.format, err))
	}
	ids, err := parseJobIDs(o.jobs)
	if err != nil {
		return e.fail(err)
	}
	states, _, err := parseStates(o.states)
	if err != nil {
		return e.fail(err)
	}
	now := e.now()
	var since time.Time
	if len(ids) == 0 {
		y, m, d := now.In(e.loc).Date()
		since = time.Date(y, m, d, 0, 0, 0, 0, e.loc)
	}
	if o.startTime != "" {
		if since, err = parseSacctTime(o.startTime, now, e.loc); err != nil {
			return e.fail(fmt.Errorf("--starttime=%s: %w", o.startTime, err))
		}
	}
	if len(ids) == 0 && len(o.users) == 0 && !o.allUsers {
		who, err := e.whoami()
		if err != nil {
			return e.fail(err)
		}
		o.users = []string{who.user}
	}
	req := &api.ListJobsRequest{All: true, JobIds: ids, States: states}
	if len(o.users) == 1 && !o.allUsers {
		req.User = o.users[0]
	}
	return withClient(e, func(c *client) int {
		resp, err := c.listJobs(ctx, req)
		if err != nil {
			return e.fail(err)
		}
		jobs := filterJobs(resp.GetJobs(), func(j *api.Job) bool {
			switch {
			case len(ids) > 0 && !slices.Contains(ids, j.GetId()):
				return false
			case !o.allUsers && len(o.users) > 0 && !slices.Contains(o.users, j.GetUser()):
				return false
			case len(states) > 0 && !slices.Contains(states, j.GetState()):
				return false
			case !since.IsZero() && j.GetEndUnixMs() > 0 && j.GetEndUnixMs() < since.UnixMilli():
				return false // ended before the window
			}
			return true
		})
		slices.SortFunc(jobs, func(a, b *api.Job) int {
			switch {
			case a.GetId() < b.GetId():
				return -1
			case a.GetId() > b.GetId():
				return 1
			}
			return 0
		})
		if o.json {
			if err := writeJSON(e.stdout, &api.ListJobsResponse{Jobs: jobs, Index: resp.GetIndex()}); err != nil {
				return e.fail(err)
			}
			return 0
		}
		writeSacct(e, jobs, fields, widths, o, now)
		return 0
	})
}

// parseSacctFormat parses --format: field names (any case) with an
// optional %WIDTH.
func parseSacctFormat(format string) ([]sacctField, []int, error) {
	var fields []sacctField
	var widths []int
	for _, item := range strings.Split(format, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, w, hasWidth := strings.Cut(item, "%")
		i := slices.IndexFunc(sacctFields, func(f sacctField) bool { return strings.EqualFold(f.name, name) })
		if i < 0 {
			return nil, nil, fmt.Errorf("unknown field %q", name)
		}
		width := sacctFields[i].width
		if hasWidth {
			n, err := strconv.Atoi(w)
			if err != nil || n == 0 {
				return nil, nil, fmt.Errorf("width %q of %s is not a non-zero number", w, name)
			}
			width = n
		}
		fields = append(fields, sacctFields[i])
		widths = append(widths, width)
	}
	if len(fields) == 0 {
		return nil, nil, fmt.Errorf("no fields")
	}
	return fields, widths, nil
}

// parseSacctTime parses --starttime: YYYY-MM-DD, YYYY-MM-DDTHH:MM,
// YYYY-MM-DDTHH:MM:SS, or now[-N{days,hours,minutes,seconds}].
func parseSacctTime(s string, now time.Time, loc *time.Location) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	rest, ok := strings.CutPrefix(strings.ToLower(s), "now")
	if !ok {
		return time.Time{}, fmt.Errorf("not a time: want YYYY-MM-DD[THH:MM[:SS]] or now-N{days,hours,minutes}")
	}
	if rest == "" {
		return now, nil
	}
	if rest[0] != '-' {
		return time.Time{}, fmt.Errorf("want now-N{days,hours,minutes}")
	}
	i := 1
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	n, err := strconv.Atoi(rest[1:i])
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a number", rest[1:i])
	}
	unit := time.Second
	switch strings.TrimSuffix(rest[i:], "s") {
	case "", "second":
	case "minute":
		unit = time.Minute
	case "hour":
		unit = time.Hour
	case "day":
		unit = 24 * time.Hour
	case "week":
		unit = 7 * 24 * time.Hour
	default:
		return time.Time{}, fmt.Errorf("unit %q is not one of seconds, minutes, hours, days, weeks", rest[i:])
	}
	return now.Add(-time.Duration(n) * unit), nil
}

// writeSacct prints sacct's table: right-aligned fields (JobID left),
// truncated with '+', a line of dashes under the header; or '|'-separated
// with -p/-P.
func writeSacct(e *env, jobs []*api.Job, fields []sacctField, widths []int, o sacctOpts, now time.Time) {
	out := bufio.NewWriterSize(e.stdout, 64<<10) // one write for many lines
	defer out.Flush()
	line := func(cells []string) {
		if o.parsable != "" {
			s := strings.Join(cells, "|")
			if o.parsable == "|" {
				s += "|"
			}
			fmt.Fprintln(out, s)
			return
		}
		var b strings.Builder
		for i, c := range cells {
			w := widths[i]
			left := fields[i].left
			if w < 0 {
				w, left = -w, true
			}
			if len(c) > w {
				c = c[:w-1] + "+"
			}
			if left {
				fmt.Fprintf(&b, "%-*s ", w, c)
			} else {
				fmt.Fprintf(&b, "%*s ", w, c)
			}
		}
		fmt.Fprintln(out, strings.TrimRight(b.String(), " "))
	}
	if !o.noHeader {
		titles := make([]string, len(fields))
		dashes := make([]string, len(fields))
		for i, f := range fields {
			titles[i] = f.name
			dashes[i] = strings.Repeat("-", max(widths[i], -widths[i]))
		}
		line(titles)
		if o.parsable == "" {
			line(dashes)
		}
	}
	for _, j := range jobs {
		for _, r := range sacctRows(j, o.allocations) {
			cells := make([]string, len(fields))
			for i, f := range fields {
				cells[i] = f.value(r, now, e.loc)
			}
			line(cells)
		}
	}
}

// jobTRES is Slurm's AllocTRES: "cpu=8,gres/gpu=8,gres/nvme=400,mem=64000M,node=1",
// each generic resource the job's total over its nodes.
func jobTRES(j *api.Job) string {
	if len(j.GetAllocation().GetRanks()) == 0 {
		return ""
	}
	var mem uint64
	for _, r := range j.GetAllocation().GetRanks() {
		mem += r.GetMemMb()
	}
	parts := []string{fmt.Sprintf("cpu=%d", jobCPUs(j))}
	if g := jobGPUs(j); g > 0 {
		parts = append(parts, fmt.Sprintf("gres/gpu=%d", g))
	}
	a := j.GetAllocation()
	for _, g := range slices.Sorted(maps.Keys(a.GetGresPerNode())) {
		parts = append(parts, fmt.Sprintf("gres/%s=%d", g, a.GresPerNode[g]*uint64(len(a.GetNodes()))))
	}
	if mem > 0 {
		parts = append(parts, fmt.Sprintf("mem=%dM", mem))
	}
	return strings.Join(append(parts, fmt.Sprintf("node=%d", jobNodes(j))), ",")
}
